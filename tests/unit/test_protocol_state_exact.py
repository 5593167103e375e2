"""Dispatcher config layouts, libxdp's sort order and the state read from them, checked
value by value (the mutation run found whole functions whose result no test looked at:
sort_key, recognise's reasons, the status JSON's fields)."""

from __future__ import annotations

import struct

import pytest

from dispatcher.chain import protocol
from dispatcher.chain.description import ChainDescription, SlotDescription
from dispatcher.chain.protocol import SortKey, decode_config, encode_config, sort_key
from dispatcher.chain.state import (
    Component,
    DispatcherInfo,
    InterfaceState,
    MapFacts,
    ProgFacts,
    Recognition,
    components_from_config,
    components_from_description,
    recognise,
)
from dispatcher.record import replace
from dispatcher.uapi import BPF_F_RDONLY_PROG, BPF_F_XDP_HAS_FRAGS

RET = 1 << protocol.RETVAL


# ------------------------------------------------------------------ layouts

def test_v2_bytes_field_by_field() -> None:
    raw = encode_config(2, [10, 20], [4, 6], [BPF_F_XDP_HAS_FRAGS, 0], True)
    assert len(raw) == protocol.V2_SIZE == 124
    assert raw[:4] == bytes([236, 2, 2, 1])
    assert struct.unpack_from("<10I", raw, 4) == (4 | RET, 6 | RET) + (0,) * 8
    assert struct.unpack_from("<10I", raw, 44) == (10, 20) + (0,) * 8
    assert struct.unpack_from("<10I", raw, 84) == (BPF_F_XDP_HAS_FRAGS, 0) + (0,) * 8
    assert encode_config(2, [], [], [], False)[:4] == bytes([236, 2, 0, 0])
    v3 = encode_config(3, [1], [4], [0], False)
    assert len(v3) == protocol.V3_SIZE == 128 and v3[124:] == bytes(4) and v3[1] == 3
    c = decode_config(raw)
    assert c == protocol.DispatcherConfig(2, 2, (4 | RET, 6 | RET) + (0,) * 8,
                                          (10, 20) + (0,) * 8, (BPF_F_XDP_HAS_FRAGS,) + (0,) * 9,
                                          True, 236, False, value_size=124)
    assert c.slot_actions(0) == ("XDP_PASS",) and c.slot_actions(1) == ("XDP_DROP", "XDP_PASS")
    longer = decode_config(raw + b"junk")                  # longer values are read (libxdp
    assert longer == replace(c, value_size=128)            # 1.3-1.5 read only 124: versions.py)


def test_full_ten_slots_and_the_eleventh() -> None:
    raw = encode_config(2, list(range(10)), [4] * 10, [0] * 10, False)
    assert decode_config(raw).num_progs_enabled == 10
    with pytest.raises(ValueError, match="^11 programs, at most 10 fit in a dispatcher$"):
        encode_config(2, list(range(11)), [4] * 11, [0] * 11, False)
    bad = bytearray(raw)
    bad[2] = 11
    with pytest.raises(ValueError,
                       match=r"^dispatcher config claims 11 programs \(at most 10\)$"):
        decode_config(bytes(bad))


def test_v3_devbound_is_byte_124() -> None:
    raw = bytearray(encode_config(3, [5], [4], [0], False))
    assert decode_config(bytes(raw)).is_xdp_devbound is False
    raw[124] = 1
    c = decode_config(bytes(raw))
    assert c.is_xdp_devbound is True and c.version == 3
    raw[124], raw[123] = 0, 1                     # the byte before is program_flags[9]
    assert decode_config(bytes(raw)).is_xdp_devbound is False
    v2 = bytearray(encode_config(2, [5], [4], [0], False)) + b"\x01" * 4
    assert decode_config(bytes(v2)).is_xdp_devbound is False   # only v3 has the field


