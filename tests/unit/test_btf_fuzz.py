"""Fuzzing Btf.parse / BtfExt.parse with mutated real blobs.

Property: malformed input raises BtfFormatError and nothing else, and whatever parses
can be used (encode, format_type, resolve_size, fixup_datasecs, ...) without any other
exception. Seeds: the .BTF/.BTF.ext sections of the xdp-tools objects installed on the
host and of bpf/examples/*.o, plus a hand-built BTF holding every kind.

The default run is short (a few thousand examples in total). For a longer fuzz run:

    XDP_DISPATCH_FUZZ_EXAMPLES=50000 /opt/xdp-dispatch-dev/bin/python -m pytest \
        tests/unit/test_btf_fuzz.py

(the variable is the number of examples per test). No example database is written.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.obj.btf import (
    Btf,
    BtfArray,
    BtfEnumValue,
    BtfFormatError,
    BtfKind,
    BtfMember,
    BtfParam,
    BtfType,
    BtfVarSecinfo,
)
from dispatcher.obj.btf_ext import BtfExt, encode_core_relos, encode_func_info, encode_line_info

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("XDP_DISPATCH_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _all_kinds_blob() -> bytes:
    strs = b"\0int\0e\0A\0B\0s\0m\0f\0p\0v\0.data\0t\0"

    def off(s: str) -> int:
        return strs.index(b"\0" + s.encode() + b"\0") + 1

    return Btf.from_parts([
        BtfType(BtfKind.INT, name_off=off("int"), size_or_type=4, int_encoding=(1 << 24) | 32),
        BtfType(BtfKind.ENUM64, name_off=off("e"), size_or_type=8, kflag=True,
                enum_values=(BtfEnumValue("", off("A"), -5), BtfEnumValue("", off("B"), 1 << 40))),
        BtfType(BtfKind.ENUM, size_or_type=4, kflag=True,
                enum_values=(BtfEnumValue("", off("A"), -2),)),
        BtfType(BtfKind.FWD, name_off=off("s"), kflag=True),
        BtfType(BtfKind.STRUCT, name_off=off("s"), size_or_type=8, kflag=True,
                members=(BtfMember("", off("m"), 1, (3 << 24) | 5),)),
        BtfType(BtfKind.FUNC_PROTO, size_or_type=1,
                params=(BtfParam("", off("p"), 1), BtfParam("", 0, 0))),
        BtfType(BtfKind.FUNC, name_off=off("f"), size_or_type=6, linkage=1),
        BtfType(BtfKind.VAR, name_off=off("v"), size_or_type=13, linkage=1),
        BtfType(BtfKind.DATASEC, name_off=off(".data"), size_or_type=0,
                secinfos=(BtfVarSecinfo(8, 0, 12),)),
        BtfType(BtfKind.DECL_TAG, name_off=off("t"), size_or_type=8, component_idx=-1),
        BtfType(BtfKind.TYPE_TAG, name_off=off("t"), size_or_type=1),
        BtfType(BtfKind.FLOAT, name_off=off("f"), size_or_type=8),
        BtfType(BtfKind.ARRAY, array=BtfArray(16, 1, 3)),
        BtfType(BtfKind.UNION, name_off=off("s"), size_or_type=4,
                members=(BtfMember("", off("m"), 1, 0),)),
        BtfType(BtfKind.PTR, size_or_type=0),
        BtfType(BtfKind.CONST, size_or_type=17),
        BtfType(BtfKind.VOLATILE, size_or_type=11),
        BtfType(BtfKind.RESTRICT, size_or_type=15),
        BtfType(BtfKind.TYPEDEF, name_off=off("B"), size_or_type=18),
    ], strs).encode()


def _seeds() -> list[tuple[bytes, bytes | None]]:
    paths = sorted(Path("/usr/lib/x86_64-linux-gnu/bpf").glob("*.o"))
    paths += sorted((ROOT / "bpf" / "examples").glob("*.o"))
    seeds: list[tuple[bytes, bytes | None]] = []
    seen: set[bytes] = set()
    for p in paths:
        with p.open("rb") as fh:
            elf = ELFFile(fh)
            btf = elf.get_section_by_name(".BTF")
            ext = elf.get_section_by_name(".BTF.ext")
            if btf is None or btf.data() in seen:
                continue
            seen.add(btf.data())
            seeds.append((btf.data(), ext.data() if ext is not None else None))
    seeds.sort(key=lambda s: len(s[0]))
    return seeds[:6] + [(_all_kinds_blob(), None)]


SEEDS = _seeds()
BTF_BLOBS = [b for b, _ in SEEDS]
EXT_SEEDS = [(Btf.parse(b), e) for b, e in SEEDS if e is not None]

INTERESTING_U32 = [0, 1, 2, 3, 4, 7, 8, 12, 16, 19, 20, 24, 32, 0x7F, 0x80, 0xFF, 0x100,
                   0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF,
                   0x0D000002, 0x13000001, 0x84000001, 0x0F000003, 0x01000000]


@st.composite
def mutated(draw: st.DrawFn, blobs: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(blobs)))
    mode = draw(st.sampled_from(["truncate", "bitflip", "bytes", "word", "header", "splice"]))
    n = len(data)
    if mode == "truncate":
        cut = draw(st.integers(0, n))
        return bytes(data[:cut])
    if mode == "bitflip":
        for _ in range(draw(st.integers(1, 8))):
            bit = draw(st.integers(0, n * 8 - 1))
            data[bit // 8] ^= 1 << (bit % 8)
    elif mode == "bytes":
        for _ in range(draw(st.integers(1, 16))):
            data[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
    elif mode == "word":  # aligned u32 rewrites hit ids, vlen/kind words, offsets, counts
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, n // 4 - 1)) * 4
            val = draw(st.one_of(st.sampled_from(INTERESTING_U32), st.integers(0, 0xFFFFFFFF)))
            struct.pack_into("<I", data, pos, val)
    elif mode == "header":
        pos = draw(st.sampled_from([2, 3, 4, 8, 12, 16, 20, 24, 28]))
        if pos + 4 <= n:
            val = draw(st.one_of(st.sampled_from(INTERESTING_U32 + [n, n - 1, n + 1]),
                                 st.integers(0, 0xFFFFFFFF)))
            size = 1 if pos in (2, 3) else 4
            data[pos:pos + size] = (val & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    else:  # splice: duplicate or drop a chunk
        a = draw(st.integers(0, n))
        b = draw(st.integers(a, min(n, a + 64)))
        if draw(st.booleans()):
            data[a:a] = data[a:b]
        else:
            del data[a:b]
    return bytes(data)


def exercise_btf(btf: Btf) -> None:
    """Use everything on a parsed BTF; only BtfFormatError may come out."""
    enc = btf.encode()
    assert Btf.parse(enc) == btf
    btf.dump()
    sizes: dict[str, int] = {}
    glob: dict[str, tuple[int, bool]] = {}
    for tid, t in enumerate(btf.types):
        btf.format_type(tid)
        for fn in (btf.resolve_size, btf.skip_mods_and_typedefs):
            try:
                fn(tid)
            except BtfFormatError:
                pass
        if t.kind == BtfKind.DATASEC:
            sizes[t.name] = tid * 8
        if t.kind == BtfKind.VAR:
            glob[t.name] = (tid * 4, tid % 2 == 0)
        if t.kind == BtfKind.FUNC:
            assert btf.with_func_linkage(tid, 0).types[tid].linkage == 0
        btf.find(t.name, t.kind)
    try:
        fixed = btf.fixup_datasecs(sizes, glob)
        assert len(fixed.encode()) == len(enc)
    except BtfFormatError:
        pass
    merged, base, _ = btf.append(btf)
    assert len(merged.types) == 2 * len(btf.types) - 1 and base == len(btf.types) - 1


@FUZZ
@given(mutated(BTF_BLOBS))
def test_btf_parse_fuzz(data: bytes) -> None:
    try:
        btf = Btf.parse(data)
    except BtfFormatError:
        return
    exercise_btf(btf)


@FUZZ
@given(st.binary(max_size=200))
def test_btf_parse_random_bytes(data: bytes) -> None:
    # random tails behind a valid-looking header reach the type decoder
    for blob in (data, struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(data), len(data), 0)
                 + data + b"\0\0"):
        try:
            btf = Btf.parse(blob)
        except BtfFormatError:
            continue
        exercise_btf(btf)


@pytest.mark.skipif(not EXT_SEEDS, reason="no object with .BTF.ext installed to take seeds from")
@FUZZ
@given(st.data())
def test_btf_ext_parse_fuzz(data: st.DataObject) -> None:
    btf, ext_blob = data.draw(st.sampled_from(EXT_SEEDS))
    assert ext_blob is not None
    blob = data.draw(mutated([ext_blob]))
    try:
        ext = BtfExt.parse(blob, btf)
    except BtfFormatError:
        return
    repr(ext)
    ext.sections()
    for sec, recs in ext.func_info.items():
        assert isinstance(sec, str)
        encode_func_info((r.insn_off // 8, r.type_id) for r in recs)
        for r in recs:
            btf.format_type(r.type_id)
    for lrecs in ext.line_info.values():
        encode_line_info(lrecs)
        for lr in lrecs:
            btf.string_at(lr.file_name_off)
            btf.string_at(lr.line_off)
    for crecs in ext.core_relos.values():
        try:
            encode_core_relos(crecs)
        except BtfFormatError:
            pass
        for cr in crecs:
            btf.string_at(cr.access_str_off)
            btf.format_type(cr.type_id)


@FUZZ
@given(st.data())
def test_btf_ext_with_mutated_btf(data: st.DataObject) -> None:
    """A broken-but-parsable .BTF under an intact .BTF.ext."""
    if not EXT_SEEDS:
        pytest.skip("no object with .BTF.ext installed to take seeds from")
    idx = data.draw(st.integers(0, len(EXT_SEEDS) - 1))
    btf0, ext_blob = EXT_SEEDS[idx]
    assert ext_blob is not None
    try:
        btf = Btf.parse(data.draw(mutated([btf0.encode()])))
    except BtfFormatError:
        return
    try:
        BtfExt.parse(ext_blob, btf)
    except BtfFormatError:
        pass
