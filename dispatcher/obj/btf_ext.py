"""Decoder for ``.BTF.ext`` (func_info, line_info, CO-RE relocations) and encoders for
the record arrays BPF_PROG_LOAD takes.

In the file, every ``insn_off`` is in BYTES from the start of the ELF section named by
the block; the records are kept that way here. The kernel wants instruction indexes
relative to the final program for func_info/line_info (bytes for core_relos); the
linker converts before calling the ``encode_*`` helpers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import TypeVar

from dispatcher.obj.btf import BTF_MAGIC, Btf, BtfFormatError
from dispatcher.record import record

__all__ = [
    "CORE_RELO_REC_SIZE",
    "FUNC_INFO_REC_SIZE",
    "LINE_INFO_REC_SIZE",
    "BtfExt",
    "CoreReloKind",
    "CoreReloRec",
    "FuncInfoRec",
    "LineInfoRec",
    "encode_core_relos",
    "encode_func_info",
    "encode_line_info",
]

FUNC_INFO_REC_SIZE = 8
LINE_INFO_REC_SIZE = 16
CORE_RELO_REC_SIZE = 16

_HDR_BASE = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, func/line off+len
_HDR_CORE = struct.Struct("<II")  # core_relo_off, core_relo_len at byte 24
_HDR_BASE_LEN = 24
_HDR_CORE_LEN = 32
_U32 = struct.Struct("<I")
_II = struct.Struct("<II")
_IIII = struct.Struct("<IIII")


class CoreReloKind(IntEnum):
    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12


@record
class FuncInfoRec:
    insn_off: int
    type_id: int


@record
class LineInfoRec:
    insn_off: int
    file_name_off: int
    line_off: int
    line_col: int

    @property
    def line(self) -> int:
        return self.line_col >> 10

    @property
    def col(self) -> int:
        return self.line_col & 0x3FF


@record
class CoreReloRec:
    insn_off: int
    type_id: int
    access_str_off: int
    kind: int


_R = TypeVar("_R", FuncInfoRec, LineInfoRec, CoreReloRec)


def _parse_subsection(data: bytes, start: int, length: int, what: str, min_rec: int,
                      btf: Btf, make: type[_R]) -> tuple[dict[str, tuple[_R, ...]], int]:
    """Decode one ``{rec_size, {sec_name_off, num_info, records...}...}`` sub-section."""
    if length == 0:
        return {}, min_rec
    end = start + length
    if length < 4:
        raise BtfFormatError(f".BTF.ext {what}: section too short ({length} bytes)")
    (rec_size,) = _U32.unpack_from(data, start)
    if rec_size < min_rec or rec_size % 4:
        raise BtfFormatError(f".BTF.ext {what}: bad record size {rec_size} "
                             f"(at least {min_rec}, multiple of 4)")
    nfields = min_rec // 4
    fmt = struct.Struct(f"<{nfields}I{rec_size - min_rec}x")
    out: dict[str, list[_R]] = {}
    pos = start + 4
    while pos < end:
        if pos + 8 > end:
            raise BtfFormatError(f".BTF.ext {what}: truncated block header at {pos}")
        name_off, num = _II.unpack_from(data, pos)
        pos += 8
        if num == 0:
            raise BtfFormatError(f".BTF.ext {what}: block with zero records")
        sec_name = btf.string_at(name_off)
        if not sec_name:
            raise BtfFormatError(f".BTF.ext {what}: block without a section name")
        n = num * rec_size
        if pos + n > end:
            raise BtfFormatError(f".BTF.ext {what}: {num} records of section {sec_name} "
                                 "run past the end of the sub-section")
        recs = [make(*f) for f in fmt.iter_unpack(data[pos:pos + n])]
        pos += n
        out.setdefault(sec_name, []).extend(recs)
    return {k: tuple(v) for k, v in out.items()}, rec_size


@record
class BtfExt:
    """Decoded ``.BTF.ext``: records per ELF section name, ``insn_off`` in bytes."""

    func_info: Mapping[str, tuple[FuncInfoRec, ...]]
    line_info: Mapping[str, tuple[LineInfoRec, ...]]
    core_relos: Mapping[str, tuple[CoreReloRec, ...]]
    func_info_rec_size: int = FUNC_INFO_REC_SIZE
    line_info_rec_size: int = LINE_INFO_REC_SIZE
    core_relo_rec_size: int = CORE_RELO_REC_SIZE
    hdr_len: int = _HDR_CORE_LEN

    def __repr__(self) -> str:
        def count(m: Mapping[str, tuple[object, ...]]) -> int:
            return sum(len(v) for v in m.values())
        return (f"<BtfExt func_info={count(self.func_info)} line_info={count(self.line_info)} "
                f"core_relos={count(self.core_relos)}>")

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, btf: Btf) -> BtfExt:
        """Decode a ``.BTF.ext`` section; section names and strings resolve through ``btf``."""
        data = bytes(data)
        if len(data) < 8:
            raise BtfFormatError(f".BTF.ext too short for a header ({len(data)} bytes)")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic == 0x9FEB:
            raise BtfFormatError("big-endian .BTF.ext not supported")
        if magic != BTF_MAGIC:
            raise BtfFormatError(f"bad .BTF.ext magic 0x{magic:04x}")
        if version != 1:
            raise BtfFormatError(f"unsupported .BTF.ext version {version}")
        if hdr_len < _HDR_BASE_LEN or hdr_len > len(data):
            raise BtfFormatError(f"bad .BTF.ext header length {hdr_len} "
                                 f"(section is {len(data)} bytes)")
        _, _, _, _, fi_off, fi_len, li_off, li_len = _HDR_BASE.unpack_from(data, 0)
        co_off = co_len = 0
        if hdr_len >= _HDR_CORE_LEN:
            co_off, co_len = _HDR_CORE.unpack_from(data, _HDR_BASE_LEN)
        body = len(data) - hdr_len
        for what, off, ln in (("func_info", fi_off, fi_len), ("line_info", li_off, li_len),
                              ("core_relo", co_off, co_len)):
            if ln and off + ln > body:
                raise BtfFormatError(f".BTF.ext {what} [{off}, +{ln}) beyond end of data "
                                     f"({body} bytes after header)")
        fi, fi_rs = _parse_subsection(data, hdr_len + fi_off, fi_len, "func_info",
                                      FUNC_INFO_REC_SIZE, btf, FuncInfoRec)
        li, li_rs = _parse_subsection(data, hdr_len + li_off, li_len, "line_info",
                                      LINE_INFO_REC_SIZE, btf, LineInfoRec)
        co, co_rs = _parse_subsection(data, hdr_len + co_off, co_len, "core_relo",
                                      CORE_RELO_REC_SIZE, btf, CoreReloRec)
        ntypes = len(btf.types)
        nstr = len(btf.strings)
        for sec, recs in fi.items():
            for r in recs:
                if r.type_id >= ntypes:
                    raise BtfFormatError(f".BTF.ext func_info in {sec}: type id {r.type_id} "
                                         f"out of range")
        for sec, lrecs in li.items():
            for lr in lrecs:
                if lr.file_name_off >= nstr or lr.line_off >= nstr:
                    raise BtfFormatError(f".BTF.ext line_info in {sec}: string offset out of "
                                         "range")
        for sec, crecs in co.items():
            for cr in crecs:
                if cr.type_id >= ntypes or cr.access_str_off >= nstr:
                    raise BtfFormatError(f".BTF.ext core_relo in {sec}: type id or access "
                                         "string out of range")
        return cls(fi, li, co, fi_rs, li_rs, co_rs, hdr_len)

    def sections(self) -> tuple[str, ...]:
        """Every ELF section name that has at least one record, in first-seen order."""
        seen: dict[str, None] = {}
        for m in (self.func_info, self.line_info, self.core_relos):
            seen.update(dict.fromkeys(m))
        return tuple(seen)


def encode_func_info(recs: Iterable[tuple[int, int]]) -> bytes:
    """Kernel ``bpf_func_info`` array from (insn index, FUNC type id) pairs."""
    try:
        return b"".join(_II.pack(insn, tid) for insn, tid in recs)
    except struct.error as e:
        raise BtfFormatError(f"func_info record out of range: {e}") from None


def encode_line_info(recs: Iterable[LineInfoRec]) -> bytes:
    """Kernel ``bpf_line_info`` array; ``insn_off`` must already be an instruction index."""
    try:
        return b"".join(_IIII.pack(r.insn_off, r.file_name_off, r.line_off, r.line_col)
                        for r in recs)
    except struct.error as e:
        raise BtfFormatError(f"line_info record out of range: {e}") from None


def encode_core_relos(recs: Iterable[CoreReloRec]) -> bytes:
    """Kernel ``bpf_core_relo`` array; ``insn_off`` stays in bytes (program-relative)."""
    try:
        return b"".join(_IIII.pack(r.insn_off, r.type_id, r.access_str_off, r.kind)
                        for r in recs)
    except struct.error as e:
        raise BtfFormatError(f"core_relo record out of range: {e}") from None
