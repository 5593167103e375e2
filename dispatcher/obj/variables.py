"""Global variables of an object (BTF VARs in the DATASECs of ``.rodata``/``.data``/``.bss``)
and overrides of their initial values, checked against their BTF types (pure: no syscalls).

A config's ``globals: {name: value}`` becomes new initial bytes of the internal map that
holds the variable; the loader writes them before freezing ``.rodata``. Accepted values:

- integers (any size, signed or not) and ``char``: an integer in the type's range;
- ``bool``: true or false;
- enums: an enumerator name or an integer in the enum's range;
- arrays of 1-byte integers (``char name[N]``): a string of at most N bytes (UTF-8,
  NUL-padded), or a list of N integers;
- other arrays of integers / enums: a list of exactly N integers.

Anything else (pointers, structs, floats, nested arrays) is refused with the type's name.
"""

from __future__ import annotations

from collections.abc import Mapping

from dispatcher.obj.btf import Btf, BtfKind, BtfType
from dispatcher.obj.spec import ObjectSpec
from dispatcher.record import record, replace

Value = bool | int | str | list[int]

_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4
_MODS = (BtfKind.TYPEDEF, BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT, BtfKind.TYPE_TAG)
SUPPORTED = "integers, bool, enums, char arrays and arrays of integers"


class OverrideError(ValueError):
    """A value that does not fit its variable; ``str()`` is the message. ``index``: the
    list element at fault (``message`` then describes that element)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message if index is None else f"[{index}]: {message}")
        self.message = message
        self.index = index


@record
class Variable:
    name: str
    section: str         # ELF section = internal map name (.rodata, .data, .bss, .rodata.x)
    offset: int          # byte offset in the section
    size: int
    type_id: int         # the VAR's type (modifiers included)
    volatile: bool       # a VOLATILE modifier on the way to the underlying type


def variables(obj: ObjectSpec) -> dict[str, Variable]:
    """Variables of the object's global-data maps, by name (first one wins on a clash)."""
    out: dict[str, Variable] = {}
    btf = obj.btf
    if btf is None:
        return out
    data_secs = {m.section for m in obj.maps if m.kind == "data"}
    for t in btf.types:
        if t.kind != BtfKind.DATASEC or t.name not in data_secs:
            continue
        for si in t.secinfos:
            var = btf.type_by_id(si.type_id)
            if var.kind != BtfKind.VAR or var.name in out:
                continue
            out[var.name] = Variable(var.name, t.name, si.offset, si.size, var.type_id,
                                     _has_volatile(btf, var.type_id))
    return out


def _has_volatile(btf: Btf, tid: int) -> bool:
    for _ in range(33):
        t = btf.type_by_id(tid)
        if t.kind == BtfKind.VOLATILE:
            return True
        if t.kind == BtfKind.ARRAY and t.array is not None:    # const volatile T x[N]
            tid = t.array.elem_type
            continue
        if t.kind not in _MODS:
            return False
        tid = t.type_id
    return False


def type_name(btf: Btf, tid: int) -> str:
    """C-like name of a type, without const/volatile: ``__u16``, ``char[8]``, ``enum x``."""
    t = btf.type_by_id(tid)
    if t.kind in (BtfKind.CONST, BtfKind.VOLATILE, BtfKind.RESTRICT, BtfKind.TYPE_TAG):
        return type_name(btf, t.type_id)
    if t.kind in (BtfKind.TYPEDEF, BtfKind.INT, BtfKind.FLOAT):
        return t.name or "(anon)"
    if t.kind == BtfKind.ARRAY and t.array is not None:
        return f"{type_name(btf, t.array.elem_type)}[{t.array.nelems}]"
    if t.kind in (BtfKind.ENUM, BtfKind.ENUM64):
        return f"enum {t.name}" if t.name else "an anonymous enum"
    if t.kind in (BtfKind.STRUCT, BtfKind.UNION):
        kw = "struct" if t.kind == BtfKind.STRUCT else "union"
        return f"{kw} {t.name}" if t.name else f"an anonymous {kw}"
    if t.kind == BtfKind.PTR:
        return "a pointer"
    return "void" if tid == 0 else t.kind.name.lower()


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _int_range(size: int, signed: bool) -> tuple[int, int]:
    bits = size * 8
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _scalar(btf: Btf, t: BtfType, name: str, value: object) -> bytes:
    """Encode one scalar of resolved type ``t`` (INT or ENUM)."""
    if t.kind == BtfKind.INT:
        if t.int_flags & _INT_BOOL:
            if not isinstance(value, bool):
                raise OverrideError(f"expected true or false ({name}), got {_show(value)}")
            return (1 if value else 0).to_bytes(t.size, "little")
        signed = bool(t.int_flags & _INT_SIGNED)
        if t.int_bits != t.size * 8 or t.int_offset:
            raise OverrideError(f"cannot set a bit-field integer ({name})")
        lo, hi = _int_range(t.size, signed)
        if isinstance(value, str) and t.size == 1 and len(value.encode()) == 1:
            value = value.encode()[0]
        if not _is_int(value):
            raise OverrideError(f"expected an integer {lo}..{hi} ({name}), got {_show(value)}")
        assert isinstance(value, int)
        if not lo <= value <= hi:
            raise OverrideError(f"expected an integer {lo}..{hi} ({name}), got {value}")
        return value.to_bytes(t.size, "little", signed=signed)
    # ENUM / ENUM64: kflag set = signed values
    names = {e.name: e.value for e in t.enum_values}
    bits = t.size * 8      # older compilers leave kflag 0 on enums with negative values
    lo, hi = -(1 << (bits - 1)), (1 << bits) - 1
    if isinstance(value, str):
        if value not in names:
            known = ", ".join(names) or "none"
            raise OverrideError(f"expected an enumerator of {name} ({known}) or an integer, "
                                f"got {_show(value)}")
        value = names[value]
    if not _is_int(value):
        raise OverrideError(f"expected an enumerator name or an integer {lo}..{hi} ({name}), "
                            f"got {_show(value)}")
    assert isinstance(value, int)
    if not lo <= value <= hi:
        raise OverrideError(f"expected an integer {lo}..{hi} ({name}), got {value}")
    return (value & ((1 << bits) - 1)).to_bytes(t.size, "little")


