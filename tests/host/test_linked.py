"""Linked chains on the running kernel (no freplace needed), checked against the oracle:
the same components run one by one by hand, on the same maps (chain_oracle.py).

The same table also runs as a freplace dispatcher chain (marked ``freplace``: the VM
tier), checked against the same oracle, so linked and freplace agree packet by packet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dispatcher.chain import observe, router
from dispatcher.chain.linked import build, combine
from dispatcher.chain.model import NewProgram, request
from dispatcher.errors import KernelError, XdpDispatchError
from dispatcher.kernel import bpf, netlink
from dispatcher.obj.elf import read_object
from dispatcher.uapi import BPF_PROG_TYPE_XDP
from tests import packets
from tests.host import chain_oracle, config_oracle, nettools
from tests.objects import DEBIAN_BPF_DIR, example

pytestmark = pytest.mark.host_kernel

ABORTED, DROP, PASS, TX, REDIRECT = (1 << i for i in range(5))


def deb(name: str) -> str:
    return os.path.join(DEBIAN_BPF_DIR, name + ".o")


TABLE: dict[str, list[tuple[str, int, int]]] = {
    "examples-3": [(example("xdp_counter"), 10, PASS), (example("xdp_drop_icmp"), 20, PASS),
                   (example("xdp_rewrite"), 30, PASS | TX)],
    "debian-3": [(deb("xdpfilt_dny_all"), 10, PASS), (deb("xdpdump_xdp"), 20, PASS),
                 (deb("xsk_def_xdp_prog"), 30, PASS)],
    "mixed-10": [(example("xdp_counter"), 5, PASS), (deb("xdpfilt_alw_ip"), 10, PASS | DROP),
                 (example("xdp_rewrite"), 15, PASS | TX), (example("xdp_globals"), 20, PASS),
                 (example("xdp_subprogs"), 25, PASS), (deb("xdpdump_xdp"), 30, PASS),
                 (example("xdp_blocklist"), 35, PASS), (example("xdp_frags"), 40, PASS),
                 (deb("xsk_def_xdp_prog"), 45, PASS),
                 (example("xdp_drop_icmp"), 50, PASS)],
    "debian-10": [(deb("xdpfilt_dny_all"), 10, PASS), (deb("xdpfilt_alw_eth"), 11, PASS | DROP),
                  (deb("xdpfilt_dny_eth"), 12, PASS), (deb("xdpfilt_alw_tcp"), 13, PASS | DROP),
                  (deb("xdpfilt_dny_ip"), 14, PASS), (deb("xdpfilt_dny_tcp"), 15, PASS),
                  (deb("xdpfilt_dny_udp"), 16, PASS), (deb("xdpfilt_alw_udp"), 17, PASS),
                  (deb("xdpdump_xdp"), 18, PASS), (deb("xsk_def_xdp_prog"), 19, PASS)],
    # callbacks, CO-RE, packet rewriting, frags, global data, pinned maps, subprograms
    "features-7": [(example("xdp_loop"), 5, PASS | DROP), (example("xdp_core"), 10, PASS),
                   (example("xdp_rewrite"), 15, PASS | TX), (example("xdp_frags"), 20, PASS),
                   (example("xdp_globals"), 25, PASS), (example("xdp_blocklist"), 30, PASS),
                   (example("xdp_subprogs"), 35, PASS)],
}


def _need(paths: list[str]) -> None:
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        pytest.skip(f"objects not installed (xdp-tools): {', '.join(missing)}")


def link_comp(path: str, prio: int, actions: int, kept: int = -1) -> combine.LinkComponent:
    obj = read_object(path)
    prog = next(p for p in obj.programs if p.prog_type == BPF_PROG_TYPE_XDP)
    return combine.LinkComponent(obj, prog, prog.name, prio, actions, build.file_sha256(path),
                                 kept)


@contextmanager
def built(rows: list[tuple[str, int, int]], pin_root: str,
          stats: bool = False, inline: bool = True) -> Iterator[build.BuiltChain]:
    comps = combine.sort_components([link_comp(*r) for r in rows])
    with build.build(comps, pin_root=pin_root, stats=stats, inline=inline) as b:
        yield b


def libxdp_order(rows: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """The rows in the order libxdp runs them, from the table alone: priority, then the
    program's name (read by binutils' readelf, not our ELF reader)."""
    return sorted(rows, key=lambda r: (r[1], config_oracle.elf_program_name(r[0])))


def slots_of(b: build.BuiltChain, rows: list[tuple[str, int, int]] | None = None
             ) -> list[chain_oracle.SlotUnderTest]:
    """The oracle's slots: the chain's maps per slot, paired with the rows in libxdp's
    order (when ``rows`` is given) rather than with the chain's own idea of its order."""
    slots = b.description.to_json()["slots"]
    assert isinstance(slots, list)
    if rows is None:
        return [chain_oracle.SlotUnderTest(c.obj, c.prog, c.actions, s["maps"])
                for c, s in zip(b.components, slots, strict=True)]
    want = libxdp_order(rows)
    assert [(c.prog.name, c.priority) for c in b.components] == \
        [(config_oracle.elf_program_name(p), pr) for p, pr, _a in want]
    out = []
    for (path, prio, acts), s in zip(want, slots, strict=True):
        c = link_comp(path, prio, acts)
        out.append(chain_oracle.SlotUnderTest(c.obj, c.prog, acts, s["maps"]))
    return out


