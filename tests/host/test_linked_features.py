"""Linked chains with components that use bpf_loop callbacks, tail calls and CO-RE.

Each feature object (bpf/examples/xdp_loop.o, xdp_tailcall.o, xdp_core.o) is linked
into a chain with xdp_counter after it and checked against the oracle (the components
run one by one by hand on the same maps, chain_oracle.py). The tail call is checked
with slot 0 of the component's program array filled with xdp_tail_target (loaded on
its own from the same object, on the chain's maps) and empty. A chain that must link
without program BTF (a component without BTF) refuses each of them by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dispatcher import linked, loader
from dispatcher.errors import XdpDispatchError
from dispatcher.obj import combine
from dispatcher.obj.elf import read_object
from dispatcher.syscalls import bpf
from tests import packets
from tests.host import chain_oracle, nettools
from tests.host.test_linked import PASS, built, link_comp, slots_of
from tests.objects import example

pytestmark = pytest.mark.host_kernel

XDP_DROP, XDP_PASS = 1, 2
U32_0 = b"\0\0\0\0"


def _slot_maps(b: linked.BuiltChain, label: str) -> dict[str, int]:
    slots = b.description["slots"]
    assert isinstance(slots, list)
    maps = next(s["maps"] for s in slots if s["label"] == label)
    assert isinstance(maps, dict)
    return maps


def _array_u64(map_id: int, key: int) -> int:
    with bpf.map_get_fd_by_id(map_id) as fd:
        raw = bpf.map_lookup(fd.fd, key.to_bytes(4, "little"), 8)
    assert raw is not None
    return int.from_bytes(raw, "little")


def _counter_packets(b: linked.BuiltChain) -> int:
    mid = _slot_maps(b, "xdp_counter")["counters"]
    snap = chain_oracle.snapshot([mid])
    return sum(v[0] for (_m, k), v in snap.items() if k == U32_0)


@pytest.mark.parametrize("name", ["xdp_loop", "xdp_core"])
def test_feature_component_equals_components_by_hand(name: str, bpffs_dir: str) -> None:
    rows = [(example(name), 10, PASS), (example("xdp_counter"), 20, PASS)]
    with built(rows, bpffs_dir) as b:
        assert b.combined.btf_mode == "hybrid"
        seen = chain_oracle.compare(b.prog.fd, slots_of(b))
        stats = _slot_maps(b, name)[{"xdp_loop": "loop_stats", "xdp_core": "core_stats"}[name]]
        # every packet went through the feature component: its key-0 counter moved
        assert _array_u64(stats, 0) > 0
        if name == "xdp_core":
            # the running kernel's xdp_md has egress_ifindex (bpf_core_field_exists)
            assert _array_u64(stats, 1) == 1
    verdicts = {n: v for n, v, _c in seen}
    # both verdicts seen; DROP stops the chain before the counter (checked by the oracle)
    assert set(verdicts.values()) == {XDP_DROP, XDP_PASS}, verdicts
    if name == "xdp_loop":
        assert verdicts["udp-1200"] == XDP_DROP and verdicts["udp"] == XDP_PASS
    else:
        assert verdicts["short-14"] == XDP_DROP and verdicts["udp"] == XDP_PASS


def test_loop_callback_counts_in_chain(bpffs_dir: str) -> None:
    """bpf_loop ran its callback len/32 times (capped at 64) inside the chain."""
    with built([(example("xdp_loop"), 10, PASS), (example("xdp_counter"), 20, PASS)],
               bpffs_dir) as b:
        stats = _slot_maps(b, "xdp_loop")["loop_stats"]
        pkt = packets.udp_packet(payload=bytes(100))
        rounds = min(len(pkt) // 32, 64)
        r = bpf.prog_test_run(b.prog.fd, pkt)
        assert r.retval == XDP_PASS
        assert _array_u64(stats, 0) == rounds
        assert _array_u64(stats, 1) == sum(range(rounds))
        assert _counter_packets(b) == 1


@contextmanager
def _tail_target(bpffs_dir: str) -> Iterator[tuple[int, int]]:
    """xdp_tail_target loaded on its own from xdp_tailcall.o, with its own tail_hits map
    (the chain creates only the maps its entry references). Yields (prog fd, map id)."""
    obj = read_object(example("xdp_tailcall"))
    with loader.open_object(obj, pin_root=bpffs_dir, only_maps=["tail_hits"]) as lo:
        p = loader.load_program(lo, obj.program(name="xdp_tail_target"))
        try:
            yield p.fd.fd, bpf.map_info(lo.maps["tail_hits"].fd).id
        finally:
            p.close()


TAIL_CALLS_OK = loader.kernel_version() >= linked.TAIL_CALL_MIN_KERNEL


def test_tail_call_refused_on_older_kernels(bpffs_dir: str) -> None:
    """Below TAIL_CALL_MIN_KERNEL a linked chain would end at a tail call's return (seen on
    6.1 and 6.12), unlike the same components under freplace: such a chain is refused by name."""
    if TAIL_CALLS_OK:
        pytest.skip(f"kernel {loader.kernel_version()} returns from tail calls into the chain; "
                    "test_tail_call_in_chain covers it")
    rows = [(example("xdp_tailcall"), 10, PASS), (example("xdp_counter"), 20, PASS)]
    before = set(os.listdir(bpffs_dir))
    with pytest.raises(combine.LinkError) as ei:
        with built(rows, bpffs_dir):
            pass
    msg = str(ei.value)
    assert "xdp_tail_entry" in msg and "tail calls" in msg and ">= 6.18" in msg
    assert set(os.listdir(bpffs_dir)) == before


def test_tail_call_in_chain(bpffs_dir: str) -> None:
    if not TAIL_CALLS_OK:
        pytest.skip(f"kernel {loader.kernel_version()} refuses tail calls in linked chains "
                    "(test_tail_call_refused_on_older_kernels)")
    rows = [(example("xdp_tailcall"), 10, PASS), (example("xdp_counter"), 20, PASS)]
    udp = packets.udp_packet()
    with built(rows, bpffs_dir) as b:
        assert b.combined.btf_mode == "hybrid"
        assert [c.prog.name for c in b.components] == ["xdp_tail_entry", "xdp_counter"]
        maps = _slot_maps(b, "xdp_tail_entry")
        assert set(maps) == {"jmp_table"}      # the target's tail_hits is not in the chain
        # slot 0 empty: bpf_tail_call returns, the entry falls through to DROP, chain stops
        assert bpf.prog_test_run(b.prog.fd, udp).retval == XDP_DROP
        assert _counter_packets(b) == 0
        empty = chain_oracle.compare(b.prog.fd, slots_of(b))
        assert {v for _n, v, _c in empty} == {XDP_DROP}
        with _tail_target(bpffs_dir) as (target_fd, hits), \
                bpf.map_get_fd_by_id(maps["jmp_table"]) as jt:
            bpf.map_update(jt.fd, U32_0, target_fd.to_bytes(4, "little"))
            # the target's PASS returns into the chain, and the next slot (counter) runs
            assert bpf.prog_test_run(b.prog.fd, udp).retval == XDP_PASS
            assert _array_u64(hits, 0) == 1 and _counter_packets(b) == 1
            full = chain_oracle.compare(b.prog.fd, slots_of(b))
            assert {v for _n, v, _c in full} == {XDP_PASS}
            assert all(c for _n, _v, c in full)
            assert _array_u64(hits, 0) == 1 + 2 * len(full)      # chain + by hand, each packet
            bpf.map_delete(jt.fd, U32_0)
        # emptied again: back to the fall-through verdict
        assert bpf.prog_test_run(b.prog.fd, udp).retval == XDP_DROP


def _strip_btf(src: str, dst: Path) -> str:
    objcopy = shutil.which("llvm-objcopy") or shutil.which("llvm-objcopy-14")
    if objcopy is None:
        pytest.skip("llvm-objcopy not installed: cannot make an object without BTF")
    subprocess.run([objcopy, "--remove-section=.BTF", "--remove-section=.BTF.ext", src, str(dst)],
                   check=True)
    return str(dst)


@pytest.mark.parametrize(("name", "what"), [("xdp_loop", "bpf_loop-style callbacks"),
                                            ("xdp_tailcall", "tail calls"),
                                            ("xdp_core", "CO-RE relocations")])
def test_no_btf_chain_refuses_feature_component(name: str, what: str, bpffs_dir: str,
                                                tmp_path: Path) -> None:
    plain = _strip_btf(example("xdp_pass"), tmp_path / "xdp_pass_nobtf.o")
    assert read_object(plain).btf is None
    label = "xdp_tail_entry" if name == "xdp_tailcall" else name
    comps = combine.sort_components([link_comp(plain, 10, PASS),
                                     link_comp(example(name), 20, PASS)])
    with pytest.raises(combine.LinkError) as ei:
        combine.check_components(comps)
    msg = str(ei.value)
    assert msg.startswith(f"{label} ({example(name)}): uses {what}, which need program BTF")
    assert "component xdp_pass has no BTF" in msg and "\n" not in msg
    # the builder refuses the same way, before creating anything
    before = set(os.listdir(bpffs_dir))
    with pytest.raises(XdpDispatchError, match=f"^{label} .*uses {what}"):
        with linked.build(comps, pin_root=bpffs_dir):
            pass
    assert set(os.listdir(bpffs_dir)) == before


def test_no_btf_chain_of_plain_components_still_links(bpffs_dir: str, tmp_path: Path) -> None:
    """The stripped object itself is fine in a "none" chain (so the refusals above are
    about the feature component, not the stripped object)."""
    plain = _strip_btf(example("xdp_pass"), tmp_path / "xdp_pass_nobtf.o")
    comps = combine.sort_components([link_comp(plain, 10, PASS),
                                     link_comp(example("xdp_counter"), 20, PASS)])
    with linked.build(comps, pin_root=bpffs_dir) as b:
        assert b.combined.btf_mode == "none"
        assert bpf.prog_test_run(b.prog.fd, packets.udp_packet()).retval == XDP_PASS
        assert _counter_packets(b) == 1


def test_features_through_the_api_on_a_veth(netns_veth: nettools.VethNs, bpffs_dir: str,
                                            tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """dispatcher.load(dispatch="linked") with the three feature objects and the counter,
    one per call (each call relinks the chain); real pings show whether the tail call's
    slot is filled (empty: the entry drops the replies)."""
    import dispatcher

    monkeypatch.setenv("XDP_DISPATCH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LIBXDP_BPFFS", bpffs_dir)
    v = netns_veth
    try:
        for name, prio in (("xdp_loop", 10), ("xdp_core", 20), ("xdp_counter", 30)):
            dispatcher.load(v.host_if, [example(name)], mode="skb", priority=prio,
                            dispatch="linked")
        if not TAIL_CALLS_OK:
            (before,) = dispatcher.status(v.host_if)
            with pytest.raises(XdpDispatchError, match="uses tail calls"):
                dispatcher.load(v.host_if, [example("xdp_tailcall")], mode="skb",
                                priority=40, dispatch="linked")
            (after,) = dispatcher.status(v.host_if)      # refused: the chain is unchanged
            assert after.main is not None and before.main is not None
            assert after.main.id == before.main.id and len(after.programs) == 3
            assert nettools.ping(v.peer_ip, count=2, timeout=1)
            return
        dispatcher.load(v.host_if, [example("xdp_tailcall")], mode="skb", priority=40,
                        dispatch="linked")
        (st,) = dispatcher.status(v.host_if)
        js = st.to_json()
        assert js["kind"] == "linked"
        assert [p["name"] for p in js["programs"]] == ["xdp_loop", "xdp_core", "xdp_counter",
                                                       "xdp_tail_entry"]
        assert st.description is not None
        slots = st.description["slots"]
        assert isinstance(slots, list)
        maps = {s["label"]: s["maps"] for s in slots}
        assert not nettools.ping(v.peer_ip, count=2, timeout=1)      # slot 0 empty: DROP
        counted = _array_sum(maps["xdp_counter"]["counters"])
        assert counted >= 2
        assert _array_u64(maps["xdp_loop"]["loop_stats"], 0) > 0
        assert _array_u64(maps["xdp_core"]["core_stats"], 0) >= counted
        with _tail_target(bpffs_dir) as (target_fd, hits), \
                bpf.map_get_fd_by_id(maps["xdp_tail_entry"]["jmp_table"]) as jt:
            bpf.map_update(jt.fd, U32_0, target_fd.to_bytes(4, "little"))
            assert nettools.ping(v.peer_ip, count=2, timeout=1)
            assert _array_u64(hits, 0) >= 2
            assert _array_sum(maps["xdp_counter"]["counters"]) >= counted + 2
            # another load relinks the chain; the program array is carried over by id
            dispatcher.load(v.host_if, [example("xdp_pass")], mode="skb", priority=50,
                            dispatch="linked")
            (st,) = dispatcher.status(v.host_if)
            assert st.description is not None
            slots = st.description["slots"]
            assert isinstance(slots, list)
            assert {s["label"]: s["maps"] for s in slots}["xdp_tail_entry"] == \
                maps["xdp_tail_entry"]
            assert nettools.ping(v.peer_ip, count=1, timeout=1)
    finally:
        dispatcher.unload_all(v.host_if)


def _array_sum(map_id: int) -> int:
    snap = chain_oracle.snapshot([map_id])
    return sum(v[0] for (_m, k), v in snap.items() if k == U32_0)
