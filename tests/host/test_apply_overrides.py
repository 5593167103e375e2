"""Load-time overrides of config entries on the real kernel: ``globals`` (.rodata/.data
values by variable name), ``pin_maps`` (maps kept across upgrades) and ``frags``.

A single program needs no freplace (the host attaches it directly); the chain variants
are marked ``freplace`` (VM tier). Behaviour is checked with BPF_PROG_TEST_RUN on the
program attached to the interface (our dispatcher, or the program itself).
"""

from __future__ import annotations

import os
import shutil
import struct

import pytest

from dispatcher.kernel import bpf
from tests import packets
from tests.cli import assert_one_line_error, run_cli
from tests.host import nettools
from tests.host import test_apply as _apply
from tests.host.test_apply import plan, status, write_cfg
from tests.objects import EXAMPLES_DIR

pytestmark = [pytest.mark.host_kernel, pytest.mark.once]   # config logic: host and 6.12 run it

XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3
veth = _apply.veth
state_dir = _apply.state_dir


def run_attached(ifindex: int, pkt: bytes) -> int:
    """Verdict of the program attached to ``ifindex`` for ``pkt`` (BPF_PROG_TEST_RUN)."""
    from dispatcher.kernel import netlink

    xs = netlink.read_xdp(ifindex)
    assert xs.prog_id, "nothing attached"
    with bpf.prog_get_fd_by_id(xs.prog_id) as fd:
        return bpf.prog_test_run(fd.fd, pkt).retval


def prog_ids(iface: str) -> list[int]:
    """Ids of our programs on ``iface``: the components, or the directly attached one."""
    st = status(iface)
    if st["kind"] == "dispatcher":
        return [p["id"] for p in st["programs"]]
    return [st["main"]["id"]]