def test_v1_layout_and_version_sources() -> None:
    v1 = bytes([3, 0, 0, 0]) + struct.pack("<10I", *([4 | RET] * 3 + [0] * 7)) + \
        struct.pack("<10I", *([7, 8, 9] + [0] * 7))
    assert len(v1) == protocol.V1_SIZE
    c = decode_config(v1, btf_version=1)
    assert (c.version, c.num_progs_enabled, c.run_prios[:3], c.magic, c.is_xdp_frags) == \
        (1, 3, (7, 8, 9), 0, False)
    assert c.chain_call_actions[:3] == (4 | RET,) * 3 and c.program_flags == (0,) * 10
    with pytest.raises(ValueError, match="^v1 dispatcher config is 83 bytes, expected 84$"):
        decode_config(v1[:83], btf_version=1)
    with pytest.raises(ValueError, match="^v2 dispatcher config is 123 bytes, expected 124$"):
        decode_config(encode_config(2, [1], [4], [0], False)[:123])
    with pytest.raises(ValueError, match="^v3 dispatcher config is 127 bytes, expected exactly 128$"):
        decode_config(encode_config(3, [1], [4], [0], False)[:127])
    with pytest.raises(ValueError, match=r"^no dispatcher version \(neither magic byte nor BTF "
                                         r"marker\)$"):
        decode_config(v1)
    with pytest.raises(ValueError, match=r"^dispatcher version 4 is not supported \(this tool "
                                         r"reads 1, 2 and 3\)$"):
        decode_config(bytes([236, 4]) + bytes(126))
    # the magic byte wins over the BTF marker; a 1-byte value has no version byte
    assert decode_config(encode_config(2, [1], [4], [0], False), btf_version=1).version == 2
    with pytest.raises(ValueError, match="^v1 dispatcher config is 1 bytes"):
        decode_config(bytes([236]), btf_version=1)


def test_pin_dir_and_its_name() -> None:
    assert protocol.pin_dir("/sys/fs/bpf/", 3, 42) == "/sys/fs/bpf/xdp/dispatch-3-42"
    assert protocol.pin_dir("/b", 3, 42) == "/b/xdp/dispatch-3-42"
    assert protocol.parse_pin_dir_name("dispatch-3-42") == (3, 42)
    for bad in ("dispatch-3", "dispatch-3-x", "dispatch-3-4-5", "dispatcher-3-4", "x-3-4"):
        assert protocol.parse_pin_dir_name(bad) is None


# ------------------------------------------------------------------ libxdp's order

def test_sort_key_each_tie_break_in_turn() -> None:
    k = SortKey(10, "b", True, 5, b"\x02" * 8, 7)
    assert sort_key(k) == (10, b"b", 0, 0, b"\x02" * 8, 7)
    assert sort_key(SortKey(10, "b", False, 5)) == (10, b"b", 1, 5, b"\0" * 8, 0)
    ordered = [
        SortKey(5, "z", False, 99),                       # 1. priority
        SortKey(10, "B", False, 1),                       # 2. name, bytewise ("B" < "a")
        SortKey(10, "a", True, 50, b"\x09" * 8, 1),       # 3. loaded before new
        SortKey(10, "a", True, 1, b"\x09" * 8, 2),        # 6. load time (insns ignored: loaded)
        SortKey(10, "a", False, 3),                       # 4. new: fewer instructions first
        SortKey(10, "a", False, 4, b"\x01" * 8),          # 5. tag
        SortKey(10, "a", False, 4, b"\x02" * 8),
    ]
    assert sorted(reversed(ordered), key=sort_key) == ordered


def test_expand_name() -> None:
    long = "xdp_prog_with_a"                               # 15 chars: possibly truncated
    assert protocol.expand_name("short", ["short_and_more"]) == "short"
    assert protocol.expand_name(long, [long + "_long_name"]) == long + "_long_name"
    assert protocol.expand_name(long, [long, long + "x"]) == long
    assert protocol.expand_name(long, [long + "x", long + "y"]) == long
    assert protocol.expand_name(long, []) == long


