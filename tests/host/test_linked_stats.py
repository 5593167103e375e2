"""Per-component counters of linked chains on the running kernel: exact counts with real
pings over a veth and with BPF_PROG_TEST_RUN, counts that follow components across chain
changes, and the `stats`/`metrics` commands (issue 14, linked part)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from dispatcher import stats as dstats
from dispatcher.chain import router
from dispatcher.chain import stats as cs
from dispatcher.chain.linked import build, combine
from dispatcher.chain.model import NewProgram, request
from dispatcher.kernel import bpf, netlink
from dispatcher.obj import insn as I
from dispatcher.obj.elf import read_object
from dispatcher.obj.spec import ObjectSpec
from dispatcher.uapi import BPF_PROG_TYPE_XDP
from tests import packets
from tests.cli import run_cli
from tests.host import nettools
from tests.objects import example
from tests.unit.test_combine import synth

pytestmark = pytest.mark.host_kernel

ABORTED, DROP, PASS, TX, REDIRECT = (1 << i for i in range(5))
ALL = 0x1F
N = 5


def new(path: str, prio: int, actions: int, label: str = "") -> NewProgram:
    obj = read_object(path)
    prog = next(p for p in obj.programs if p.prog_type == BPF_PROG_TYPE_XDP)
    return NewProgram(obj, prog, prio, actions, label=label or prog.name,
                      sha256=build.file_sha256(path))


def returns(code: int) -> ObjectSpec:
    """A component without BTF that returns ``code`` (any value, even out of range)."""
    return synth(f"ret{code}", [(f"ret{code}", I.encode([I.mov64_imm(0, code),
                                                         I.exit_insn()]), ())])


def counts(iface: str, netns: str | None) -> dict[str, cs.ComponentStats]:
    [ifs] = dstats.collect(iface, netns)
    assert ifs.stats == "counts"
    return {c.name: c for c in ifs.components}


def by_action(c: cs.ComponentStats) -> dict[str, int]:
    return {n: a.packets for n, a in zip(cs.ACTION_NAMES, c.actions, strict=True) if a.packets}


@pytest.fixture
def quiet(netns_veth: nettools.VethNs, bpffs_dir: str) -> Iterator[nettools.VethNs]:
    """The veth with only our pings on it: no IPv6 (ND, MLD) and a permanent neighbour
    entry (no ARP), so counts are exact. The chain on the peer is removed afterwards."""
    v = netns_veth
    nettools.ip("link", "set", v.host_if, "down")
    for name, ns in ((v.host_if, None), (v.peer_if, v.netns)):
        nettools.ip("link", "set", name, "down", netns=ns)
        args = ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"]
        subprocess.run([*(["ip", "netns", "exec", v.netns] if ns else []), *args], check=True)
    mac = nettools.ip_json("link", "show", "dev", v.peer_if, netns=v.netns)[0]["address"]
    nettools.ip("link", "set", v.peer_if, "up", netns=v.netns)
    nettools.ip("link", "set", v.host_if, "up")
    nettools.ip("neigh", "replace", v.peer_ip, "lladdr", mac, "dev", v.host_if, "nud",
                "permanent")
    try:
        yield v
    finally:
        router.change(request(v.peer_if, mode="skb", remove_all=True, netns=v.netns,
                              root=bpffs_dir))


def test_pings_counted_per_component_and_follow_a_reprioritised_component(
        quiet: nettools.VethNs, bpffs_dir: str) -> None:
    """N pings through [counter-pass, drop-ICMP, pass]: N PASS at slot 0, N DROP at slot
    1, nothing at slot 2. Re-prioritised so the drop runs first, the counts stay with the
    components and the next N pings are dropped at slot 0 before the counter."""
    v = quiet
    router.change(request(v.peer_if, mode="skb", netns=v.netns, root=bpffs_dir,
                          dispatch="linked", add=[
        new(example("xdp_counter"), 10, PASS), new(example("xdp_drop_icmp"), 20, PASS),
        new(example("xdp_pass"), 30, PASS)]))
    assert not nettools.ping(v.peer_ip, count=N, timeout=0.2)
    got = counts(v.peer_if, v.netns)
    assert [c.slot for c in got.values()] == [0, 1, 2]
    assert by_action(got["xdp_counter"]) == {"XDP_PASS": N}
    assert by_action(got["xdp_drop_icmp"]) == {"XDP_DROP": N}
    assert got["xdp_pass"].packets == 0
    assert got["xdp_counter"].bytes == N * 98          # 14 + 20 + 8 + 56 bytes each
    assert (got["xdp_counter"].ended, got["xdp_drop_icmp"].ended) == (0, N)
    # re-prioritise: the same drop component (same object), now first
    router.change(request(v.peer_if, mode="skb", netns=v.netns, root=bpffs_dir,
                          dispatch="linked", remove_names={"xdp_drop_icmp"},
                          add=[new(example("xdp_drop_icmp"), 5, PASS)]))
    got = counts(v.peer_if, v.netns)
    assert [(n, c.slot) for n, c in got.items()] == [
        ("xdp_drop_icmp", 0), ("xdp_counter", 1), ("xdp_pass", 2)]
    assert by_action(got["xdp_drop_icmp"]) == {"XDP_DROP": N}
    assert not nettools.ping(v.peer_ip, count=N, timeout=0.2)
    got = counts(v.peer_if, v.netns)
    assert by_action(got["xdp_drop_icmp"]) == {"XDP_DROP": 2 * N}
    assert by_action(got["xdp_counter"]) == {"XDP_PASS": N}
    assert got["xdp_drop_icmp"].ended == 2 * N


def test_test_run_exact_totals_of_every_action(bpffs_dir: str) -> None:
    """BPF_PROG_TEST_RUN with repeat: each crafted component's verdict counted exactly,
    ABORTED/DROP/TX/REDIRECT/PASS and an out-of-range code as "other"."""
    codes = [0, 1, 3, 4, 2, 7]            # all continue (0x1F) but 7, which ends the chain
    comps = [combine.LinkComponent(returns(k), returns(k).programs[0], f"ret{k}", 10 + i,
                                   ALL, f"{k:016x}") for i, k in enumerate(codes)]
    reps = 1000
    pkt = packets.udp_packet()
    with build.build(comps, pin_root=bpffs_dir, stats=True) as b:
        r = bpf.prog_test_run(b.prog.fd, pkt, repeat=reps)
        assert r.retval == 7
        from dispatcher.chain import observe

        desc = b.description
        got = observe.read_counters(desc.stats_map, [s.counter for s in desc.slots])
    for i, (k, s) in enumerate(zip(codes, desc.slots, strict=True)):
        action = min(k, cs.OTHER)
        want = [(reps, reps * len(pkt)) if a == action else (0, 0)
                for a in range(cs.NUM_ACTIONS)]
        assert list(got[s.counter]) == want, s.label
        st = cs.component_stats(i, s.label, s.priority, s.actions, i == len(codes) - 1,
                                got[s.counter])
        assert st.ended == (reps if k == 7 else 0)


def test_stats_off_builds_the_plain_chain(bpffs_dir: str) -> None:
    comps = [combine.LinkComponent(returns(2), returns(2).programs[0], "p", 1, PASS, "0" * 16)]
    with build.build(comps, pin_root=bpffs_dir) as off, \
            build.build(comps, pin_root=bpffs_dir, stats=True) as on:
        assert off.description.stats_map == 0 and len(bpf.prog_info(off.prog.fd).map_ids) == 1
        assert bpf.prog_info(on.prog.fd).map_ids[1:] == (on.description.stats_map,)


def test_counts_kept_across_add_remove_and_upgrade(netns_veth: nettools.VethNs,
                                                   bpffs_dir: str) -> None:
    """A kept component's counts continue while another is added, another removed and a
    third upgraded (new object under the same name: a new identity, counted from 0)."""
    v = netns_veth
    nettools.ip("link", "set", v.host_if, "down")      # only test runs count
    kw = {"mode": "skb", "netns": v.netns, "root": bpffs_dir, "dispatch": "linked"}
    router.change(request(v.peer_if, add=[
        new(example("xdp_counter"), 10, PASS), new(example("xdp_globals"), 20, PASS),
        new(example("xdp_pass"), 30, PASS, label="edge")], **kw))  # type: ignore[arg-type]
    try:
        def run(k: int) -> None:
            xs = netlink.read_xdp(v.peer_ifindex, netns=v.netns)
            with bpf.prog_get_fd_by_id(xs.skb_prog_id) as fd:
                bpf.prog_test_run(fd.fd, packets.udp_packet(), repeat=k)

        run(100)
        router.change(request(v.peer_if, remove_names={"xdp_globals", "edge"}, add=[
            new(example("xdp_blocklist"), 15, PASS),
            new(example("xdp_pass_long"), 30, PASS, label="edge")], **kw))  # type: ignore[arg-type]
        got = counts(v.peer_if, v.netns)
        assert list(got) == ["xdp_counter", "xdp_blocklist", "edge"]
        assert got["xdp_counter"].packets == 100
        assert got["xdp_blocklist"].packets == 0 and got["edge"].packets == 0
        run(50)
        got = counts(v.peer_if, v.netns)
        assert [c.packets for c in got.values()] == [150, 50, 50]
        # stats off and on again: a new map, counted from zero
        assert run_cli("stats", "disable", v.peer_if, "--netns", v.netns,
                       env={"LIBXDP_BPFFS": bpffs_dir}).returncode == 0
        [ifs] = dstats.collect(v.peer_if, v.netns)
        assert ifs.stats == "off" and not ifs.components
        assert run_cli("stats", "enable", v.peer_if, "--netns", v.netns,
                       env={"LIBXDP_BPFFS": bpffs_dir}).returncode == 0
        assert counts(v.peer_if, v.netns)["xdp_counter"].packets == 0
    finally:
        router.change(request(v.peer_if, remove_all=True, **kw))  # type: ignore[arg-type]


def test_stats_enable_without_a_chain_is_one_clear_error(
        netns_veth: nettools.VethNs, bpffs_dir: str) -> None:
    from tests.cli import assert_one_line_error

    v = netns_veth
    env = {"LIBXDP_BPFFS": bpffs_dir}
    cp = run_cli("stats", "enable", v.host_if, env=env)
    assert_one_line_error(cp, "need a chain (linked or freplace)")
    assert f"hint: xdp-dispatch load {v.host_if} --stats counts OBJ" in cp.stderr
    assert cp.returncode == 2
    cp = run_cli("stats", "enable", env=env)
    assert_one_line_error(cp, "stats enable IFACE")
    assert nettools.xdp_attached(v.host_if) is None


def test_stats_metrics_and_status_commands(netns_veth: nettools.VethNs,
                                           bpffs_dir: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    v = netns_veth
    nettools.ip("link", "set", v.host_if, "down")
    env = {"LIBXDP_BPFFS": bpffs_dir}
    cp = run_cli("load", v.peer_if, "-m", "skb", "--netns", v.netns, "--dispatch", "linked",
                 example("xdp_counter"), example("xdp_drop_icmp"), env=env)
    assert cp.returncode == 0, cp.stderr
    try:
        xs = netlink.read_xdp(v.peer_ifindex, netns=v.netns)
        with bpf.prog_get_fd_by_id(xs.skb_prog_id) as fd:
            bpf.prog_test_run(fd.fd, packets.icmp_echo(), repeat=7)
        cp = run_cli("stats", v.peer_if, "--netns", v.netns, "--json", env=env)
        doc = json.loads(cp.stdout)
        [ifs] = doc["interfaces"]
        assert ifs["stats"] == "counts" and ifs["interface"] == v.peer_if
        comps = {c["name"]: c for c in ifs["components"]}
        assert comps["xdp_drop_icmp"]["actions"]["XDP_DROP"]["packets"] == 7
        assert comps["xdp_drop_icmp"]["ended"] == 7 and comps["xdp_counter"]["packets"] == 7
        assert set(comps["xdp_counter"]) == {"slot", "name", "priority", "packets", "bytes",
                                             "ended", "actions"}
        cp = run_cli("stats", v.peer_if, "--netns", v.netns, "--interval", "0.2", "--json",
                     env=env)
        assert json.loads(cp.stdout)["interval"] == 0.2
        cp = run_cli("metrics", "--netns", v.netns, env=env)
        assert cp.returncode == 0, cp.stderr
        fams = {f.name: f for f in text_string_to_metric_families(cp.stdout)}
        pk = [s for s in fams["xdp_dispatch_component_packets"].samples
              if s.labels["interface"] == v.peer_if]
        drop = [s for s in pk if s.labels["program"] == "xdp_drop_icmp"
                and s.labels["action"] == "XDP_DROP"]
        assert [s.value for s in drop] == [7.0]
        assert drop[0].name == "xdp_dispatch_component_packets_total"
        assert set(drop[0].labels) == {"interface", "netns", "program", "priority", "action"}
        assert drop[0].labels["netns"] == v.netns
        assert "xdp_dispatch_component_bytes" in fams
        [info] = [s for s in fams["xdp_dispatch_chain_info"].samples
                  if s.labels["interface"] == v.peer_if]
        assert info.value == 1 and info.labels["kind"] == "linked"
        assert info.labels["mode"] == "skb"
        cp = run_cli("status", v.peer_if, "--netns", v.netns, env=env)
        assert "Packets" in cp.stdout.splitlines()[2]
        cp = run_cli("status", v.peer_if, "--netns", v.netns, "--json", env=env)
        progs = json.loads(cp.stdout)["interfaces"][0]["programs"]
        assert [p["packets"] for p in progs] == [7, 7]
    finally:
        run_cli("unload", v.peer_if, "--all", "--netns", v.netns, env=env)


def test_config_stats_key_plans_and_applies(netns_veth: nettools.VethNs, bpffs_dir: str,
                                            tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``stats: off|counts`` per interface: applied on creation, a difference alone is a
    planned change (``~ stats``), and apply rebuilds the chain with it."""
    import yaml

    v = netns_veth
    env = {"LIBXDP_BPFFS": bpffs_dir, "XDP_DISPATCH_STATE_DIR": str(tmp_path / "state")}
    cfg = tmp_path / "c.yaml"

    def write(stats: str) -> str:
        cfg.write_text(yaml.safe_dump({"version": 1, "interfaces": [{
            "name": v.host_if, "mode": "skb", "dispatch": "linked", "stats": stats,
            "programs": [{"name": "count", "object": example("xdp_counter")},
                         {"name": "icmp", "object": example("xdp_drop_icmp")}]}]}))
        return str(cfg)

    try:
        assert run_cli("apply", write("off"), env=env).returncode == 0
        [ifs] = dstats.collect(v.host_if)
        assert ifs.kind == "linked" and ifs.stats == "off"
        assert run_cli("plan", str(cfg), env=env).returncode == 0
        cp = run_cli("plan", write("counts"), env=env)
        assert cp.returncode == 2 and "~ stats    off -> counts" in cp.stdout, cp.stdout
        assert run_cli("apply", str(cfg), env=env).returncode == 0
        [ifs] = dstats.collect(v.host_if)
        assert ifs.stats == "counts" and [c.name for c in ifs.components] == ["count", "icmp"]
        assert run_cli("plan", str(cfg), env=env).returncode == 0
    finally:
        run_cli("unload", v.host_if, "--all", env=env)