def items(p: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return sorted((i["action"], i["detail"]) for i in p["interfaces"][0]["items"])


def rodata_of(prog_id: int) -> bytes:
    """Contents of the .rodata map a program uses (found by its frozen, read-only flag)."""
    with bpf.prog_get_fd_by_id(prog_id) as fd:
        map_ids = bpf.prog_info(fd.fd).map_ids
    for mid in map_ids:
        with bpf.map_get_fd_by_id(mid) as m:
            info = bpf.map_info(m.fd)
            if info.name.endswith(".rodata"):
                return bpf.map_lookup(m.fd, b"\0\0\0\0", info.value_size) or b""
    raise AssertionError(f"program {prog_id} has no .rodata map")


def test_globals_override_changes_behaviour(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    idx = veth.host_ifindex
    entry = {"name": "filter", "object": "xdp_settings.o",
             "globals": {"ports": [53, 5353, 0, 0], "prefix": "dns", "min_payload": 4,
                         "verdict": "XDP_TX"}}
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if, [entry])
    run_cli("check", cfg, check=True)
    run_cli("apply", cfg, check=True)
    dns = packets.udp_packet(dport=53, payload=b"dns?")
    assert run_attached(idx, dns) == XDP_TX
    assert run_attached(idx, packets.udp_packet(dport=5353, payload=b"dns!x")) == XDP_TX
    assert run_attached(idx, packets.udp_packet(dport=53, payload=b"dn")) == XDP_PASS   # too short
    assert run_attached(idx, packets.udp_packet(dport=53, payload=b"xyz!")) == XDP_PASS  # prefix
    assert run_attached(idx, packets.udp_packet(dport=9, payload=b"dns?")) == XDP_PASS   # port
    (pid,) = prog_ids(veth.host_if)
    ro = rodata_of(pid)
    assert struct.unpack_from("<4H", ro, 2) == (53, 5353, 0, 0) and ro[16:24] == b"dns\0\0\0\0\0"
    assert plan(cfg)[0] == 0
    # A changed override is an upgrade (a reload: .rodata is frozen).
    entry["globals"] = {"enabled": False}
    write_cfg(tmp_path / "c.yaml", veth.host_if, [entry])
    rc, p = plan(cfg)
    assert rc == 2 and items(p) == [("upgrade", "globals changed")]
    run_cli("apply", cfg, check=True)
    assert run_attached(idx, dns) == XDP_PASS
    assert run_attached(idx, packets.udp_packet(dport=9)) == XDP_PASS
    # No overrides: the object's own values (port 9 dropped).
    del entry["globals"]
    write_cfg(tmp_path / "c.yaml", veth.host_if, [entry])
    run_cli("apply", cfg, check=True)
    assert run_attached(idx, packets.udp_packet(dport=9)) == XDP_DROP
    assert run_attached(idx, dns) == XDP_PASS
    assert plan(cfg)[0] == 0


def test_bad_global_refused_before_any_change(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if, [
        {"name": "filter", "object": "xdp_settings.o", "globals": {"ports": [53]}}])
    cp = run_cli("apply", cfg)
    assert_one_line_error(cp, "c.yaml:", "globals.ports: expected a list of 4 integers (__u16[4])")
    assert cp.returncode == 2
    assert status(veth.host_if)["kind"] == "none"


def _percpu_counters(path: str) -> tuple[int, int]:
    """(packets, bytes) summed over CPUs from the pinned per-CPU ``counters`` map."""
    n = bpf.possible_cpus()
    with bpf.obj_get(path) as fd:
        raw = bpf.map_lookup(fd.fd, b"\0\0\0\0", 16 * n)
    assert raw is not None
    vals = [struct.unpack_from("<QQ", raw, 16 * i) for i in range(n)]
    return sum(v[0] for v in vals), sum(v[1] for v in vals)


def test_pin_maps_keep_contents_across_upgrade(veth, tmp_path, state_dir, bpffs_dir) -> None:  # type: ignore[no-untyped-def]
    pin = os.path.join(bpffs_dir, "counter")
    entry = {"name": "count", "object": "xdp_counter.o", "pin_maps": pin}
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if, [entry])
    run_cli("apply", cfg, check=True)
    path = os.path.join(pin, "counters")
    assert os.path.exists(path)
    n = bpf.possible_cpus()
    with bpf.obj_get(path) as fd:      # seed CPU 0's slot: 1000 packets, 5000 bytes
        bpf.map_update(fd.fd, b"\0\0\0\0", struct.pack("<QQ", 1000, 5000) + bytes(16 * (n - 1)))
    # (The veth may carry real traffic too, e.g. IPv6 router solicitations: hence >=.)
    pkt = packets.udp_packet()
    run_attached(veth.host_ifindex, pkt)
    before = _percpu_counters(path)
    assert before[0] >= 1001 and before[1] >= 5000 + len(pkt)
    old_ids = prog_ids(veth.host_if)
    # Upgrade: the same object under another path. The new program reuses the pinned map.
    copy = tmp_path / "counter-v2.o"
    shutil.copy(os.path.join(EXAMPLES_DIR, "xdp_counter.o"), copy)
    entry["object"] = str(copy)
    write_cfg(tmp_path / "c.yaml", veth.host_if, [entry])
    rc, p = plan(cfg)
    assert rc == 2 and [i["action"] for i in p["interfaces"][0]["items"]] == ["upgrade"]
    run_cli("apply", cfg, check=True)
    assert prog_ids(veth.host_if) != old_ids
    after = _percpu_counters(path)
    assert after[0] >= before[0] and after[1] >= before[1]          # not a fresh map
    run_attached(veth.host_ifindex, pkt)                              # the new program uses it
    now = _percpu_counters(path)
    assert now[0] >= after[0] + 1 and now[1] >= after[1] + len(pkt)
    # Unloading keeps the pins (they are the user's data); the fixture removes the directory.
    run_cli("unload", veth.host_if, "--all", check=True)
    assert os.path.exists(path)


def test_pin_maps_must_be_on_bpffs(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if, [
        {"name": "count", "object": "xdp_counter.o", "pin_maps": str(tmp_path / "pins")}])
    cp = run_cli("apply", cfg)
    assert_one_line_error(cp, "c.yaml:", "programs[0].pin_maps:",
                          "is not on a BPF filesystem (bpffs)")
    assert cp.returncode == 2
    assert status(veth.host_if)["kind"] == "none"
    assert not (tmp_path / "pins").exists()


