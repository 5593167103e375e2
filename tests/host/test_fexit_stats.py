"""Per-component counters of freplace chains (issue 14): fexit programs on each component,
pinned under our own bpffs directory. Needs freplace and tracing (VM tier). Exact counts
with real pings over a veth and with BPF_PROG_TEST_RUN; counts that follow components
across chain changes; a component xdp-loader adds is counted; timing; nothing left after
unload and clean."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from dispatcher import stats as dstats
from dispatcher.chain import fexit, observe, router
from dispatcher.chain import stats as cs
from dispatcher.chain.model import NewProgram, request, settings_json, with_settings
from dispatcher.kernel import bpf, netlink
from dispatcher.obj.elf import read_object
from dispatcher.uapi import BPF_PROG_TYPE_XDP
from tests import packets
from tests.cli import run_cli
from tests.host import nettools
from tests.objects import EXAMPLES_DIR, example

pytestmark = [pytest.mark.host_kernel, pytest.mark.freplace]

PASS = 1 << 2
ALL = 0x1F
N = 5


def new(path: str, prio: int, actions: int, globals_: dict[str, int] | None = None
        ) -> NewProgram:
    obj = read_object(path)
    prog = next(p for p in obj.programs if p.prog_type == BPF_PROG_TYPE_XDP)
    if globals_:
        obj, prog, _ = with_settings(obj, prog.name, settings_json(globals_, None, None))
    return NewProgram(obj, prog, prio, actions)


def counts(iface: str, netns: str | None, setting: str = "counts"
           ) -> list[cs.ComponentStats]:
    [ifs] = dstats.collect(iface, netns)
    assert ifs.kind == "dispatcher" and ifs.stats == setting, ifs
    return list(ifs.components)


def by_action(c: cs.ComponentStats) -> dict[str, int]:
    return {n: a.packets for n, a in zip(cs.ACTION_NAMES, c.actions, strict=True) if a.packets}


def counter_dirs(root: str) -> list[str]:
    try:
        return sorted(os.listdir(fexit.stats_dir(root)))
    except FileNotFoundError:
        return []


@pytest.fixture
def root(bpffs_dir: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LIBXDP_BPFFS", bpffs_dir)       # what stats/status read
    return bpffs_dir


@pytest.fixture
def quiet(netns_veth: nettools.VethNs, root: str) -> Iterator[nettools.VethNs]:
    """The veth with only our pings on it (no IPv6, a permanent neighbour entry), so
    counts are exact; the chain on the peer is removed afterwards."""
    v = netns_veth
    for name, ns in ((v.host_if, None), (v.peer_if, v.netns)):
        args = ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"]
        subprocess.run([*(["ip", "netns", "exec", v.netns] if ns else []), *args], check=True)
    mac = nettools.ip_json("link", "show", "dev", v.peer_if, netns=v.netns)[0]["address"]
    nettools.ip("neigh", "replace", v.peer_ip, "lladdr", mac, "dev", v.host_if, "nud",
                "permanent")
    try:
        yield v
    finally:
        router.change(request(v.peer_if, mode="skb", remove_all=True, netns=v.netns,
                              root=root))
        assert counter_dirs(root) == []


def kw(v: nettools.VethNs, root: str) -> dict[str, object]:
    return {"mode": "skb", "netns": v.netns, "root": root, "dispatch": "freplace"}


def test_pings_counted_per_component_and_follow_a_reprioritised_component(
        quiet: nettools.VethNs, root: str) -> None:
    """N pings through [counter-pass, drop-ICMP, pass] with fexit counters: N PASS at slot
    0, N DROP at slot 1, nothing at slot 2 (positive control: the first ping before the
    chain answers). Re-prioritised (same program ids) the drop runs first and the counts
    stay with the components."""
    v = quiet
    assert nettools.ping(v.peer_ip, count=1, timeout=1)   # the path works without a chain
    res = router.change(request(v.peer_if, add=[
        new(example("xdp_counter"), 10, PASS), new(example("xdp_drop_icmp"), 20, PASS),
        new(example("xdp_pass"), 30, PASS)], stats="counts", **kw(v, root)))  # type: ignore[arg-type]
    assert res.kind == "dispatcher"
    assert not nettools.ping(v.peer_ip, count=N, timeout=0.2)
    got = counts(v.peer_if, v.netns)
    assert [c.name for c in got] == ["xdp_counter", "xdp_drop_icmp", "xdp_pass"]
    assert by_action(got[0]) == {"XDP_PASS": N}
    assert by_action(got[1]) == {"XDP_DROP": N}
    assert got[2].packets == 0
    assert got[0].bytes == N * 98            # 14 + 20 + 8 + 56 bytes each
    assert (got[0].ended, got[1].ended) == (0, N)
    # status shows the packets too
    [st] = observe.status(v.peer_if, netns=v.netns, root=root)
    assert [c.packets for c in st.programs] == [N, N, 0]
    # re-prioritise the drop (same program id): it runs first, its counts go with it
    drop_id = res.programs[1][2]
    router.change(request(v.peer_if, update={drop_id: (5, PASS)}, **kw(v, root)))  # type: ignore[arg-type]
    got = counts(v.peer_if, v.netns)
    assert [(c.name, c.slot) for c in got] == [
        ("xdp_drop_icmp", 0), ("xdp_counter", 1), ("xdp_pass", 2)]
    assert by_action(got[0]) == {"XDP_DROP": N}
    assert not nettools.ping(v.peer_ip, count=N, timeout=0.2)
    got = counts(v.peer_if, v.netns)
    assert by_action(got[0]) == {"XDP_DROP": 2 * N}
    assert by_action(got[1]) == {"XDP_PASS": N}


def test_test_run_exact_totals_of_every_action(netns_veth: nettools.VethNs, root: str
                                               ) -> None:
    """BPF_PROG_TEST_RUN of the dispatcher with repeat: each component's verdict (set
    through the object's globals) counted exactly by its fexit program: ABORTED, TX,
    REDIRECT, PASS and an out-of-range code as "other" (which ends the chain)."""
    v = netns_veth
    codes = [0, 3, 4, 2, 7]
    comps = [new(example("xdp_globals"), 10 + i, ALL,
                 {"drop_port": 5678, "match_verdict": k}) for i, k in enumerate(codes)]
    router.change(request(v.peer_if, add=comps, stats="counts", **kw(v, root)))  # type: ignore[arg-type]
    try:
        reps = 1000
        pkt = packets.udp_packet()                     # to port 5678
        xs = netlink.read_xdp(v.peer_ifindex, netns=v.netns)
        with bpf.prog_get_fd_by_id(xs.skb_prog_id) as fd:
            r = bpf.prog_test_run(fd.fd, pkt, repeat=reps)
        assert r.retval == 7
        got = counts(v.peer_if, v.netns)
        for c, k in zip(got, codes, strict=True):
            action = min(k, cs.OTHER)
            want = [(reps, reps * len(pkt)) if a == action else (0, 0)
                    for a in range(cs.NUM_ACTIONS)]
            assert [(a.packets, a.bytes) for a in c.actions] == want, c
        assert got[-1].ended == reps and got[0].ended == 0
    finally:
        router.change(request(v.peer_if, remove_all=True, **kw(v, root)))  # type: ignore[arg-type]
    assert counter_dirs(root) == []


def test_counts_kept_across_add_remove_and_upgrade_then_timing(
        netns_veth: nettools.VethNs, root: str) -> None:
    """A kept component's counts continue while another is added and another removed; an
    upgraded one (a new program) starts at zero and the old one's counters are unpinned;
    switching to timing keeps the counts and measures run time for every packet."""
    v = netns_veth
    nettools.ip("link", "set", v.host_if, "down")      # only test runs count

    def run(k: int) -> None:
        xs = netlink.read_xdp(v.peer_ifindex, netns=v.netns)
        with bpf.prog_get_fd_by_id(xs.skb_prog_id) as fd:
            bpf.prog_test_run(fd.fd, packets.udp_packet(), repeat=k)

    res = router.change(request(v.peer_if, add=[
        new(example("xdp_counter"), 10, PASS), new(example("xdp_globals"), 20, PASS),
        new(example("xdp_pass"), 30, PASS)], stats="counts", **kw(v, root)))  # type: ignore[arg-type]
    try:
        run(100)
        ids = [pid for _s, _n, pid in res.programs]
        router.change(request(v.peer_if, remove_ids={ids[1], ids[2]}, add=[
            new(example("xdp_blocklist"), 15, PASS), new(example("xdp_pass_long"), 30, PASS)],
            **kw(v, root)))  # type: ignore[arg-type]
        got = counts(v.peer_if, v.netns)
        assert [c.name for c in got] == ["xdp_counter", "xdp_blocklist", "xdp_pass"]  # _long
        assert [c.packets for c in got] == [100, 0, 0]
        assert len([d for d in counter_dirs(root) if not d.endswith("counts")]) == 3
        run(50)
        assert [c.packets for c in counts(v.peer_if, v.netns)] == [150, 50, 50]
        cp = run_cli("stats", "enable", v.peer_if, "--timing", "--netns", v.netns,
                     env={"LIBXDP_BPFFS": root})
        assert cp.returncode == 0, cp.stderr
        run(40)
        got = counts(v.peer_if, v.netns, "timing")
        assert [c.packets for c in got] == [190, 90, 90]
        assert all(c.run_time_ns is not None and c.run_time_ns > 0 for c in got), got
        cp = run_cli("stats", "disable", v.peer_if, "--netns", v.netns,
                     env={"LIBXDP_BPFFS": root})
        assert cp.returncode == 0, cp.stderr
        [ifs] = dstats.collect(v.peer_if, v.netns)
        assert ifs.stats == "off" and not ifs.components
        assert counter_dirs(root) == []
    finally:
        router.change(request(v.peer_if, remove_all=True, **kw(v, root)))  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("xdp-loader") is None,
                    reason="xdp-loader (xdp-tools) is not installed: nobody else adds a program")
def test_component_added_by_xdp_loader_is_counted_and_clean_sweeps(
        netns_veth: nettools.VethNs, root: str) -> None:
    """xdp-loader adds a program to our counted chain: `stats enable` (as the agent does
    on each change) gives it counters; after xdp-loader unloads everything, `clean`
    removes every counter of that chain (which held the programs alive)."""
    v = netns_veth
    nettools.ip("link", "set", v.host_if, "down")
    env = {"LIBXDP_BPFFS": root}
    router.change(request(v.host_if, mode="skb", root=root, dispatch="freplace",
                          add=[new(example("xdp_counter"), 10, PASS)], stats="counts"))
    try:
        subprocess.run(["xdp-loader", "load", "-m", "skb", "-p", "20", v.host_if,
                        os.path.join(EXAMPLES_DIR, "xdp_pass.o")], check=True,
                       env={**os.environ, **env}, capture_output=True)
        assert run_cli("stats", "enable", v.host_if, env=env).returncode == 0
        xs = netlink.read_xdp(v.host_ifindex)
        with bpf.prog_get_fd_by_id(xs.skb_prog_id) as fd:
            bpf.prog_test_run(fd.fd, packets.udp_packet(), repeat=20)
        got = counts(v.host_if, None)
        assert [(c.name, c.packets) for c in got] == [("xdp_counter", 20), ("xdp_pass", 20)]
    finally:
        subprocess.run(["xdp-loader", "unload", "--all", v.host_if],
                       env={**os.environ, **env}, capture_output=True)
    assert counter_dirs(root) != []              # stale: the chain is gone
    cp = run_cli("clean", env=env)
    assert cp.returncode == 0, cp.stderr
    assert counter_dirs(root) == []


def test_cli_load_stats_metrics_status_and_a_config_stats_key(
        netns_veth: nettools.VethNs, root: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`load --stats counts` on a freplace chain; `stats --json`, `metrics` (parsed with
    the Prometheus client's parser) and `status` show the fexit counts; a config's
    `stats:` key is planned (`~ stats counts -> timing`) and applied on the same chain,
    and an `apply` with nothing to change gives counters to a program xdp-loader added."""
    import json

    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    v = netns_veth
    nettools.ip("link", "set", v.host_if, "down")
    env = {"LIBXDP_BPFFS": root, "XDP_DISPATCH_STATE_DIR": str(tmp_path / "state")}
    cfg = tmp_path / "c.yaml"

    def write(stats: str) -> str:
        cfg.write_text(yaml.safe_dump({"version": 1, "interfaces": [{
            "name": v.host_if, "mode": "skb", "dispatch": "freplace", "stats": stats,
            "programs": [{"name": "count", "object": example("xdp_counter")},
                         {"name": "icmp", "object": example("xdp_drop_icmp"),
                          "priority": 60}]}]}))
        return str(cfg)

    def run(k: int) -> None:
        xs = netlink.read_xdp(v.host_ifindex)
        with bpf.prog_get_fd_by_id(xs.skb_prog_id) as fd:
            bpf.prog_test_run(fd.fd, packets.icmp_echo(), repeat=k)

    try:
        assert run_cli("apply", write("counts"), env=env).returncode == 0
        run(7)
        cp = run_cli("stats", v.host_if, "--json", env=env)
        [ifs] = json.loads(cp.stdout)["interfaces"]
        assert (ifs["kind"], ifs["stats"]) == ("dispatcher", "counts")
        comps = {c["name"]: c for c in ifs["components"]}
        assert comps["xdp_drop_icmp"]["actions"]["XDP_DROP"]["packets"] == 7
        assert comps["xdp_counter"]["actions"]["XDP_PASS"]["packets"] == 7
        assert comps["xdp_drop_icmp"]["ended"] == 7
        cp = run_cli("metrics", env=env)
        fams = {f.name: f for f in text_string_to_metric_families(cp.stdout)}
        drop = [s for s in fams["xdp_dispatch_component_packets"].samples
                if s.labels["interface"] == v.host_if and s.labels["action"] == "XDP_DROP"]
        assert [(s.labels["program"], s.value) for s in drop] == [("xdp_drop_icmp", 7.0)]
        [info] = [s for s in fams["xdp_dispatch_chain_info"].samples
                  if s.labels["interface"] == v.host_if]
        assert info.labels["kind"] == "dispatcher"
        cp = run_cli("status", v.host_if, "--json", env=env)
        progs = json.loads(cp.stdout)["interfaces"][0]["programs"]
        assert [p["packets"] for p in progs] == [7, 7]
        assert run_cli("plan", str(cfg), env=env).returncode == 0
        cp = run_cli("plan", write("timing"), env=env)
        assert cp.returncode == 2 and "~ stats    counts -> timing" in cp.stdout, cp.stdout
        assert run_cli("apply", str(cfg), env=env).returncode == 0
        run(3)
        got = counts(v.host_if, None, "timing")
        assert [c.packets for c in got] == [10, 10]           # counts continued
        assert all(c.run_time_ns for c in got), got
        assert run_cli("plan", str(cfg), env=env).returncode == 0
        if shutil.which("xdp-loader"):
            subprocess.run(["xdp-loader", "load", "-m", "skb", "-p", "90", v.host_if,
                            os.path.join(EXAMPLES_DIR, "xdp_pass.o")], check=True,
                           env={**os.environ, **env}, capture_output=True)
            assert run_cli("apply", str(cfg), env=env).returncode == 0   # nothing to change
            run(2)
            by_name = {c.name: c.packets for c in counts(v.host_if, None, "timing")}
            assert len(by_name) == 3 and "xdp_pass" in by_name, by_name   # it has counters
            assert (by_name["xdp_counter"], by_name["xdp_drop_icmp"]) == (12, 12), by_name
    finally:
        run_cli("unload", v.host_if, "--all", env=env)
    assert counter_dirs(root) == []
