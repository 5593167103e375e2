"""Decoder/encoder for the BTF type format found in the ``.BTF`` section of BPF objects.

Everything here is pure: bytes in, frozen values out. A :class:`Btf` is treated as
immutable; every modifying method returns a new object. Type ids are indexes into
:attr:`Btf.types`, whose element 0 is a placeholder for ``void``.

Only little-endian BTF is supported (the byte order of every BPF target we load on).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property

from dispatcher.errors import ObjectFileError
from dispatcher.record import record, replace

__all__ = [
    "BTF_MAGIC",
    "FUNC_EXTERN",
    "FUNC_GLOBAL",
    "FUNC_STATIC",
    "VAR_GLOBAL_ALLOCATED",
    "VAR_GLOBAL_EXTERN",
    "VAR_STATIC",
    "Btf",
    "BtfArray",
    "BtfEnumValue",
    "BtfFormatError",
    "BtfKind",
    "BtfMember",
    "BtfParam",
    "BtfType",
    "BtfVarSecinfo",
]


class BtfFormatError(ObjectFileError):
    """Malformed or unsupported BTF (or BTF.ext) data."""


class BtfKind(IntEnum):
    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


FUNC_STATIC = 0
FUNC_GLOBAL = 1
FUNC_EXTERN = 2

VAR_STATIC = 0
VAR_GLOBAL_ALLOCATED = 1
VAR_GLOBAL_EXTERN = 2

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
_HDR_MIN_LEN = 24
_MAX_RESOLVE_DEPTH = 32
_U32_MAX = 0xFFFFFFFF

_HDR = struct.Struct("<HBBIIIII")
_TYPE_HDR = struct.Struct("<III")
_U32 = struct.Struct("<I")
_S32 = struct.Struct("<i")
_III = struct.Struct("<III")
_II = struct.Struct("<II")
_Ii = struct.Struct("<Ii")
_IIi = struct.Struct("<IIi")

# info word: vlen bits 0-15, kind bits 24-28, kind_flag bit 31; everything else must be 0.
_INFO_UNUSED_BITS = 0x60FF0000

# Kinds whose size_or_type field is a type id (the others hold a byte size or 0).
_REF_KINDS = frozenset({
    BtfKind.PTR, BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT,
    BtfKind.FUNC, BtfKind.FUNC_PROTO, BtfKind.VAR, BtfKind.DECL_TAG, BtfKind.TYPE_TAG,
})
# Kinds skipped by skip_mods_and_typedefs.
_MOD_KINDS = frozenset({
    BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT, BtfKind.TYPE_TAG,
})
# Kinds whose size_or_type is a byte size.
_SIZED_KINDS = frozenset({
    BtfKind.INT, BtfKind.STRUCT, BtfKind.UNION, BtfKind.ENUM, BtfKind.DATASEC,
    BtfKind.FLOAT, BtfKind.ENUM64,
})

# Kind names exactly as bpftool prints them.
_KIND_STR = (
    "UNKNOWN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD", "TYPEDEF",
    "VOLATILE", "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC", "FLOAT",
    "DECL_TAG", "TYPE_TAG", "ENUM64",
)
_INT_ENC_STR = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}
_FUNC_LINKAGE_STR = {FUNC_STATIC: "static", FUNC_GLOBAL: "global", FUNC_EXTERN: "extern"}
_VAR_LINKAGE_STR = {VAR_STATIC: "static", VAR_GLOBAL_ALLOCATED: "global",
                    VAR_GLOBAL_EXTERN: "extern"}

# DATASECs holding externs: their layout is decided by the loader, not the ELF file.
_EXTERN_DATASECS = frozenset({".kconfig", ".ksyms"})


@record
class BtfMember:
    """STRUCT/UNION member. ``offset`` is the raw word: bits, or (kflag) size<<24 | bits."""

    name: str
    name_off: int
    type_id: int
    offset: int


@record
class BtfParam:
    """FUNC_PROTO parameter; a last parameter with type 0 marks varargs."""

    name: str
    name_off: int
    type_id: int


@record
class BtfEnumValue:
    """ENUM/ENUM64 enumerator; ``value`` is signed if the enum's kflag is set."""

    name: str
    name_off: int
    value: int


@record
class BtfVarSecinfo:
    """DATASEC entry: a VAR (or extern FUNC in ``.ksyms``) at ``offset`` of ``size`` bytes."""

    type_id: int
    offset: int
    size: int


@record
class BtfArray:
    elem_type: int
    index_type: int
    nelems: int


