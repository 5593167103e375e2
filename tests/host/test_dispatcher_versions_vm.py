"""Dispatcher versions against real libxdp builds (freplace: the VM tier).

libxdp 1.3.1 (Debian 12's installed xdp-loader) and 1.5.4 write dispatcher v2, 1.6.3
writes v3. For each: that libxdp builds a chain, we read it exactly, add and remove, and
it reads, adds and removes again; and the reverse. ``upgrade`` rewrites a live chain as
another version (same component ids and maps), after which the libxdp of that version
extends it. The 1.5.4 and 1.6.3 builds come from ``scripts/libxdp-versions.sh fetch``
(``scripts/test.sh`` runs it); a missing build FAILS these tests, never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from dispatcher import api
from dispatcher.kernel import bpf
from tests.cli import run_cli
from tests.host import nettools
from tests.objects import EXAMPLES_DIR, REPO

pytestmark = pytest.mark.freplace

SCRIPT = os.path.join(REPO, "scripts", "libxdp-versions.sh")
CACHE = os.environ.get("LIBXDP_CACHE", "/var/lib/xdp-dispatch-tests/libxdp")  # as the script
WRITES = {"1.3.1": 2, "1.5.4": 2, "1.6.3": 3}      # the dispatcher version each writes
BPF_DIR = "usr/lib/x86_64-linux-gnu/bpf"
Row = tuple[int, str, int, str, tuple[str, ...]]   # (prio, name, id, tag, actions)


def obj(name: str) -> str:
    return os.path.join(EXAMPLES_DIR, name)


def build_root(ver: str) -> str:
    """The extracted root of libxdp ``ver`` (fails the test when it is missing)."""
    root = os.path.join(CACHE, ver, "root")
    if not os.path.exists(os.path.join(CACHE, ver, "done")):
        pytest.fail(f"libxdp {ver} build missing in {root}: run scripts/libxdp-versions.sh "
                    "fetch (scripts/test.sh does) before the VM tier")
    return root


def loader_cmd(ver: str, tool: str = "xdp-loader") -> list[str]:
    if ver == "1.3.1":
        path = shutil.which(tool)
        if path is None:
            pytest.fail(f"{tool} (Debian 12's xdp-tools 1.3.1) is not installed "
                        "(scripts/test.sh installs it)")
        return [path]
    build_root(ver)
    return ["bash", SCRIPT, "run", ver, tool]


def xdp_loader(ver: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run([*loader_cmd(ver), *args], capture_output=True, text=True, timeout=120)
    if check and cp.returncode != 0:
        raise AssertionError(f"libxdp {ver}: xdp-loader {' '.join(args)} failed "
                             f"({cp.returncode}): {cp.stdout}{cp.stderr}")
    return cp


def libxdp_rows(ver: str, iface: str) -> list[Row]:
    """The chain as libxdp ``ver``'s `xdp-loader status` prints it."""
    out = xdp_loader(ver, "status", iface).stdout
    rows = []
    for line in out.splitlines():
        t = line.split()
        if t[:1] == ["=>"]:
            rows.append((int(t[1]), t[2], int(t[3]), t[4],
                         tuple(t[5].split(",")) if len(t) > 5 else ()))
    return rows


def ours(iface: str) -> dict:  # type: ignore[type-arg]
    (st,) = api.status(iface)
    return st.to_json()  # type: ignore[no-any-return]


def our_rows(st: dict) -> list[Row]:  # type: ignore[type-arg]
    return [(p["priority"], p["name"], p["id"], p["tag"], tuple(p["chain_call_actions"]))
            for p in st["programs"]]


def ids_by_name(st: dict) -> dict[str, int]:  # type: ignore[type-arg]
    return {p["name"]: p["id"] for p in st["programs"]}


def map_ids(prog_id: int) -> tuple[int, ...]:
    with bpf.prog_get_fd_by_id(prog_id) as fd:
        return bpf.prog_info(fd.fd).map_ids


def counter_packets(prog_id: int) -> int:
    """Packets xdp_counter counted (its per-CPU map, summed)."""
    [mid] = map_ids(prog_id)
    with bpf.map_get_fd_by_id(mid) as fd:
        size = bpf.percpu_value_size(16)
        raw = bpf.map_lookup(fd.fd, b"\0\0\0\0", size)
    assert raw is not None
    return sum(int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 16))


@pytest.fixture
def veth(netns_veth: nettools.VethNs, private: str) -> Iterator[nettools.VethNs]:
    yield netns_veth
    api.unload(netns_veth.host_if, all=True)


THREE = (("xdp_counter.o", 10), ("xdp_pass.o", 20), ("xdp_runcfg.o", 30))