def encode(btf: Btf, var: Variable, value: object) -> bytes:
    """The bytes ``value`` stands for in ``var``; OverrideError says what was expected."""
    tid = btf.skip_mods_and_typedefs(var.type_id)
    t = btf.type_by_id(tid)
    name = type_name(btf, var.type_id)
    if t.kind in (BtfKind.INT, BtfKind.ENUM, BtfKind.ENUM64):
        return _scalar(btf, t, name, value)
    if t.kind == BtfKind.ARRAY and t.array is not None:
        etid = btf.skip_mods_and_typedefs(t.array.elem_type)
        et = btf.type_by_id(etid)
        n = t.array.nelems
        ename = type_name(btf, t.array.elem_type)
        if et.kind in (BtfKind.INT, BtfKind.ENUM, BtfKind.ENUM64) \
                and not (et.kind == BtfKind.INT and et.int_flags & _INT_BOOL):
            if isinstance(value, str) and et.kind == BtfKind.INT and et.size == 1:
                raw = value.encode("utf-8")
                if len(raw) > n:
                    raise OverrideError(f"expected a string of at most {n} bytes ({name}), "
                                        f"got {len(raw)} bytes: {_show(value)}")
                return raw + bytes(n - len(raw))
            if not isinstance(value, list):
                what = f"a string of at most {n} bytes or a list of {n} integers" \
                    if et.kind == BtfKind.INT and et.size == 1 else f"a list of {n} integers"
                raise OverrideError(f"expected {what} ({name}), got {_show(value)}")
            if len(value) != n:
                raise OverrideError(f"expected a list of {n} integers ({name}), "
                                    f"got {len(value)}: {_show(value)}")
            out = b""
            for i, item in enumerate(value):
                try:
                    out += _scalar(btf, et, ename, item)
                except OverrideError as e:
                    raise OverrideError(e.message, i) from None
            return out
    raise OverrideError(f"cannot set a variable of type {name} (supported: {SUPPORTED})")


def check_override(obj: ObjectSpec, name: str, value: object) -> tuple[Variable, bytes]:
    """Find variable ``name`` and encode ``value`` for it; OverrideError otherwise."""
    vs = variables(obj)
    var = vs.get(name)
    if var is None:
        known = ", ".join(sorted(vs)) or "none"
        raise OverrideError(f"no global variable {_show(name)} in the object (variables: {known})")
    assert obj.btf is not None
    data = encode(obj.btf, var, value)
    if len(data) != var.size:
        raise OverrideError(f"{var.size}-byte variable, value encodes to {len(data)} bytes")
    if var.section.startswith(".rodata") and not var.volatile:
        raise OverrideError(f"{name} is const but not volatile: the compiler may have built its "
                            "value into the code, so an override would change nothing "
                            "(declare it `const volatile`)")
    return var, data


def override_data(obj: ObjectSpec, overrides: Mapping[str, object]) -> dict[str, bytes]:
    """New initial contents of each data map touched by ``overrides`` (section -> bytes)."""
    out: dict[str, bytearray] = {}
    for name, value in overrides.items():
        var, data = check_override(obj, name, value)
        if var.section not in out:
            m = obj.map_by_name(var.section)
            assert m is not None and m.data is not None
            out[var.section] = bytearray(m.data)
        out[var.section][var.offset:var.offset + var.size] = data
    return {k: bytes(v) for k, v in out.items()}


def with_overrides(obj: ObjectSpec, overrides: Mapping[str, object]) -> ObjectSpec:
    """A copy of ``obj`` whose data maps start with the overridden values."""
    if not overrides:
        return obj
    data = override_data(obj, overrides)
    maps = tuple(replace(m, data=data[m.name]) if m.kind == "data" and m.name in data else m
                 for m in obj.maps)
    return replace(obj, maps=maps)