def test_frags_override(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    """``frags: true`` makes a plain-section program (or the dispatcher running it) frags-
    aware. The kernel's veth driver checks exactly that when attaching in native mode: a
    peer MTU larger than a page needs a frags-aware program ("Peer MTU is too large")."""
    nettools.ip("link", "set", veth.peer_if, "mtu", "9000", netns=veth.netns)
    entry = {"name": "pass", "object": "xdp_pass.o", "frags": True}
    path = tmp_path / "c.yaml"

    def write() -> str:
        cfg = write_cfg(path, veth.host_if, [entry])
        path.write_text(path.read_text().replace("mode: skb", "mode: native"))
        return cfg

    cfg = write()
    run_cli("apply", cfg, check=True)
    before = prog_ids(veth.host_if)
    assert run_attached(veth.host_ifindex, packets.udp_packet()) == XDP_PASS
    entry["frags"] = False          # the object's own value: no override left
    write()
    rc, p = plan(cfg)
    assert rc == 2 and items(p) == [("upgrade", "frags changed")]
    cp = run_cli("apply", cfg)
    assert cp.returncode != 0 and "MTU" in cp.stderr, cp.stderr
    assert prog_ids(veth.host_if) == before          # unchanged
    nettools.ip("link", "set", veth.peer_if, "mtu", "1500", netns=veth.netns)
    run_cli("apply", cfg, check=True)
    assert prog_ids(veth.host_if) != before and plan(cfg)[0] == 0


@pytest.mark.freplace
def test_chain_overrides_upgrade_one_component(veth, tmp_path, state_dir, bpffs_dir) -> None:  # type: ignore[no-untyped-def]
    """In a chain: a changed ``globals`` reloads only that component; a pinned map of
    another component keeps its contents when that one is upgraded."""
    idx = veth.host_ifindex
    pin = os.path.join(bpffs_dir, "count")
    progs = [{"name": "filter", "object": "xdp_settings.o", "priority": 10,
              "globals": {"ports": [53, 0, 0, 0]}},
             {"name": "count", "object": "xdp_counter.o", "priority": 20, "pin_maps": pin}]
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if, progs)
    run_cli("apply", cfg, check=True)
    st = status(veth.host_if)
    assert st["kind"] == "dispatcher"
    ids = {p["name"]: p["id"] for p in st["programs"]}
    assert run_attached(idx, packets.udp_packet(dport=53)) == XDP_DROP
    assert run_attached(idx, packets.udp_packet(dport=9)) == XDP_PASS
    path = os.path.join(pin, "counters")
    n = bpf.possible_cpus()
    with bpf.obj_get(path) as fd:
        bpf.map_update(fd.fd, b"\0\0\0\0", struct.pack("<QQ", 1000, 5000) + bytes(16 * (n - 1)))
    # globals of the filter change: only the filter is reloaded.
    progs[0]["globals"] = {"ports": [9, 0, 0, 0], "verdict": "XDP_TX"}
    write_cfg(tmp_path / "c.yaml", veth.host_if, progs)
    rc, p = plan(cfg)
    assert rc == 2 and items(p) == [("keep", ""), ("upgrade", "globals changed")]
    run_cli("apply", cfg, check=True)
    now = {p["name"]: p["id"] for p in status(veth.host_if)["programs"]}
    assert now["xdp_counter"] == ids["xdp_counter"] and now["xdp_settings"] != ids["xdp_settings"]
    assert run_attached(idx, packets.udp_packet(dport=9)) == XDP_TX
    assert run_attached(idx, packets.udp_packet(dport=53)) == XDP_PASS
    # The counter is upgraded (another copy of its object): its pinned map is kept.
    before = _percpu_counters(path)
    assert before[0] >= 1001
    copy = tmp_path / "counter-v2.o"
    shutil.copy(os.path.join(EXAMPLES_DIR, "xdp_counter.o"), copy)
    progs[1]["object"] = str(copy)
    write_cfg(tmp_path / "c.yaml", veth.host_if, progs)
    run_cli("apply", cfg, check=True)
    later = {p["name"]: p["id"] for p in status(veth.host_if)["programs"]}
    assert later["xdp_settings"] == now["xdp_settings"] and later["xdp_counter"] != now["xdp_counter"]
    assert _percpu_counters(path)[0] >= before[0]
    assert run_attached(idx, packets.udp_packet(dport=53)) == XDP_PASS    # counted, passed
    assert _percpu_counters(path)[0] >= before[0] + 1
    assert plan(cfg)[0] == 0