def our_load(iface: str, name: str, prio: int, version: int | None = None,
             mode: str = "skb") -> None:
    api.load(iface, [obj(name)], mode=mode, priority=prio, dispatcher_version=version)


@pytest.mark.parametrize("ver", sorted(WRITES))
def test_libxdp_builds_we_change_it_libxdp_extends(veth: nettools.VethNs, ver: str) -> None:
    iface = veth.host_if
    for name, prio in THREE:
        xdp_loader(ver, "load", "-m", "skb", "-P", str(prio), iface, obj(name))
    st = ours(iface)
    assert st["dispatcher_version"] == WRITES[ver] and st["problems"] == []
    assert our_rows(st) == libxdp_rows(ver, iface)          # we read it exactly
    assert [r[1] for r in our_rows(st)] == ["xdp_counter", "xdp_pass", "xdp_runcfg"]
    before = ids_by_name(st)
    # we add one and remove one: the version stays
    our_load(iface, "xdp_drop_icmp.o", 40)
    api.unload(iface, ids=[before["xdp_pass"]])
    st = ours(iface)
    assert st["dispatcher_version"] == WRITES[ver]
    assert [r[1] for r in our_rows(st)] == ["xdp_counter", "xdp_runcfg", "xdp_drop_icmp"]
    assert ids_by_name(st)["xdp_counter"] == before["xdp_counter"]
    # that libxdp reads the result back, and can still add and remove
    assert libxdp_rows(ver, iface) == our_rows(st)
    xdp_loader(ver, "load", "-m", "skb", "-P", "45", iface, obj("xdp_pass.o"))
    xdp_loader(ver, "unload", iface, "-i", str(before["xdp_counter"]))
    st = ours(iface)
    assert st["dispatcher_version"] == WRITES[ver] and st["problems"] == []
    assert [r[1] for r in our_rows(st)] == ["xdp_runcfg", "xdp_drop_icmp", "xdp_pass"]
    assert our_rows(st) == libxdp_rows(ver, iface)


@pytest.mark.parametrize("ver", sorted(WRITES))
def test_we_build_libxdp_extends_we_read_back(veth: nettools.VethNs, ver: str) -> None:
    """The version each way: 1.3.1 from the installed libxdp's object (the default),
    1.5.4 by --dispatcher-version 2, 1.6.3 from its object via LIBXDP_OBJECT_PATH."""
    iface = veth.host_if
    env = {}
    args: list[str] = []
    if ver == "1.6.3":
        env["LIBXDP_OBJECT_PATH"] = os.path.join(build_root(ver), BPF_DIR)
    elif ver == "1.5.4":
        args = ["--dispatcher-version", "2"]
    for name, prio in THREE:
        run_cli("load", iface, "-m", "skb", "-P", str(prio), *args, obj(name), env=env,
                check=True)
    st = ours(iface)
    assert st["dispatcher_version"] == WRITES[ver]
    assert libxdp_rows(ver, iface) == our_rows(st)           # it reads ours exactly
    ids = ids_by_name(st)
    xdp_loader(ver, "load", "-m", "skb", "-P", "40", iface, obj("xdp_drop_icmp.o"))
    xdp_loader(ver, "unload", iface, "-i", str(ids["xdp_pass"]))
    st = ours(iface)
    assert st["dispatcher_version"] == WRITES[ver] and st["problems"] == []
    assert [r[1] for r in our_rows(st)] == ["xdp_counter", "xdp_runcfg", "xdp_drop_icmp"]
    assert {k: v for k, v in ids_by_name(st).items() if k != "xdp_drop_icmp"} == {
        "xdp_counter": ids["xdp_counter"], "xdp_runcfg": ids["xdp_runcfg"]}
    assert our_rows(st) == libxdp_rows(ver, iface)
    # and we change it again: still that version
    api.unload(iface, ids=[ids["xdp_counter"]])
    assert ours(iface)["dispatcher_version"] == WRITES[ver]
    assert libxdp_rows(ver, iface) == our_rows(ours(iface))