@record
class BtfType:
    """One BTF type record.

    ``size_or_type`` is a byte size for INT, STRUCT, UNION, ENUM, ENUM64, DATASEC and FLOAT,
    a type id for PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO (return type),
    VAR, DECL_TAG and TYPE_TAG, and 0 for ARRAY and FWD. ``linkage`` is the VAR linkage, and
    for FUNC the linkage stored in vlen. ``int_encoding`` is the raw INT data word.
    """

    kind: BtfKind
    name: str = ""
    name_off: int = 0
    vlen: int = 0
    kflag: bool = False
    size_or_type: int = 0
    int_encoding: int = 0
    array: BtfArray | None = None
    members: tuple[BtfMember, ...] = ()
    params: tuple[BtfParam, ...] = ()
    enum_values: tuple[BtfEnumValue, ...] = ()
    linkage: int = 0
    secinfos: tuple[BtfVarSecinfo, ...] = ()
    component_idx: int = 0

    @property
    def size(self) -> int:
        """Byte size (meaningful for INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT)."""
        return self.size_or_type

    @property
    def type_id(self) -> int:
        """Referenced type id (PTR, TYPEDEF, modifiers, FUNC, FUNC_PROTO return, VAR, tags)."""
        return self.size_or_type

    @property
    def int_bits(self) -> int:
        return self.int_encoding & 0xFF

    @property
    def int_offset(self) -> int:
        return (self.int_encoding >> 16) & 0xFF

    @property
    def int_flags(self) -> int:
        """INT encoding flags: SIGNED 1, CHAR 2, BOOL 4."""
        return (self.int_encoding >> 24) & 0x0F

    def member_bit_offset(self, member: BtfMember) -> int:
        return member.offset & 0xFFFFFF if self.kflag else member.offset

    def member_bitfield_size(self, member: BtfMember) -> int:
        return member.offset >> 24 if self.kflag else 0


_VOID = BtfType(kind=BtfKind.UNKN)


def _encoded_vlen(t: BtfType) -> int:
    """vlen as written to the info word: derived from the lists where the kind has one."""
    k = t.kind
    if k in (BtfKind.STRUCT, BtfKind.UNION):
        return len(t.members)
    if k in (BtfKind.ENUM, BtfKind.ENUM64):
        return len(t.enum_values)
    if k == BtfKind.FUNC_PROTO:
        return len(t.params)
    if k == BtfKind.DATASEC:
        return len(t.secinfos)
    if k == BtfKind.FUNC:
        return t.linkage
    return t.vlen


class _Strings:
    """String section with a decode cache; raises BtfFormatError for bad offsets."""

    __slots__ = ("data", "cache")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.cache: dict[int, str] = {0: ""}

    def get(self, off: int) -> str:
        s = self.cache.get(off)
        if s is None:
            data = self.data
            if off < 0 or off >= len(data):
                raise BtfFormatError(f"BTF string offset {off} outside string section "
                                     f"({len(data)} bytes)")
            end = data.find(b"\0", off)
            if end < 0:
                raise BtfFormatError(f"BTF string at offset {off} is not NUL-terminated")
            s = data[off:end].decode("utf-8", "replace")
            self.cache[off] = s
        return s


def _need(pos: int, n: int, end: int, what: str) -> None:
    if pos + n > end:
        raise BtfFormatError(f"BTF type section truncated in {what} "
                             f"(need {n} bytes at {pos}, section ends at {end})")


