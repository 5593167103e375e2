"""Global-variable overrides: lookup in BTF DATASECs, type checks, encoding (pure)."""

from __future__ import annotations

import struct

import pytest

from dispatcher.obj.elf import read_object
from dispatcher.obj.variables import (
    OverrideError,
    check_override,
    override_data,
    type_name,
    variables,
    with_overrides,
)
from tests.objects import example

SETTINGS = read_object(example("xdp_settings.o"))
GLOBALS = read_object(example("xdp_globals.o"))


def test_variables_and_their_types() -> None:
    vs = variables(SETTINGS)
    assert SETTINGS.btf is not None
    got = {n: (v.section, v.size, type_name(SETTINGS.btf, v.type_id), v.volatile)
           for n, v in vs.items()}
    assert got == {
        "enabled": (".rodata", 1, "_Bool", True),
        "ports": (".rodata", 8, "__u16[4]", True),
        "min_payload": (".rodata", 4, "__s32", True),
        "prefix": (".rodata", 8, "char[8]", True),
        "verdict": (".rodata", 4, "enum xdp_action", True),
        "matched": (".bss", 8, "__u64", False),
    }
    assert {n: v.section for n, v in variables(GLOBALS).items()} == {
        "drop_port": ".rodata", "match_verdict": ".data", "seen_packets": ".bss",
        "matched_packets": ".bss"}


@pytest.mark.parametrize(("name", "value", "raw"), [
    ("enabled", False, b"\0"),
    ("enabled", True, b"\1"),
    ("ports", [53, 5353, 0, 65535], struct.pack("<4H", 53, 5353, 0, 65535)),
    ("min_payload", -1, struct.pack("<i", -1)),
    ("min_payload", 2**31 - 1, struct.pack("<i", 2**31 - 1)),
    ("prefix", "dns", b"dns\0\0\0\0\0"),
    ("prefix", "12345678", b"12345678"),
    ("prefix", [65, 66, 0, 0, 0, 0, 0, 0], b"AB\0\0\0\0\0\0"),
    ("verdict", "XDP_TX", struct.pack("<I", 3)),
    ("verdict", 1, struct.pack("<I", 1)),
    ("matched", 2**64 - 1, b"\xff" * 8),
])
def test_encode(name: str, value: object, raw: bytes) -> None:
    var, data = check_override(SETTINGS, name, value)
    assert data == raw and len(data) == var.size


@pytest.mark.parametrize(("name", "value", "msg"), [
    ("enabled", 1, "expected true or false (_Bool), got 1"),
    ("ports", [53], "expected a list of 4 integers (__u16[4]), got 1: [53]"),
    ("ports", "53", 'expected a list of 4 integers (__u16[4]), got "53"'),
    ("ports", [53, -1, 0, 0], "[1]: expected an integer 0..65535 (__u16), got -1"),
    ("min_payload", 2**31, "expected an integer -2147483648..2147483647 (__s32), got 2147483648"),
    ("min_payload", True, "expected an integer -2147483648..2147483647 (__s32), got true"),
    ("prefix", "123456789", 'expected a string of at most 8 bytes (char[8]), got 9 bytes: '
                            '"123456789"'),
    ("verdict", "XDP_NOPE", "expected an enumerator of enum xdp_action (XDP_ABORTED, XDP_DROP, "
                            'XDP_PASS, XDP_TX, XDP_REDIRECT) or an integer, got "XDP_NOPE"'),
    ("matched", -1, "expected an integer 0..18446744073709551615 (__u64), got -1"),
    ("nope", 1, 'no global variable "nope" in the object (variables: enabled, matched, '
                "min_payload, ports, prefix, verdict)"),
])
def test_refused(name: str, value: object, msg: str) -> None:
    with pytest.raises(OverrideError) as e:
        check_override(SETTINGS, name, value)
    assert str(e.value) == msg


def test_override_bytes_land_at_the_variable_offsets() -> None:
    ro = SETTINGS.map_by_name(".rodata")
    assert ro is not None and ro.data is not None and ro.freeze
    data = override_data(SETTINGS, {"ports": [1, 2, 3, 4], "verdict": "XDP_PASS"})
    assert set(data) == {".rodata"}
    new = data[".rodata"]
    v = variables(SETTINGS)
    assert new[v["ports"].offset:v["ports"].offset + 8] == struct.pack("<4H", 1, 2, 3, 4)
    assert new[v["verdict"].offset:v["verdict"].offset + 4] == struct.pack("<I", 2)
    # every other byte is the object's own initial value
    changed = {*range(v["ports"].offset, v["ports"].offset + 8),
               *range(v["verdict"].offset, v["verdict"].offset + 4)}
    assert all(new[i] == ro.data[i] for i in range(len(new)) if i not in changed)


def test_with_overrides_touches_only_named_sections() -> None:
    obj = with_overrides(GLOBALS, {"drop_port": 53, "match_verdict": 2})
    by = {m.name: m for m in obj.maps}
    assert by[".rodata"].data == struct.pack("<H", 53)
    assert by[".data"].data == struct.pack("<I", 2)
    assert by[".bss"].data == GLOBALS.map_by_name(".bss").data  # type: ignore[union-attr]
    assert with_overrides(GLOBALS, {}) is GLOBALS
    assert GLOBALS.map_by_name(".rodata").data == struct.pack("<H", 9)  # type: ignore[union-attr]


def test_const_without_volatile_is_refused() -> None:
    from dispatcher.obj.btf import BtfKind
    from dispatcher.record import replace

    btf = GLOBALS.btf
    assert btf is not None
    # drop_port is `const volatile __u16`: strip the VOLATILE to model a plain `const`.
    var = variables(GLOBALS)["drop_port"]
    const = btf.type_by_id(var.type_id)
    vol = btf.type_by_id(const.type_id)
    assert (const.kind, vol.kind) == (BtfKind.CONST, BtfKind.VOLATILE)
    btf2 = btf.with_type(var.type_id, replace(const, size_or_type=vol.type_id))
    obj = replace(GLOBALS, btf=btf2)
    with pytest.raises(OverrideError, match="const but not volatile"):
        check_override(obj, "drop_port", 53)