def test_upgrade_and_downgrade_a_live_chain(veth: nettools.VethNs, private: str) -> None:
    iface = veth.host_if
    for name, prio in THREE:
        our_load(iface, name, prio, version=2)
    assert nettools.ping(veth.peer_ip, count=2)
    st = ours(iface)
    ids = ids_by_name(st)
    maps = {n: map_ids(i) for n, i in ids.items()}
    counted = counter_packets(ids["xdp_counter"])
    assert counted > 0
    # libxdp 1.6.3 refuses to add to a v2 chain; nothing changes
    cp = xdp_loader("1.6.3", "load", "-m", "skb", "-P", "40", iface, obj("xdp_drop_icmp.o"),
                    check=False)
    assert cp.returncode != 0, cp.stdout
    assert ids_by_name(ours(iface)) == ids
    assert ours(iface)["libxdp"]["extends"] == {"first": "1.3.0", "last": "1.5.8"}
    # upgrade: one swap, the same components (ids, maps, counts), a new v3 dispatcher
    cp = run_cli("upgrade", iface, "--dispatcher-version", "3", check=True)
    assert "(version 2 -> 3)" in cp.stdout
    st3 = ours(iface)
    assert st3["dispatcher_version"] == 3 and st3["dispatcher"]["devbound"] is False
    assert st3["dispatcher"]["id"] != st["dispatcher"]["id"] and st3["problems"] == []
    assert ids_by_name(st3) == ids and {n: map_ids(i) for n, i in ids.items()} == maps
    assert counter_packets(ids["xdp_counter"]) >= counted
    assert not os.path.exists(os.path.join(private, "xdp",
                                           f"dispatch-{veth.host_ifindex}-{st['dispatcher']['id']}"))
    assert nettools.ping(veth.peer_ip, count=2)
    assert counter_packets(ids["xdp_counter"]) > counted
    # libxdp 1.6.3 now extends it
    xdp_loader("1.6.3", "load", "-m", "skb", "-P", "40", iface, obj("xdp_drop_icmp.o"))
    assert libxdp_rows("1.6.3", iface) == our_rows(ours(iface))
    icmp = ids_by_name(ours(iface))["xdp_drop_icmp"]
    xdp_loader("1.6.3", "unload", iface, "-i", str(icmp))
    # and back to v2, which libxdp 1.3.1 extends
    cp = run_cli("upgrade", iface, "--dispatcher-version", "2", check=True)
    assert "(version 3 -> 2)" in cp.stdout
    st2 = ours(iface)
    assert st2["dispatcher_version"] == 2 and ids_by_name(st2) == ids
    assert {n: map_ids(i) for n, i in ids.items()} == maps
    xdp_loader("1.3.1", "load", "-m", "skb", "-P", "40", iface, obj("xdp_drop_icmp.o"))
    assert libxdp_rows("1.3.1", iface) == our_rows(ours(iface))
    cp = run_cli("upgrade", iface, "--dispatcher-version", "2", check=True)
    assert "already is version 2; nothing changed" in cp.stdout


def test_apply_changes_the_version_as_its_own_change(veth: nettools.VethNs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import yaml

    iface = veth.host_if

    def write(version: int) -> str:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({"version": 1, "interfaces": [
            {"name": iface, "mode": "skb", "dispatcher_version": version, "programs": [
                {"name": "count", "object": obj("xdp_counter.o"), "priority": 10},
                {"name": "pass", "object": obj("xdp_pass.o"), "priority": 20}]}]}))
        return str(path)

    cfg = write(2)
    run_cli("apply", cfg, check=True)
    st = ours(iface)
    assert st["dispatcher_version"] == 2
    ids = ids_by_name(st)
    cfg = write(3)
    cp = run_cli("plan", cfg)
    assert cp.returncode == 2 and "~ version  dispatcher" in cp.stdout and "v2 -> v3" in cp.stdout
    cp = run_cli("status", iface, "--config", cfg, "--json")
    assert cp.returncode == 2
    kinds = [i["kind"] for i in json.loads(cp.stdout)["drift"]["interfaces"][0]["items"]]
    assert kinds == ["version"]
    run_cli("apply", cfg, check=True)
    st = ours(iface)
    assert st["dispatcher_version"] == 3 and ids_by_name(st) == ids
    assert run_cli("plan", cfg).returncode == 0