def _parse_types(data: bytes, start: int, end: int, strs: _Strings) -> list[BtfType]:
    types: list[BtfType] = [_VOID]
    append = types.append
    get = strs.get
    pos = start
    while pos < end:
        _need(pos, 12, end, f"type [{len(types)}]")
        name_off, info, sot = _TYPE_HDR.unpack_from(data, pos)
        pos += 12
        if info & _INFO_UNUSED_BITS:
            raise BtfFormatError(f"BTF type [{len(types)}]: invalid info word 0x{info:08x}")
        kind_v = (info >> 24) & 0x1F
        if kind_v == 0 or kind_v > BtfKind.ENUM64:
            raise BtfFormatError(f"BTF type [{len(types)}]: unsupported kind {kind_v}")
        kind = BtfKind(kind_v)
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        name = get(name_off)
        if kind == BtfKind.INT:
            _need(pos, 4, end, f"INT [{len(types)}]")
            (enc,) = _U32.unpack_from(data, pos)
            pos += 4
            append(BtfType(kind, name, name_off, vlen, kflag, sot, int_encoding=enc))
        elif kind == BtfKind.ARRAY:
            _need(pos, 12, end, f"ARRAY [{len(types)}]")
            arr = BtfArray(*_III.unpack_from(data, pos))
            pos += 12
            append(BtfType(kind, name, name_off, vlen, kflag, sot, array=arr))
        elif kind in (BtfKind.STRUCT, BtfKind.UNION):
            n = vlen * 12
            _need(pos, n, end, f"{kind.name} [{len(types)}] members")
            members = tuple(BtfMember(get(mn), mn, mt, mo)
                            for mn, mt, mo in _III.iter_unpack(data[pos:pos + n]))
            pos += n
            append(BtfType(kind, name, name_off, vlen, kflag, sot, members=members))
        elif kind == BtfKind.ENUM:
            n = vlen * 8
            _need(pos, n, end, f"ENUM [{len(types)}] values")
            fmt = _Ii if kflag else _II
            values = tuple(BtfEnumValue(get(vn), vn, vv)
                           for vn, vv in fmt.iter_unpack(data[pos:pos + n]))
            pos += n
            append(BtfType(kind, name, name_off, vlen, kflag, sot, enum_values=values))
        elif kind == BtfKind.ENUM64:
            n = vlen * 12
            _need(pos, n, end, f"ENUM64 [{len(types)}] values")
            fmt = _IIi if kflag else _III
            values = tuple(BtfEnumValue(get(vn), vn, (hi << 32) | lo)
                           for vn, lo, hi in fmt.iter_unpack(data[pos:pos + n]))
            pos += n
            append(BtfType(kind, name, name_off, vlen, kflag, sot, enum_values=values))
        elif kind == BtfKind.FUNC_PROTO:
            n = vlen * 8
            _need(pos, n, end, f"FUNC_PROTO [{len(types)}] params")
            params = tuple(BtfParam(get(pn), pn, pt)
                           for pn, pt in _II.iter_unpack(data[pos:pos + n]))
            pos += n
            append(BtfType(kind, name, name_off, vlen, kflag, sot, params=params))
        elif kind == BtfKind.VAR:
            _need(pos, 4, end, f"VAR [{len(types)}]")
            (linkage,) = _U32.unpack_from(data, pos)
            pos += 4
            append(BtfType(kind, name, name_off, vlen, kflag, sot, linkage=linkage))
        elif kind == BtfKind.DATASEC:
            n = vlen * 12
            _need(pos, n, end, f"DATASEC [{len(types)}] entries")
            secinfos = tuple(BtfVarSecinfo(*v) for v in _III.iter_unpack(data[pos:pos + n]))
            pos += n
            append(BtfType(kind, name, name_off, vlen, kflag, sot, secinfos=secinfos))
        elif kind == BtfKind.DECL_TAG:
            _need(pos, 4, end, f"DECL_TAG [{len(types)}]")
            (cidx,) = _S32.unpack_from(data, pos)
            pos += 4
            append(BtfType(kind, name, name_off, vlen, kflag, sot, component_idx=cidx))
        elif kind == BtfKind.FUNC:
            append(BtfType(kind, name, name_off, vlen, kflag, sot, linkage=vlen))
        else:  # PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FLOAT, TYPE_TAG
            append(BtfType(kind, name, name_off, vlen, kflag, sot))
    return types


def _referenced_ids(t: BtfType) -> Iterable[int]:
    """Every type id field of ``t`` (including 0 = void)."""
    if t.kind in _REF_KINDS:
        yield t.size_or_type
    if t.array is not None:
        yield t.array.elem_type
        yield t.array.index_type
    for m in t.members:
        yield m.type_id
    for p in t.params:
        yield p.type_id
    for s in t.secinfos:
        yield s.type_id


def _check_type_refs(tid: int, t: BtfType, n: int) -> None:
    for ref in _referenced_ids(t):
        if ref >= n or ref < 0:
            raise BtfFormatError(f"BTF type [{tid}] {t.kind.name} '{t.name}' references "
                                 f"type id {ref}, but only {n - 1} types exist")


def _check_refs(types: Sequence[BtfType]) -> None:
    n = len(types)
    for tid in range(1, n):
        _check_type_refs(tid, types[tid], n)


def _check_names(types: Sequence[BtfType], strs: _Strings) -> None:
    """Make sure every name_off of hand-built types is a valid string offset."""
    for t in types[1:]:
        strs.get(t.name_off)
        for m in t.members:
            strs.get(m.name_off)
        for p in t.params:
            strs.get(p.name_off)
        for v in t.enum_values:
            strs.get(v.name_off)