# The default (inlined, counting) and the old way (called, not counting) run on every
# kernel; the two mixed variants add nothing kernel-specific: host and newest VM only.
VARIANTS = [pytest.param(True, True, id="inlined-stats-on"),
            pytest.param(False, False, id="called-stats-off"),
            pytest.param(True, False, id="inlined-stats-off", marks=pytest.mark.once),
            pytest.param(False, True, id="called-stats-on", marks=pytest.mark.once)]


@pytest.mark.parametrize("inline,stats", VARIANTS)
@pytest.mark.parametrize("name", list(TABLE))
def test_linked_chain_equals_components_by_hand(name: str, stats: bool, inline: bool,
                                                bpffs_dir: str) -> None:
    rows = TABLE[name]
    _need([r[0] for r in rows])
    with built(rows, bpffs_dir, stats, inline) as b:
        info = bpf.prog_info(b.prog.fd)
        assert info.name == "xdp_chain" and len(b.combined.slots) == len(rows)
        assert observe.read_description(b.prog.fd) == b.description
        # every component of the table can be inlined: all are, or none when switched off
        assert [s.inlined for s in b.combined.slots] == [inline] * len(rows), \
            b.combined.not_inlined
        assert [s.inlined for s in b.description.slots] == [inline] * len(rows)
        assert b.description.inline == inline
        print(f"{name} stats={stats} inline={inline}: verified_insns "
              f"{info.verified_insns}, {b.combined.insn_count} insns")
        seen = chain_oracle.compare(b.prog.fd, slots_of(b, rows))
    verdicts = {v for _n, v, _c in seen}
    assert len(verdicts) >= 2 or name == "debian-3", f"table {name} only saw verdicts {verdicts}"
    assert any(c for _n, _v, c in seen), f"table {name}: no packet changed any map"


@pytest.mark.freplace
@pytest.mark.parametrize("name", list(TABLE))
def test_freplace_chain_equals_components_by_hand(name: str, bpffs_dir: str,
                                                  netns_veth: nettools.VethNs) -> None:
    """The same table as a freplace dispatcher chain (VM tier), against the same oracle."""
    rows = TABLE[name]
    _need([r[0] for r in rows])
    v = netns_veth
    new = []
    for path, prio, acts in rows:
        c = link_comp(path, prio, acts)
        new.append(NewProgram(c.obj, c.prog, prio, acts))
    # no real traffic may reach the attached chain while maps are compared (IPv6 ND, ARP)
    nettools.ip("link", "set", v.host_if, "down")
    router.change(request(v.peer_if, mode="skb", add=new, netns=v.netns, root=bpffs_dir,
                          dispatch="freplace"))
    try:
        xs = netlink.read_xdp(v.peer_ifindex, netns=v.netns)
        with observe.observe(xs, bpffs_dir, keep_open=True) as ch:
            assert ch.state.kind == "dispatcher" and ch.main_fd is not None
            # The run order comes from the table (libxdp's sort), not from our observe:
            # slot i of the chain is paired with row i of that order.
            want = libxdp_order(rows)
            assert [(c.name, c.priority) for c in ch.state.programs] == \
                [(config_oracle.elf_program_name(p), pr) for p, pr, _a in want]
            slots = []
            for (path, prio, acts), fd in zip(want, ch.component_fds, strict=True):
                lc = link_comp(path, prio, acts)
                nc = NewProgram(lc.obj, lc.prog, prio, acts)
                ids = {}
                kn = {m.kernel_name: m.name for m in nc.obj.maps}
                for mid in bpf.prog_info(fd.fd).map_ids:
                    with bpf.map_get_fd_by_id(mid) as mfd:
                        ids[kn[bpf.map_info(mfd.fd).name]] = mid
                slots.append(chain_oracle.SlotUnderTest(nc.obj, nc.prog, nc.actions, ids))
            seen = chain_oracle.compare(ch.main_fd.fd, slots)
            assert any(c for _n, _v, c in seen)
    finally:
        router.change(request(v.peer_if, mode="skb", remove_all=True, netns=v.netns,
                              root=bpffs_dir))
        nettools.ip("link", "set", v.host_if, "up")