def test_top_in_tmux_shows_rates_and_verdict_bars_then_quits(
        netns_veth: nettools.VethNs, bpffs_dir: str) -> None:
    """`top` in an 80x24 tmux pane: each component's pps and its verdict bar while test
    runs push ICMP through the chain; `q` quits."""
    import os
    import shutil
    import threading
    import time

    from tests.cli import REPO

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed: cannot drive `top` in a terminal")
    v = netns_veth
    nettools.ip("link", "set", v.host_if, "down")
    env = {"LIBXDP_BPFFS": bpffs_dir}
    assert run_cli("load", v.peer_if, "-m", "skb", "--netns", v.netns, "--dispatch", "linked",
                   example("xdp_counter"), example("xdp_drop_icmp"), env=env).returncode == 0
    sock = f"xdpd-top-{os.getpid()}"
    stop = threading.Event()

    def traffic() -> None:
        xs = netlink.read_xdp(v.peer_ifindex, netns=v.netns)
        with bpf.prog_get_fd_by_id(xs.skb_prog_id) as fd:
            while not stop.is_set():
                bpf.prog_test_run(fd.fd, packets.icmp_echo(), repeat=20000)
                time.sleep(0.01)

    def tmux(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True,
                              check=False)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        cmd = (f"env PYTHONPATH={REPO} LIBXDP_BPFFS={bpffs_dir} {sys.executable} -m dispatcher "
               f"top {v.peer_if} --netns {v.netns} --interval 0.5")
        assert tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", "top",
                    cmd).returncode == 0
        screen = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(0.5)
            screen = tmux("capture-pane", "-p", "-t", "top").stdout
            rows = {ln.split()[1]: ln.split() for ln in screen.splitlines()
                    if ln.strip().startswith(("0 ", "1 "))}
            if len(rows) == 2 and all(int(r[2]) > 0 for r in rows.values()):
                break
        else:
            raise AssertionError(f"no rates on the screen:\n{screen}")
        assert rows["xdp_counter"][4].strip("P") == "" and rows["xdp_drop_icmp"][4].strip("D") == ""
        assert max(len(ln) for ln in screen.splitlines()) <= 80
        tmux("send-keys", "-t", "top", "q")
        for _ in range(50):
            if tmux("has-session", "-t", "top").returncode != 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("`q` did not quit top")
    finally:
        stop.set()
        t.join()
        tmux("kill-server")
        run_cli("unload", v.peer_if, "--all", "--netns", v.netns, env=env)