# ------------------------------------------------------------------ recognition

PROG = ProgFacts(9, "xdp_dispatcher", "xdp_dispatcher", "aa" * 8, 5, (3,))


def _map(value: bytes | None, **kw: int) -> MapFacts:
    d = {"key_size": 4, "value_size": len(value or b"") or 124, "max_entries": 1,
         "map_flags": BPF_F_RDONLY_PROG, **kw}
    return MapFacts(3, d["key_size"], d["value_size"], d["max_entries"], d["map_flags"], value)


GOOD = encode_config(2, [10], [4], [0], False)


@pytest.mark.parametrize("prog,cfg,btf,want", [
    (ProgFacts(9, "xdp_dispatcher", "xdp_dispatcher", "", 0, (3,)), _map(GOOD), 0,
     Recognition(False, reason="program has no BTF")),
    (ProgFacts(9, "xdp_other", "xdp_other", "", 5, (3,)), _map(GOOD), 0,
     Recognition(False, reason="not named xdp_dispatcher")),
    (ProgFacts(9, "xdp_dispatcher", "xdp_dispatcher", "", 5, (3, 4)), _map(GOOD), 0,
     Recognition(False, reason="references 2 maps, not 1")),
    (ProgFacts(9, "xdp_dispatcher", "xdp_dispatcher", "", 5, ()), None, 0,
     Recognition(False, reason="references 0 maps, not 1")),
    (PROG, None, 0, Recognition(False, reason="references 1 maps, not 1")),
    (PROG, _map(GOOD, key_size=8), 0,
     Recognition(False, reason="config map has the wrong shape", hard_error=True)),
    (PROG, _map(GOOD, value_size=1), 0,
     Recognition(False, reason="config map has the wrong shape", hard_error=True)),
    (PROG, _map(GOOD, max_entries=2), 0,
     Recognition(False, reason="config map has the wrong shape", hard_error=True)),
    (PROG, _map(GOOD, map_flags=0), 0,
     Recognition(False, reason="config map has the wrong shape", hard_error=True)),
    (PROG, _map(None), 0,
     Recognition(False, reason="config map cannot be read", hard_error=True)),
    (PROG, _map(bytes(84)), 0, Recognition(False, reason="no dispatcher version marker")),
    (PROG, _map(bytes([236, 9]) + bytes(122)), 0,
     Recognition(False, reason="dispatcher version 9 is not supported (this tool reads 1, 2 "
                               "and 3)", hard_error=True)),
    (PROG, _map(bytes(40)), 1,
     Recognition(False, reason="v1 dispatcher config is 40 bytes, expected 84",
                 hard_error=True)),
    (PROG, _map(GOOD, value_size=2), 0, Recognition(True, 2, decode_config(GOOD))),
    (PROG, _map(GOOD), 0, Recognition(True, 2, decode_config(GOOD))),
])
def test_recognise(prog: ProgFacts, cfg: MapFacts | None, btf: int, want: Recognition) -> None:
    assert recognise(prog, cfg, btf) == want


# ------------------------------------------------------------------ components and JSON

def test_components_from_config_slot_by_slot() -> None:
    cfg = decode_config(encode_config(2, [10, 20, 30], [4, 6 | (1 << 30), 0],
                                      [BPF_F_XDP_HAS_FRAGS, 0, BPF_F_XDP_HAS_FRAGS], True))
    p0 = ProgFacts(11, "a", "a_full", "11" * 8, 1, (), load_time=100, xlated_insns=7)
    p2 = ProgFacts(13, "c", "c", "33" * 8, 1, (), load_time=300, xlated_insns=9)
    comps, problems = components_from_config(cfg, [p0, None, p2])
    assert comps == (
        Component(0, "a_full", 11, "11" * 8, 10, ("XDP_PASS",), True, 100, 7),
        Component(2, "c", 13, "33" * 8, 30, (), True, 300, 9))
    assert problems == ("slot 1: pinned program missing (prog1-prog)",)
    comps, problems = components_from_config(cfg, [p0])          # fewer pins than slots
    assert [c.slot for c in comps] == [0] and problems == (
        "slot 1: pinned program missing (prog1-prog)", "slot 2: pinned program missing (prog2-prog)")
    # per-slot frags, not the dispatcher-wide flag
    cfg = decode_config(encode_config(2, [1, 2], [4, 4], [0, BPF_F_XDP_HAS_FRAGS], True))
    comps, _ = components_from_config(cfg, [p0, p2])
    assert [c.frags for c in comps] == [False, True]