def _verdict(b: build.BuiltChain, pkt: bytes) -> int:
    return bpf.prog_test_run(b.prog.fd, pkt).retval


def _counter_packets(b: build.BuiltChain) -> int:
    slots = b.description.to_json()["slots"]
    assert isinstance(slots, list)
    mid = next(s["maps"]["counters"] for s in slots if "counters" in s["maps"])
    snap = chain_oracle.snapshot([mid])
    return sum(v[0] for (m, k), v in snap.items() if k == b"\0\0\0\0")


def test_chain_call_actions_rules(bpffs_dir: str) -> None:
    icmp, udp = packets.icmp_echo(), packets.udp_packet()
    # drop_icmp first, continuing only on PASS: ICMP stops with DROP, the counter misses it
    with built([(example("xdp_drop_icmp"), 10, PASS), (example("xdp_counter"), 20, PASS)],
               bpffs_dir) as b:
        assert _verdict(b, icmp) == 1 and _counter_packets(b) == 0
        assert _verdict(b, udp) == 2 and _counter_packets(b) == 1
    # continuing on DROP too: ICMP reaches the counter and the chain ends with XDP_PASS
    with built([(example("xdp_drop_icmp"), 10, PASS | DROP), (example("xdp_counter"), 20, PASS)],
               bpffs_dir) as b:
        assert _verdict(b, icmp) == 2 and _counter_packets(b) == 1
    # no actions at all: the first verdict is final, even XDP_PASS
    with built([(example("xdp_drop_icmp"), 10, 0), (example("xdp_counter"), 20, PASS)],
               bpffs_dir) as b:
        assert _verdict(b, udp) == 2 and _counter_packets(b) == 0
    # a TX verdict stops the chain unless TX is in the actions; the packet is the echo
    echo = packets.udp_packet(dport=7)
    with built([(example("xdp_rewrite"), 10, PASS), (example("xdp_counter"), 20, PASS)],
               bpffs_dir) as b:
        r = bpf.prog_test_run(b.prog.fd, echo)
        assert r.retval == 3 and r.data_out[:6] == echo[6:12] and _counter_packets(b) == 0


def test_priority_order_and_ties(bpffs_dir: str) -> None:
    rows = [(example("xdp_counter"), 30, PASS), (example("xdp_pass_long"), 20, PASS),
            (example("xdp_drop_icmp"), 10, PASS), (example("xdp_pass"), 20, PASS)]
    with built(rows, bpffs_dir) as b:
        slots = b.description.to_json()["slots"]
        assert isinstance(slots, list)
        got = [(s["label"], s["priority"], os.path.basename(s["object"])) for s in slots]
    # priority ascending; same prio and name: fewer instructions first (libxdp's rule)
    assert got == [("xdp_drop_icmp", 10, "xdp_drop_icmp.o"), ("xdp_pass", 20, "xdp_pass.o"),
                   ("xdp_pass", 20, "xdp_pass_long.o"), ("xdp_counter", 30, "xdp_counter.o")]


def test_verifier_rejection_names_the_component(bpffs_dir: str) -> None:
    before = set(os.listdir(bpffs_dir))
    with pytest.raises(XdpDispatchError) as ei:
        with built([(example("xdp_counter"), 10, PASS), (example("xdp_reject"), 20, PASS),
                    (example("xdp_blocklist"), 30, PASS)], bpffs_dir):
            pass
    msg = str(ei.value)
    assert "BPF_PROG_LOAD" in msg and "in component xdp_reject" in msg
    assert set(os.listdir(bpffs_dir)) == before, "a failed build left pins behind"


def test_description_map_shape_and_bpftool_metadata(bpffs_dir: str) -> None:
    import json
    import shutil
    import subprocess

    with built([(example("xdp_counter"), 10, PASS), (example("xdp_globals"), 20, PASS)],
               bpffs_dir) as b:
        info = bpf.prog_info(b.prog.fd)
        with bpf.map_get_fd_by_id(info.map_ids[0]) as fd:
            mi = bpf.map_info(fd.fd)
            assert (mi.name, mi.key_size, mi.max_entries) == ("chain.rodata", 4, 1)
            assert mi.map_flags & 0x80                           # BPF_F_RDONLY_PROG
            with pytest.raises(KernelError):
                bpf.map_update(fd.fd, b"\0\0\0\0", bytes(mi.value_size))   # frozen
        if shutil.which("bpftool") is None:
            return
        out = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(info.id)],
                             capture_output=True, text=True, check=True).stdout
        meta = json.loads(out).get("metadata", {})
        assert json.loads(meta["xdp_chain"]) == b.description.to_json()


