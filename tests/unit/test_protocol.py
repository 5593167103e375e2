"""Pure protocol facts: config layouts, recognition rules, sort order, pin names."""

from __future__ import annotations

import random
import struct

import pytest

from dispatcher.chain import protocol
from dispatcher.chain.state import MapFacts, ProgFacts, components_from_config, recognise


def test_v2_layout_is_124_bytes_and_exact() -> None:
    b = protocol.encode_config(2, [10, 20], [4, 6], [0, 0x20], frags=False)
    assert len(b) == 124
    assert b[:4] == bytes([236, 2, 2, 0])
    assert struct.unpack_from("<10I", b, 4)[:3] == (4 | 1 << 31, 6 | 1 << 31, 0)
    assert struct.unpack_from("<10I", b, 44)[:3] == (10, 20, 0)
    assert struct.unpack_from("<10I", b, 84)[:3] == (0, 0x20, 0)
    assert len(protocol.encode_config(3, [1], [4], [0], frags=True)) == 128


def test_decode_round_trip_and_versions() -> None:
    b = protocol.encode_config(2, [5, 7, 9], [4, 2, 6], [0, 0, 0x20], frags=True)
    c = protocol.decode_config(b)
    assert (c.version, c.num_progs_enabled, c.is_xdp_frags) == (2, 3, True)
    assert c.run_prios[:3] == (5, 7, 9)
    assert c.slot_actions(2) == ("XDP_DROP", "XDP_PASS")
    v1 = struct.pack("<B3x10I10I", 1, 4 | 1 << 31, *([0] * 9), 42, *([0] * 9))
    c1 = protocol.decode_config(v1, btf_version=1)
    assert (c1.version, c1.num_progs_enabled, c1.run_prios[0]) == (1, 1, 42)
    with pytest.raises(ValueError, match="no dispatcher version"):
        protocol.decode_config(v1)
    with pytest.raises(ValueError, match="version 4"):
        protocol.decode_config(bytes([236, 4]) + bytes(126))
    with pytest.raises(ValueError, match="expected 124"):
        protocol.decode_config(bytes([236, 2]) + bytes(80))


def test_too_many_slots() -> None:
    with pytest.raises(ValueError, match="at most 10"):
        protocol.encode_config(2, [1] * 11, [4] * 11, [0] * 11, frags=False)


def _prog(**kw: object) -> ProgFacts:
    base = dict(id=7, name="xdp_dispatcher", full_name="xdp_dispatcher", tag="00" * 8, btf_id=3,
                map_ids=(9,))
    base.update(kw)
    return ProgFacts(**base)  # type: ignore[arg-type]


def _map(value: bytes | None, **kw: object) -> MapFacts:
    base = dict(id=9, key_size=4, value_size=124, max_entries=1, map_flags=0x80, value=value)
    base.update(kw)
    return MapFacts(**base)  # type: ignore[arg-type]


def test_recognition_rules() -> None:
    cfg = protocol.encode_config(2, [1], [4], [0], frags=False)
    assert recognise(_prog(), _map(cfg), 0).is_dispatcher
    assert not recognise(_prog(btf_id=0), _map(cfg), 0).is_dispatcher
    assert not recognise(_prog(name="xdp_dispatcher_"), _map(cfg), 0).is_dispatcher
    assert not recognise(_prog(map_ids=(1, 2)), None, 0).is_dispatcher
    bad = recognise(_prog(), _map(cfg, map_flags=0), 0)
    assert not bad.is_dispatcher and bad.hard_error
    v1 = struct.pack("<B3x10I10I", 1, *([0] * 20))
    assert not recognise(_prog(), _map(v1, value_size=84), 0).is_dispatcher   # no marker: legacy
    assert recognise(_prog(), _map(v1, value_size=84), 1).version == 1
    v3 = recognise(_prog(), _map(protocol.encode_config(3, [1], [4], [0], False), value_size=128), 0)
    assert v3.is_dispatcher and v3.version == 3


def test_components_from_config_reports_missing_pins() -> None:
    cfg = protocol.decode_config(protocol.encode_config(2, [10, 20], [4, 2], [0, 0], False))
    p = _prog(id=11, name="a", full_name="a")
    comps, problems = components_from_config(cfg, [p, None])
    assert [(c.slot, c.name, c.priority, c.chain_call_actions) for c in comps] == [(0, "a", 10, ("XDP_PASS",))]
    assert problems == ("slot 1: pinned program missing (prog1-prog)",)


def test_sort_order_matches_libxdp_rules() -> None:
    K = protocol.SortKey
    keys = [
        K(50, "b", False, 5), K(10, "z", False, 1), K(50, "a", False, 9),
        K(50, "b", True, 0, b"\x02" * 8), K(50, "b", True, 0, b"\x01" * 8),
        K(50, "b", False, 3), K(50, "B", False, 1),
    ]
    random.Random(1).shuffle(keys)
    got = sorted(keys, key=protocol.sort_key)
    assert [(k.priority, k.name, k.loaded, k.insn_count, k.tag[:1]) for k in got] == [
        (10, "z", False, 1, b"\0"),
        (50, "B", False, 1, b"\0"),      # strcmp: uppercase before lowercase
        (50, "a", False, 9, b"\0"),
        (50, "b", True, 0, b"\x01"),     # loaded before new; then by tag
        (50, "b", True, 0, b"\x02"),
        (50, "b", False, 3, b"\0"),      # both new: fewer instructions first
        (50, "b", False, 5, b"\0"),
    ]


def test_pin_names() -> None:
    assert protocol.pin_dir("/sys/fs/bpf", 3, 42) == "/sys/fs/bpf/xdp/dispatch-3-42"
    assert protocol.parse_pin_dir_name("dispatch-3-42") == (3, 42)
    assert protocol.parse_pin_dir_name("dispatch-x-1") is None
    assert protocol.parse_pin_dir_name("prog-test-link-1-5") is None


def test_name_expansion() -> None:
    assert protocol.expand_name("xdp_long_functi", ["xdp_long_function_name"]) == "xdp_long_function_name"
    assert protocol.expand_name("xdp_long_functi", ["xdp_long_function_a", "xdp_long_function_b"]) == "xdp_long_functi"
    assert protocol.expand_name("short", ["shortish"]) == "short"