def _encode_type(t: BtfType, out: list[bytes]) -> None:
    kind = t.kind
    if not 1 <= kind <= BtfKind.ENUM64:
        raise BtfFormatError(f"cannot encode BTF type of kind {int(kind)}")
    vlen = _encoded_vlen(t)
    if not 0 <= vlen <= 0xFFFF:
        raise BtfFormatError(f"BTF {kind.name} '{t.name}': vlen {vlen} does not fit")
    info = (int(kind) << 24) | vlen | (0x80000000 if t.kflag else 0)
    try:
        out.append(_TYPE_HDR.pack(t.name_off, info, t.size_or_type))
        if kind == BtfKind.INT:
            out.append(_U32.pack(t.int_encoding))
        elif kind == BtfKind.ARRAY:
            a = t.array if t.array is not None else BtfArray(0, 0, 0)
            out.append(_III.pack(a.elem_type, a.index_type, a.nelems))
        elif kind in (BtfKind.STRUCT, BtfKind.UNION):
            out.extend(_III.pack(m.name_off, m.type_id, m.offset) for m in t.members)
        elif kind == BtfKind.ENUM:
            out.extend(_II.pack(v.name_off, v.value & _U32_MAX) for v in t.enum_values)
        elif kind == BtfKind.ENUM64:
            out.extend(_III.pack(v.name_off, v.value & _U32_MAX, (v.value >> 32) & _U32_MAX)
                       for v in t.enum_values)
        elif kind == BtfKind.FUNC_PROTO:
            out.extend(_II.pack(p.name_off, p.type_id) for p in t.params)
        elif kind == BtfKind.VAR:
            out.append(_U32.pack(t.linkage))
        elif kind == BtfKind.DATASEC:
            out.extend(_III.pack(s.type_id, s.offset, s.size) for s in t.secinfos)
        elif kind == BtfKind.DECL_TAG:
            out.append(_S32.pack(t.component_idx))
    except struct.error as e:
        raise BtfFormatError(f"BTF {kind.name} '{t.name}': field out of range: {e}") from None


def _shift_type(t: BtfType, id_base: int, str_base: int) -> BtfType:
    """Copy of ``t`` with non-zero type ids moved by id_base and non-zero name offsets by
    str_base (0 stays 0: it means void / anonymous, and the kernel insists on name_off 0
    for anonymous modifiers)."""

    def tid(x: int) -> int:
        return x + id_base if x else 0

    def soff(x: int) -> int:
        return x + str_base if x else 0

    return replace(
        t,
        name_off=soff(t.name_off),
        size_or_type=tid(t.size_or_type) if t.kind in _REF_KINDS else t.size_or_type,
        array=(BtfArray(tid(t.array.elem_type), tid(t.array.index_type), t.array.nelems)
               if t.array is not None else None),
        members=tuple(BtfMember(m.name, soff(m.name_off), tid(m.type_id), m.offset)
                      for m in t.members),
        params=tuple(BtfParam(p.name, soff(p.name_off), tid(p.type_id)) for p in t.params),
        enum_values=tuple(BtfEnumValue(v.name, soff(v.name_off), v.value)
                          for v in t.enum_values),
        secinfos=tuple(BtfVarSecinfo(tid(s.type_id), s.offset, s.size) for s in t.secinfos),
    )