def test_components_from_description_and_status_json() -> None:
    desc = ChainDescription("t", "hybrid", False, (
        SlotDescription("x", 10, ("XDP_PASS",), True, "/o/x.o", "ab", "f", "xdp", (),
                        source="/c.yaml"),
        SlotDescription("y", 20, (), False, "/o/y.o", "cd", "g", "xdp", ())))
    comps = components_from_description(desc)
    assert comps == (Component(0, "x", 0, "", 10, ("XDP_PASS",), True, object_path="/o/x.o", maps=(),
                               source="/c.yaml"),
                     Component(1, "y", 0, "", 20, (), False, object_path="/o/y.o", maps=()))
    assert comps[0].to_json() == {"slot": 0, "name": "x", "id": None, "tag": None,
                                  "priority": 10, "chain_call_actions": ["XDP_PASS"],
                                  "frags": True, "object": "/o/x.o", "maps": {}}
    c = Component(3, "n", 5, "ee" * 8, 7, ("XDP_DROP",), False)
    assert c.to_json() == {"slot": 3, "name": "n", "id": 5, "tag": "ee" * 8, "priority": 7,
                           "chain_call_actions": ["XDP_DROP"], "frags": False}
    main = ProgFacts(8, "xdp_pass", "xdp_pass_full", "ff" * 8, 1, ())
    legacy = InterfaceState("eth3", 4, "native", "legacy", main=main, problems=("p",),
                            error="e")
    assert legacy.to_json() == {
        "name": "eth3", "ifindex": 4, "mode": "native", "kind": "legacy", "dispatcher": None,
        "programs": [], "main": {"id": 8, "name": "xdp_pass_full", "tag": "ff" * 8},
        "problems": ["p"], "error": "e", "dispatcher_version": None, "libxdp": None}
    disp = InterfaceState("eth3", 4, "skb", "dispatcher", main=main,
                          dispatcher=DispatcherInfo(8, 2, True), programs=(c,))
    assert disp.to_json() == {
        "name": "eth3", "ifindex": 4, "mode": "skb", "kind": "dispatcher",
        "dispatcher": {"id": 8, "version": 2, "frags": True},
        "programs": [c.to_json()], "main": None, "problems": [], "error": None,
        "dispatcher_version": None, "libxdp": None}
    assert InterfaceState("lo", 1, None, "none").to_json()["dispatcher"] is None
    assert DispatcherInfo(8, 1, False, name="xdp_chain", tag="ab").to_json() == {
        "id": 8, "version": 1, "frags": False, "name": "xdp_chain", "tag": "ab"}


def test_two_byte_value_with_magic_reads_its_version_and_fields_are_unsigned() -> None:
    with pytest.raises(ValueError, match="^v2 dispatcher config is 2 bytes, expected 124$"):
        decode_config(bytes([236, 2]))
    big = 1 << 31
    c = decode_config(encode_config(2, [big], [4], [big], False))
    assert c.run_prios[0] == big and c.program_flags[0] == big
    v1 = bytes([1, 0, 0, 0]) + struct.pack("<10I", *([4] + [0] * 9)) + \
        struct.pack("<10I", *([big] + [0] * 9))
    assert decode_config(v1, btf_version=1).run_prios[0] == big
    assert protocol.pin_dir("/a/X", 1, 2) == "/a/X/xdp/dispatch-1-2"