def test_unpinned_counters_carried_over_by_id(bpffs_dir: str) -> None:
    rows = [(example("xdp_counter"), 10, PASS)]
    with built(rows, bpffs_dir) as b1:
        for _ in range(3):
            _verdict(b1, packets.udp_packet())
        old = b1.description
        comps = build.components_from_description(old)
        comps.append(link_comp(example("xdp_pass"), 20, PASS))
        with build.build(combine.sort_components(comps), pin_root=bpffs_dir, old=old) as b2:
            assert b2.carried == {"xdp_counter": ["counters"]}
            assert _counter_packets(b2) == 3
            _verdict(b2, packets.udp_packet())
            assert _counter_packets(b1) == 4          # the very same map


@pytest.mark.parametrize("inline", [True, False], ids=["inlined", "called"])
def test_real_packets_over_veth(inline: bool, bpffs_dir: str,
                                netns_veth: nettools.VethNs) -> None:
    """Pings into the netns through a linked chain on the peer: counted, then dropped or
    passed according to drop_icmp's chain actions."""
    v = netns_veth
    for acts, reachable in ((PASS, False), (PASS | DROP, True)):
        with built([(example("xdp_counter"), 10, PASS), (example("xdp_drop_icmp"), 20, acts)],
                   bpffs_dir, inline=inline) as b:
            assert [s.inlined for s in b.combined.slots] == [inline, inline]
            netlink.attach_xdp(v.peer_ifindex, b.prog.fd, netlink.MODES["skb"], no_exist=True,
                               netns=v.netns)
            try:
                ok = nettools.ping(v.peer_ip, count=3, timeout=1)
                counted = _counter_packets(b)
            finally:
                netlink.detach_xdp(v.peer_ifindex, netlink.MODES["skb"], netns=v.netns)
        assert ok == reachable
        assert counted >= 3


def test_chain_without_btf_loads_and_matches(bpffs_dir: str) -> None:
    """A component without BTF: the chain is linked without program BTF ("none") and still
    behaves exactly like its components run by hand."""
    from dispatcher.record import replace

    rows = TABLE["examples-3"]
    comps = [link_comp(*r) for r in rows]
    comps[1] = replace(comps[1], obj=replace(comps[1].obj, btf=None, btf_ext=None))
    with build.build(combine.sort_components(comps), pin_root=bpffs_dir) as b:
        assert b.combined.btf_mode == "none" and bpf.prog_info(b.prog.fd).btf_id == 0
        assert observe.read_description(b.prog.fd) == b.description
        seen = chain_oracle.compare(b.prog.fd, slots_of(b))
    assert {v for _n, v, _c in seen} >= {1, 2}      # DROP (icmp) and PASS


@pytest.mark.parametrize("stats", [False, True], ids=["stats-off", "stats-on"])
def test_large_stacks_mix_inlined_and_called(stats: bool, bpffs_dir: str) -> None:
    """bigstack's 400-byte entry frame inlined into main would leave deepstack's 400-byte
    subprogram over the 512-byte limit: bigstack stays a call (the reason is in the
    description), the others are inlined, and the kernel takes the mixed chain, which
    matches its components run by hand. Alone with a small component, bigstack is
    inlined and its frame shares main's with the others'."""
    rows = [(example("xdp_bigstack"), 10, PASS), (example("xdp_deepstack"), 20, PASS),
            (example("xdp_counter"), 30, PASS)]
    with built(rows, bpffs_dir, stats) as b:
        assert [s.inlined for s in b.combined.slots] == [False, True, True]
        desc = observe.read_description(b.prog.fd)
        assert desc is not None and [s.inlined for s in desc.slots] == [False, True, True]
        assert "512" in desc.slots[0].not_inlined and desc.slots[1].not_inlined == ""
        seen = chain_oracle.compare(b.prog.fd, slots_of(b))
        assert {v for _n, v, _c in seen} >= {1, 2}
    with built([rows[0], rows[2], (example("xdp_bigstack"), 40, PASS)], bpffs_dir,
               stats) as b:
        assert all(s.inlined for s in b.combined.slots)
        chain_oracle.compare(b.prog.fd, slots_of(b))


def test_kernel_refusing_the_inlined_chain_falls_back_to_calls(
        bpffs_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the up-front stack plan wrong (forced here to inline everything), the kernel
    refuses the inlined chain; the chain is then built with calls, and each slot says
    what the verifier said."""
    monkeypatch.setattr(combine, "inline_plan",
                        lambda checks, stats, inline=True: ("",) * len(checks))
    rows = [(example("xdp_bigstack"), 10, PASS), (example("xdp_deepstack"), 20, PASS),
            (example("xdp_counter"), 30, PASS)]
    with built(rows, bpffs_dir) as b:
        assert not any(s.inlined for s in b.combined.slots)
        why = b.description.slots[0].not_inlined
        assert why.startswith("the kernel refused the inlined chain (combined stack size"), why
        chain_oracle.compare(b.prog.fd, slots_of(b))