@dataclass(frozen=True, repr=False)  # keep: cached_property
class Btf:
    """Decoded BTF blob: ``types[0]`` is void, ``types[i]`` is type id ``i``."""

    types: tuple[BtfType, ...]
    strings: bytes
    flags: int = 0
    header_ext: bytes = b""  # header bytes beyond the 24-byte base (all zero)

    @cached_property
    def _strs(self) -> _Strings:
        return _Strings(self.strings)

    def _with_strs(self, strs: _Strings) -> Btf:
        """Reuse an already filled string cache (it belongs to the same string section)."""
        self.__dict__["_strs"] = strs
        return self

    def __repr__(self) -> str:
        return f"<Btf {len(self.types) - 1} types, {len(self.strings)} string bytes>"

    # ---------------------------------------------------------------- construction
    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> Btf:
        """Decode a raw BTF blob (the contents of a ``.BTF`` section)."""
        data = bytes(data)
        if len(data) < _HDR_MIN_LEN:
            raise BtfFormatError(f"BTF data too short for a header ({len(data)} bytes)")
        magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = \
            _HDR.unpack_from(data, 0)
        if magic == 0x9FEB:
            raise BtfFormatError("big-endian BTF not supported")
        if magic != BTF_MAGIC:
            raise BtfFormatError(f"bad BTF magic 0x{magic:04x}")
        if version != BTF_VERSION:
            raise BtfFormatError(f"unsupported BTF version {version}")
        if hdr_len < _HDR_MIN_LEN or hdr_len > len(data):
            raise BtfFormatError(f"bad BTF header length {hdr_len} (blob is {len(data)} bytes)")
        header_ext = data[_HDR_MIN_LEN:hdr_len]
        if header_ext.count(0) != len(header_ext):
            raise BtfFormatError(f"unsupported BTF header extension (hdr_len {hdr_len} with "
                                 "non-zero extra fields)")
        body = len(data) - hdr_len
        if type_off + type_len > body:
            raise BtfFormatError(f"BTF type section [{type_off}, +{type_len}) beyond end of "
                                 f"data ({body} bytes after header)")
        if str_off + str_len > body:
            raise BtfFormatError(f"BTF string section [{str_off}, +{str_len}) beyond end of "
                                 f"data ({body} bytes after header)")
        strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        if not strings or strings[0] != 0 or strings[-1] != 0:
            raise BtfFormatError("BTF string section must start and end with a NUL byte")
        strs = _Strings(strings)
        start = hdr_len + type_off
        types = _parse_types(data, start, start + type_len, strs)
        _check_refs(types)
        return cls(tuple(types), strings, flags, header_ext)._with_strs(strs)

    @classmethod
    def from_parts(cls, types: Iterable[BtfType], strings: bytes, flags: int = 0) -> Btf:
        """Build a BTF from types (ids 1..n, without the void placeholder) and a string
        section. Names are taken from ``strings`` via the name offsets; ``vlen`` is derived
        as in :meth:`with_type`."""
        strings = bytes(strings)
        if not strings or strings[0] != 0 or strings[-1] != 0:
            raise BtfFormatError("BTF string section must start and end with a NUL byte")
        strs = _Strings(strings)
        all_types = [_VOID, *types]
        _check_names(all_types, strs)
        all_types[1:] = [_normalised(t, strs) for t in all_types[1:]]
        _check_refs(all_types)
        return cls(tuple(all_types), strings, flags, b"")._with_strs(strs)

    # ---------------------------------------------------------------- encoding
    def encode(self) -> bytes:
        """Serialise: header, type section, string section (the layout clang emits)."""
        out: list[bytes] = []
        for t in self.types[1:]:
            _encode_type(t, out)
        type_sec = b"".join(out)
        hdr_len = _HDR_MIN_LEN + len(self.header_ext)
        hdr = _HDR.pack(BTF_MAGIC, BTF_VERSION, self.flags & 0xFF, hdr_len,
                        0, len(type_sec), len(type_sec), len(self.strings))
        return b"".join((hdr, self.header_ext, type_sec, self.strings))

    # ---------------------------------------------------------------- lookups
    def string_at(self, off: int) -> str:
        """The NUL-terminated string at ``off`` of the string section."""
        return self._strs.get(off)

    def type_by_id(self, type_id: int) -> BtfType:
        if not 0 <= type_id < len(self.types):
            raise BtfFormatError(f"BTF type id {type_id} out of range "
                                 f"(0..{len(self.types) - 1})")
        return self.types[type_id]

    @cached_property
    def _name_index(self) -> dict[str, list[int]]:
        idx: dict[str, list[int]] = {}
        for tid in range(1, len(self.types)):
            idx.setdefault(self.types[tid].name, []).append(tid)
        return idx

    def find_all(self, name: str, kind: BtfKind | None = None) -> list[int]:
        """Ids of all types called ``name`` (optionally only of ``kind``), ascending."""
        ids = self._name_index.get(name, [])
        if kind is None:
            return list(ids)
        return [i for i in ids if self.types[i].kind == kind]

    def find(self, name: str, kind: BtfKind | None = None) -> int | None:
        """Id of the first type called ``name`` (optionally only of ``kind``)."""
        ids = self.find_all(name, kind)
        return ids[0] if ids else None

    def skip_mods_and_typedefs(self, type_id: int) -> int:
        """Follow TYPEDEF/VOLATILE/CONST/RESTRICT/TYPE_TAG to the underlying type id."""
        tid = type_id
        for _ in range(_MAX_RESOLVE_DEPTH + 1):
            t = self.type_by_id(tid)
            if t.kind not in _MOD_KINDS:
                return tid
            tid = t.size_or_type
        raise BtfFormatError(f"BTF type [{type_id}]: modifier/typedef chain too long (loop?)")

    def resolve_size(self, type_id: int) -> int:
        """Byte size of a type, following typedefs, modifiers, VARs and arrays."""
        tid = type_id
        mult = 1
        for _ in range(_MAX_RESOLVE_DEPTH + 1):
            t = self.type_by_id(tid)
            k = t.kind
            if k in _SIZED_KINDS:
                size = mult * t.size_or_type
            elif k == BtfKind.PTR:
                size = mult * 8
            elif k == BtfKind.ARRAY and t.array is not None:
                mult *= t.array.nelems
                if mult > _U32_MAX:
                    raise BtfFormatError(f"BTF type [{type_id}]: size overflows u32")
                tid = t.array.elem_type
                continue
            elif k in _MOD_KINDS or k == BtfKind.VAR:
                tid = t.size_or_type
                continue
            else:
                what = "void" if tid == 0 else f"{_KIND_STR[k]} [{tid}] '{t.name}'"
                raise BtfFormatError(f"BTF type [{type_id}]: cannot determine size of {what}")
            if size > _U32_MAX:
                raise BtfFormatError(f"BTF type [{type_id}]: size overflows u32")
            return size
        raise BtfFormatError(f"BTF type [{type_id}]: type chain too long (loop?)")

    # ---------------------------------------------------------------- modification
    def with_type(self, type_id: int, new_type: BtfType) -> Btf:
        """Copy with type ``type_id`` replaced. Names are refreshed from the name offsets
        and ``vlen`` from the member/param/value/secinfo lists (FUNC: from ``linkage``)."""
        if not 1 <= type_id < len(self.types):
            raise BtfFormatError(f"BTF type id {type_id} out of range "
                                 f"(1..{len(self.types) - 1})")
        _check_names([_VOID, new_type], self._strs)
        new_type = _normalised(new_type, self._strs)
        _check_type_refs(type_id, new_type, len(self.types))
        types = list(self.types)
        types[type_id] = new_type
        return Btf(tuple(types), self.strings, self.flags, self.header_ext)._with_strs(self._strs)

    def with_func_linkage(self, type_id: int, linkage: int) -> Btf:
        """Copy with FUNC ``type_id``'s linkage changed (e.g. to FUNC_STATIC)."""
        t = self.type_by_id(type_id)
        if t.kind != BtfKind.FUNC:
            raise BtfFormatError(f"BTF type [{type_id}] is {t.kind.name}, not FUNC")
        return self.with_type(type_id, replace(t, linkage=linkage))

    def add_string(self, s: str) -> tuple[Btf, int]:
        """Offset of ``s`` in the string section, appending it if absent."""
        raw = s.encode()
        if b"\0" in raw:
            raise BtfFormatError("BTF strings cannot contain NUL")
        if not raw:
            return self, 0
        pos = self.strings.find(b"\0" + raw + b"\0")
        if pos >= 0:
            return self, pos + 1
        off = len(self.strings)
        return Btf(self.types, self.strings + raw + b"\0", self.flags, self.header_ext), off

    def append(self, other: Btf) -> tuple[Btf, int, int]:
        """Concatenate ``other`` after ``self``: returns (merged, type_id_base, str_base).

        Type id ``i`` (> 0) of ``other`` becomes ``i + type_id_base``; its name offsets
        (> 0) move by ``str_base``. Ids/offsets 0 (void, anonymous) stay 0.
        """
        id_base = len(self.types) - 1
        str_base = len(self.strings)
        shifted = tuple(_shift_type(t, id_base, str_base) for t in other.types[1:])
        merged = Btf(self.types + shifted, self.strings + other.strings, self.flags,
                     self.header_ext)
        return merged, id_base, str_base

    def fixup_datasecs(self, section_sizes: Mapping[str, int],
                       global_symbols: Mapping[str, tuple[int, bool]]) -> Btf:
        """Fill in what clang leaves to the loader (see loader.md 3.3).

        ``section_sizes``: ELF section name -> size. ``global_symbols``: name of each
        STT_OBJECT STB_GLOBAL/WEAK symbol -> (st_value, hidden) where hidden means
        STV_HIDDEN/STV_INTERNAL. DATASEC size 0 becomes the ELF section size, each
        GLOBAL_ALLOCATED VAR gets its symbol's value as offset (hidden ones become
        static), and entries are sorted by offset. ``.kconfig``/``.ksyms`` are left alone.
        """
        types = list(self.types)
        changed = False
        for tid in range(1, len(types)):
            t = types[tid]
            if t.kind != BtfKind.DATASEC or t.name in _EXTERN_DATASECS:
                continue
            sec_size = section_sizes.get(t.name)
            if sec_size is None:
                if t.size_or_type == 0:
                    raise BtfFormatError(f"BTF DATASEC '{t.name}' has size 0 and there is "
                                         "no ELF section of that name")
                continue
            size = t.size_or_type or sec_size
            if size == 0:
                raise BtfFormatError(f"BTF DATASEC '{t.name}' has size 0 and so has its "
                                     "ELF section")
            secinfos: list[BtfVarSecinfo] = []
            for si in t.secinfos:
                var = self.type_by_id(si.type_id)
                if var.kind != BtfKind.VAR:
                    raise BtfFormatError(f"BTF DATASEC '{t.name}' holds {var.kind.name} "
                                         f"[{si.type_id}] '{var.name}', expected a VAR")
                if var.linkage == VAR_GLOBAL_ALLOCATED:
                    sym = global_symbols.get(var.name)
                    if sym is None:
                        raise BtfFormatError(f"BTF VAR '{var.name}' in DATASEC '{t.name}' "
                                             "has no global ELF symbol")
                    value, hidden = sym
                    si = BtfVarSecinfo(si.type_id, value, si.size)
                    if hidden:
                        types[si.type_id] = replace(var, linkage=VAR_STATIC)
                        changed = True
                secinfos.append(si)
            secinfos.sort(key=lambda s: s.offset)
            new = replace(t, size_or_type=size, secinfos=tuple(secinfos))
            if new != t:
                types[tid] = new
                changed = True
        if not changed:
            return self
        return Btf(tuple(types), self.strings, self.flags, self.header_ext)._with_strs(self._strs)

    def without_externs(self) -> Btf:
        """Copy the kernel accepts although the object declares externs (kfuncs, ksyms,
        kconfig), as libbpf sanitizes object BTF before loading it: a FUNC or VAR with
        extern linkage ("Invalid func linkage") becomes static, and the ``.ksyms`` /
        ``.kconfig`` DATASECs, whose entries are no VARs and whose size the ELF file does
        not give, are emptied (one byte, no entries). Type ids are unchanged. Programs
        that reference an extern are refused by the linker; this lets the others load."""
        types = list(self.types)
        changed = False
        for tid in range(1, len(types)):
            t = types[tid]
            if t.kind == BtfKind.FUNC and t.linkage == FUNC_EXTERN:
                types[tid] = replace(t, linkage=FUNC_STATIC)
                # the kernel wants named parameters behind a FUNC ("Invalid arg#N"); an
                # extern's prototype often has none: name them after the function, as
                # libbpf does with its placeholder's name
                proto = types[t.size_or_type]
                if proto.kind == BtfKind.FUNC_PROTO and any(
                        p.type_id and not p.name_off for p in proto.params):
                    types[t.size_or_type] = replace(proto, params=tuple(
                        BtfParam(t.name, t.name_off, p.type_id) if p.type_id and not p.name_off
                        else p for p in proto.params))
            elif t.kind == BtfKind.VAR and t.linkage == VAR_GLOBAL_EXTERN:
                types[tid] = replace(t, linkage=VAR_STATIC)
            elif t.kind == BtfKind.DATASEC and t.name in _EXTERN_DATASECS:
                types[tid] = replace(t, vlen=0, size_or_type=max(t.size_or_type, 1), secinfos=())
            else:
                continue
            changed = True
        if not changed:
            return self
        return Btf(tuple(types), self.strings, self.flags, self.header_ext)._with_strs(self._strs)

    # ---------------------------------------------------------------- formatting
    def _name_str(self, name_off: int) -> str:
        # bpftool prints "(anon)" for offset 0 only; other empty names print as ''.
        return "(anon)" if name_off == 0 else self._strs.get(name_off)

    def format_type(self, type_id: int) -> str:
        """The entry ``bpftool btf dump file X`` (raw format) prints for this type."""
        t = self.type_by_id(type_id)
        k = int(t.kind)
        kind_s = _KIND_STR[k] if 0 <= k < len(_KIND_STR) else "UNKNOWN"
        parts = [f"[{type_id}] {kind_s} '{self._name_str(t.name_off)}'"]
        kind = t.kind
        if kind == BtfKind.INT:
            enc = t.int_encoding
            parts.append(f" size={t.size_or_type} bits_offset={(enc >> 16) & 0xFF} "
                         f"nr_bits={enc & 0xFF} "
                         f"encoding={_INT_ENC_STR.get((enc >> 24) & 0x0F, 'UNKN')}")
        elif kind in (BtfKind.PTR, BtfKind.CONST, BtfKind.VOLATILE, BtfKind.RESTRICT,
                      BtfKind.TYPEDEF, BtfKind.TYPE_TAG):
            parts.append(f" type_id={t.size_or_type}")
        elif kind == BtfKind.ARRAY:
            a = t.array if t.array is not None else BtfArray(0, 0, 0)
            parts.append(f" type_id={a.elem_type} index_type_id={a.index_type} "
                         f"nr_elems={a.nelems}")
        elif kind in (BtfKind.STRUCT, BtfKind.UNION):
            parts.append(f" size={t.size_or_type} vlen={len(t.members)}")
            for m in t.members:
                parts.append(f"\n\t'{self._name_str(m.name_off)}' type_id={m.type_id} "
                             f"bits_offset={t.member_bit_offset(m)}")
                bsz = t.member_bitfield_size(m)
                if bsz:
                    parts.append(f" bitfield_size={bsz}")
        elif kind in (BtfKind.ENUM, BtfKind.ENUM64):
            parts.append(f" encoding={'SIGNED' if t.kflag else 'UNSIGNED'} "
                         f"size={t.size_or_type} vlen={len(t.enum_values)}")
            bits = 32 if kind == BtfKind.ENUM else 64
            mask = (1 << bits) - 1
            for v in t.enum_values:
                val = v.value & mask
                if t.kflag and val >> (bits - 1):
                    val -= 1 << bits
                suffix = "" if kind == BtfKind.ENUM else ("LL" if t.kflag else "ULL")
                parts.append(f"\n\t'{self._name_str(v.name_off)}' val={val}{suffix}")
        elif kind == BtfKind.FWD:
            parts.append(f" fwd_kind={'union' if t.kflag else 'struct'}")
        elif kind == BtfKind.FUNC:
            parts.append(f" type_id={t.size_or_type} "
                         f"linkage={_FUNC_LINKAGE_STR.get(t.linkage, '(unknown)')}")
        elif kind == BtfKind.FUNC_PROTO:
            parts.append(f" ret_type_id={t.size_or_type} vlen={len(t.params)}")
            for p in t.params:
                parts.append(f"\n\t'{self._name_str(p.name_off)}' type_id={p.type_id}")
        elif kind == BtfKind.VAR:
            parts.append(f" type_id={t.size_or_type}, "
                         f"linkage={_VAR_LINKAGE_STR.get(t.linkage, '(unknown)')}")
        elif kind == BtfKind.DATASEC:
            parts.append(f" size={t.size_or_type} vlen={len(t.secinfos)}")
            for s in t.secinfos:
                parts.append(f"\n\ttype_id={s.type_id} offset={s.offset} size={s.size}")
                if 0 <= s.type_id < len(self.types):
                    vt = self.types[s.type_id]
                    parts.append(f" ({_KIND_STR[vt.kind]} '{self._name_str(vt.name_off)}')")
        elif kind == BtfKind.FLOAT:
            parts.append(f" size={t.size_or_type}")
        elif kind == BtfKind.DECL_TAG:
            parts.append(f" type_id={t.size_or_type} component_idx={t.component_idx}")
        return "".join(parts)

    def dump(self) -> str:
        """All types, formatted like ``bpftool btf dump file X`` (one entry per line)."""
        return "\n".join(self.format_type(i) for i in range(1, len(self.types)))


def _normalised(t: BtfType, strs: _Strings) -> BtfType:
    """``t`` with every name refreshed from its name offset and vlen matching its lists
    (for FUNC: its linkage), exactly as encode() will write it."""
    new = replace(
        t,
        name=strs.get(t.name_off),
        vlen=_encoded_vlen(t),
        members=tuple(m if m.name == strs.get(m.name_off)
                      else BtfMember(strs.get(m.name_off), m.name_off, m.type_id, m.offset)
                      for m in t.members),
        params=tuple(p if p.name == strs.get(p.name_off)
                     else BtfParam(strs.get(p.name_off), p.name_off, p.type_id)
                     for p in t.params),
        enum_values=tuple(v if v.name == strs.get(v.name_off)
                          else BtfEnumValue(strs.get(v.name_off), v.name_off, v.value)
                          for v in t.enum_values),
    )
    return t if new == t else new