@pytest.fixture(scope="module")
def libxdp_attach(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/vm/libxdp_attach.c built against Debian 12's libxdp.so.1 (run with 1.6.3's)."""
    out = str(tmp_path_factory.mktemp("bin") / "libxdp-attach")
    subprocess.run(["clang", "-O1", "-o", out, os.path.join(REPO, "tests", "vm", "libxdp_attach.c"),
                    "/usr/lib/x86_64-linux-gnu/libxdp.so.1"], check=True, capture_output=True)
    return out


def test_a_device_bound_chain_stays_bound(veth: nettools.VethNs, libxdp_attach: str) -> None:
    from dispatcher.kernel import loader

    if loader.kernel_version() < (6, 7):       # as tests/host/test_dispatcher_v3.py
        pytest.skip("device-bound XDP with frags needs Linux >= 6.7")
    iface = veth.host_if
    build_root("1.6.3")
    subprocess.run(["bash", SCRIPT, "run", "1.6.3", libxdp_attach, iface, "native", "devbind",
                    obj("xdp_runcfg.o"), obj("xdp_pass.o")], check=True, capture_output=True,
                   timeout=120)
    st = ours(iface)
    assert st["dispatcher"]["devbound"] is True and st["dispatcher_version"] == 3
    ids = ids_by_name(st)
    our_load(iface, "xdp_counter.o", 40, mode="native")
    st = ours(iface)
    assert st["dispatcher"]["devbound"] is True and st["dispatcher_version"] == 3
    assert {k: v for k, v in ids_by_name(st).items() if k in ids} == ids
    assert libxdp_rows("1.6.3", iface) == our_rows(st)
    assert nettools.ping(veth.peer_ip, count=1)
    # downgrading is refused with the reason, and nothing changes
    cp = run_cli("upgrade", iface, "--dispatcher-version", "2")
    assert cp.returncode != 0 and "device-bound" in cp.stderr and "Traceback" not in cp.stderr
    assert ours(iface) == st
    api.unload(iface, ids=[ids["xdp_pass"]])
    st = ours(iface)
    assert st["dispatcher"]["devbound"] is True and len(st["programs"]) == 2


def test_upgrade_under_traffic_loses_no_packet_and_keeps_pins(veth: nettools.VethNs,
                                                              private: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """v2 -> v3 -> v2 while a sender runs: every sequence number arrives, the components
    keep their ids, and a pinned map (xdp_blocklist's) keeps its id and entries."""
    import time

    from tests.host.test_apply_live import Receiver, _lpm_key, _send

    iface = veth.host_if
    for name, prio in (("xdp_counter.o", 10), ("xdp_blocklist.o", 20), ("xdp_pass.o", 30)):
        our_load(iface, name, prio, version=2)
    ids = ids_by_name(ours(iface))
    with bpf.obj_get(os.path.join(private, "blocklist")) as m:
        pinned = bpf.map_info(m.fd).id
        bpf.map_update(m.fd, _lpm_key("198.51.100.7"), b"\x01")
    nettools.ping(veth.host_ip, netns=veth.netns, count=1)
    recv = Receiver(veth.host_ip)
    stop = tmp_path / "stop-sender"
    sender = _send(veth, recv, stop)      # the live tests' sender, at the receiver's rate
    versions = []
    try:
        recv.wait_for(200)
        for v in (3, 2):
            run_cli("upgrade", iface, "--dispatcher-version", str(v), check=True)
            versions.append(ours(iface)["dispatcher_version"])
            recv.wait_for(len(recv.seen) + 200)
    finally:
        stop.touch()
        out, err = sender.communicate(timeout=60)
        time.sleep(0.5)
        recv.close()
    sent = int(out.strip())
    assert versions == [3, 2]
    assert sorted(recv.seen) == list(range(sent)), \
        f"sent {sent}, received {len(recv.seen)} ({sent - len(set(recv.seen))} lost); {err}"
    assert ids_by_name(ours(iface)) == ids
    with bpf.obj_get(os.path.join(private, "blocklist")) as m:
        assert bpf.map_info(m.fd).id == pinned
        assert bpf.map_lookup(m.fd, _lpm_key("198.51.100.7"), 1) == b"\x01"


@pytest.mark.parametrize("version", [2, 3])
def test_a_packet_rewriting_component_joins_a_chain_of_each_version(veth: nettools.VethNs,
                                                                    version: int) -> None:
    """Our stubs make a no-op packet-changing call in every version we write, so kernels
    with the packet-pointer check (Debian's 6.12) accept xdp_rewrite (bpf_xdp_adjust_head)
    as a component; and it is still there after the chain is rebuilt."""
    iface = veth.host_if
    our_load(iface, "xdp_counter.o", 10, version=version)
    our_load(iface, "xdp_rewrite.o", 20)
    st = ours(iface)
    assert st["dispatcher_version"] == version
    assert [p["name"] for p in st["programs"]] == ["xdp_counter", "xdp_rewrite"]
    assert nettools.ping(veth.peer_ip, count=1)
    api.unload(iface, ids=[ids_by_name(st)["xdp_counter"]])
    assert [p["name"] for p in ours(iface)["programs"]] == ["xdp_rewrite"]
    if version == 3:     # libxdp 1.6 (stubs with the no-op) re-attaches it too
        xdp_loader("1.6.3", "load", "-m", "skb", "-P", "30", iface, obj("xdp_pass.o"))
        assert [r[1] for r in libxdp_rows("1.6.3", iface)] == ["xdp_rewrite", "xdp_pass"]
