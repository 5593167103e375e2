"""Assemble one loadable program from an ``ObjectSpec`` (pure).

Places the entry function first, appends every subprogram it reaches (each
entry program gets its own copy), patches call offsets and map / global-data
references with the fds given by the caller, and rebases BTF.ext records to
instruction indexes of the final program.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from dispatcher.errors import ObjectFileError
from dispatcher.obj.btf_ext import CoreReloRec, LineInfoRec
from dispatcher.obj.insn import (
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
    OP_CALL,
    OP_LD_IMM64,
)
from dispatcher.obj.spec import FunctionSpec, ObjectSpec, ProgramSpec, RelocKind, RelocSpec
from dispatcher.record import record


@record
class LinkedProgram:
    """Final instructions plus kernel-ready BTF.ext arrays (insn offsets in instructions,
    CO-RE offsets in bytes)."""

    name: str
    insns: bytes
    func_info: tuple[tuple[int, int], ...]
    line_info: tuple[LineInfoRec, ...]
    core_relos: tuple[CoreReloRec, ...]
    pieces: tuple[tuple[str, int], ...]   # (function name, start insn) in placement order

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8


def link_program(obj: ObjectSpec, prog: ProgramSpec, map_fds: Mapping[str, int]) -> LinkedProgram:
    """Link ``prog`` of ``obj``. ``map_fds`` maps MapSpec.name -> fd (borrowed ints)."""
    try:
        return _Linker(obj, map_fds).link(prog)
    except struct.error as e:   # an offset or immediate that does not fit: a corrupt object
        raise ObjectFileError(f"{obj.path}: program {prog.name}: malformed relocation ({e})") from None


def referenced_maps(obj: ObjectSpec, prog: ProgramSpec) -> list[str]:
    """Names of the maps the program (with its subprograms) references, in first-use order."""
    seen: list[str] = []
    for f in _reachable(obj, prog.function):
        for r in f.relocs:
            if r.kind in (RelocKind.MAP, RelocKind.DATA) and r.map_name not in seen:
                seen.append(r.map_name)
    return seen


def extern_problem(obj: ObjectSpec, prog: ProgramSpec) -> str | None:
    """Why the program (with its subprograms) cannot be linked because it references an
    extern symbol (a kfunc, ksym or kconfig variable, which this loader does not
    resolve), or None. The linker refuses with the same words; ``check`` and ``load``
    ask before any kernel call."""
    for f in _reachable(obj, prog.function):
        for r in f.relocs:
            if r.kind == RelocKind.EXTERN:
                return _extern_msg(r.symbol)
    return None


def _extern_msg(symbol: str) -> str:
    return f"references extern symbol '{symbol}' (kfuncs/ksyms/kconfig are not supported)"


def _call_target(obj: ObjectSpec, f: FunctionSpec, idx: int, insn: bytes,
                 relocs: Mapping[int, RelocSpec]) -> tuple[str, int] | None:
    """(section, section insn index) a pseudo call / func address at ``idx`` points to."""
    code, regs = insn[0], insn[1]
    src = regs >> 4
    is_call = code == OP_CALL and src == BPF_PSEUDO_CALL
    is_func = code == OP_LD_IMM64 and src == BPF_PSEUDO_FUNC
    r = relocs.get(idx)
    if r is not None and r.kind in (RelocKind.CALL, RelocKind.FUNC_ADDR):
        return r.target_section, r.target_insn
    if r is not None and r.kind == RelocKind.EXTERN:
        return None          # a kfunc call: not into this object (see extern_problem)
    if is_call or is_func:
        (imm,) = struct.unpack_from("<i", insn, 4)
        return f.section, f.start + idx + imm + 1
    return None


def _reachable(obj: ObjectSpec, entry: FunctionSpec) -> list[FunctionSpec]:
    order = [entry]
    i = 0
    while i < len(order):
        f = order[i]
        relocs = {r.insn: r for r in f.relocs}
        for idx in range(f.insn_count):
            tgt = _call_target(obj, f, idx, f.insns[idx * 8:idx * 8 + 8], relocs)
            if tgt is None:
                continue
            callee = obj.function_at(*tgt)
            if callee is not None and callee not in order:
                order.append(callee)
        i += 1
    return order


class _Linker:
    def __init__(self, obj: ObjectSpec, map_fds: Mapping[str, int]) -> None:
        self.obj = obj
        self.map_fds = map_fds

    def err(self, prog: ProgramSpec, msg: str) -> ObjectFileError:
        return ObjectFileError(f"{self.obj.path}: program {prog.name}: {msg}")

    def link(self, prog: ProgramSpec) -> LinkedProgram:
        placed: list[tuple[FunctionSpec, int]] = []
        start_of: dict[tuple[str, int], int] = {}
        buf = bytearray()

        def place(f: FunctionSpec) -> int:
            key = (f.section, f.start)
            if key not in start_of:
                start_of[key] = len(buf) // 8
                placed.append((f, start_of[key]))
                buf.extend(f.insns)
            return start_of[key]

        place(prog.function)
        i = 0
        while i < len(placed):
            f, base = placed[i]
            relocs = {r.insn: r for r in f.relocs}
            for idx in range(f.insn_count):
                off = (base + idx) * 8
                insn = bytes(buf[off:off + 8])
                r = relocs.get(idx)
                tgt = _call_target(self.obj, f, idx, insn, relocs)
                if tgt is not None:
                    callee = self.obj.function_at(*tgt)
                    if callee is None:
                        raise self.err(prog, f"{f.name}: call to instruction {tgt[1]} of {tgt[0]}, where no function starts")
                    cstart = place(callee)
                    struct.pack_into("<i", buf, off + 4, cstart - (base + idx) - 1)
                    if insn[0] == OP_LD_IMM64:
                        buf[off + 1] = (buf[off + 1] & 0x0F) | (BPF_PSEUDO_FUNC << 4)
                    continue
                if r is None:
                    continue
                if r.kind == RelocKind.EXTERN:
                    raise self.err(prog, _extern_msg(r.symbol))
                if r.kind in (RelocKind.MAP, RelocKind.DATA):
                    if insn[0] != OP_LD_IMM64 or off + 16 > len(buf):
                        raise self.err(prog, f"map reference at insn {idx} of {f.name} is not ld_imm64")
                    fd = self.map_fds.get(r.map_name)
                    if fd is None:
                        raise self.err(prog, f"map '{r.map_name}' was not created")
                    if r.kind == RelocKind.DATA:
                        m = self.obj.map_by_name(r.map_name)
                        if m is None or not 0 <= r.offset < max(m.value_size, 1):
                            raise self.err(prog, f"reference to offset {r.offset} of {r.map_name}, "
                                                 "outside the section")
                    src = BPF_PSEUDO_MAP_FD if r.kind == RelocKind.MAP else BPF_PSEUDO_MAP_VALUE
                    buf[off + 1] = (buf[off + 1] & 0x0F) | (src << 4)
                    struct.pack_into("<i", buf, off + 4, fd)
                    struct.pack_into("<i", buf, off + 12, r.offset if r.kind == RelocKind.DATA else 0)
            i += 1

        func_info: list[tuple[int, int]] = []
        line_info: list[LineInfoRec] = []
        core: list[CoreReloRec] = []
        ext = self.obj.btf_ext
        if ext is not None:
            for f, base in placed:
                lo, hi = f.start * 8, (f.start + f.insn_count) * 8
                delta = base - f.start
                for fi in ext.func_info.get(f.section, ()):
                    if lo <= fi.insn_off < hi:
                        func_info.append((fi.insn_off // 8 + delta, fi.type_id))
                for li in ext.line_info.get(f.section, ()):
                    if lo <= li.insn_off < hi:
                        line_info.append(LineInfoRec(li.insn_off // 8 + delta, li.file_name_off,
                                                     li.line_off, li.line_col))
                for cr in ext.core_relos.get(f.section, ()):
                    if lo <= cr.insn_off < hi:
                        core.append(CoreReloRec(cr.insn_off + delta * 8, cr.type_id,
                                                cr.access_str_off, cr.kind))
        pieces = tuple((f.name, base) for f, base in placed)
        return LinkedProgram(prog.name, bytes(buf), tuple(func_info), tuple(line_info),
                             tuple(core), pieces)
