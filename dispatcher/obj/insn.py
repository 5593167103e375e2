"""eBPF instructions: the 8-byte encoding, small constructors and a disassembler.

An instruction is ``code:8 | dst:4 | src:4 | off:16 (signed) | imm:32 (signed)``, little-endian,
with ``dst`` in the low nibble of byte 1. A 64-bit immediate load (``code == 0x18``) takes two
slots; the second slot carries the upper 32 bits in its ``imm``.

``disasm`` prints what ``llvm-objdump -d`` of LLVM 14 prints. Where LLVM 14 cannot decode an
instruction the kernel accepts (``%=``, ``if r1 & r2``, store-immediate, 32-bit atomics other than
plain add, and the cpu v4 / load-acquire additions) it uses the syntax of later LLVM releases.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dispatcher.errors import ObjectFileError, XdpDispatchError

# The encoding numbers, re-exported: the codec's users import them from here or from opcodes.
from dispatcher.obj.opcodes import *  # noqa: F403

_S32_MIN = -(1 << 31)
_S32_MAX = (1 << 31) - 1

_STRUCT = struct.Struct("<BBhi")


class InsnError(XdpDispatchError, ValueError):
    """An instruction field out of range (a bug in the code that built it)."""


@dataclass(frozen=True, slots=True)
class Insn:
    """One 8-byte instruction slot. ``off`` is signed 16-bit, ``imm`` signed 32-bit."""

    code: int
    dst: int
    src: int
    off: int
    imm: int

    def __post_init__(self) -> None:
        if not (0 <= self.code <= 0xFF and 0 <= self.dst <= 0xF and 0 <= self.src <= 0xF
                and -0x8000 <= self.off <= 0x7FFF and _S32_MIN <= self.imm <= _S32_MAX):
            raise InsnError(
                f"instruction field out of range: code={self.code!r} dst={self.dst!r} "
                f"src={self.src!r} off={self.off!r} imm={self.imm!r}")

    def to_bytes(self) -> bytes:
        return _STRUCT.pack(self.code, (self.src << 4) | self.dst, self.off, self.imm)

    @property
    def cls(self) -> int:
        return self.code & 0x07

    @property
    def is_ld_imm64(self) -> bool:
        return self.code == OP_LD_IMM64

    @property
    def is_call(self) -> bool:
        return self.code == OP_CALL

    @property
    def is_pseudo_call(self) -> bool:
        """A call of a BPF subprogram (``imm`` = slot distance from the next instruction)."""
        return self.code == OP_CALL and self.src == BPF_PSEUDO_CALL

    @property
    def is_helper_call(self) -> bool:
        return self.code == OP_CALL and self.src == 0

    @property
    def is_kfunc_call(self) -> bool:
        return self.code == OP_CALL and self.src == BPF_PSEUDO_KFUNC_CALL

    @property
    def is_exit(self) -> bool:
        return self.code == OP_EXIT

    @property
    def is_jump(self) -> bool:
        """A pc-relative jump: ``goto``, ``gotol`` or a conditional jump (not call/exit)."""
        cls = self.code & 0x07
        if cls != BPF_JMP and cls != BPF_JMP32:
            return False
        op = self.code & 0xF0
        return op != BPF_CALL and op != BPF_EXIT

    @property
    def is_cond_jump(self) -> bool:
        return self.is_jump and (self.code & 0xF0) != BPF_JA

    @property
    def jump_offset(self) -> int:
        """Slots from the next instruction to the jump target (``imm`` for ``gotol``)."""
        return self.imm if self.code == OP_GOTOL else self.off


def decode(data: bytes) -> list[Insn]:
    """Split raw instruction bytes into slots. An ld_imm64 yields two ``Insn`` entries."""
    if len(data) % INSN_SIZE:
        raise ObjectFileError(
            f"instruction data is {len(data)} bytes long, not a multiple of {INSN_SIZE}")
    return [Insn(code, regs & 0x0F, regs >> 4, off, imm)
            for code, regs, off, imm in _STRUCT.iter_unpack(data)]


def encode(insns: Iterable[Insn]) -> bytes:
    pack = _STRUCT.pack
    return b"".join(pack(i.code, (i.src << 4) | i.dst, i.off, i.imm) for i in insns)


def replace(insn: Insn, **changes: Any) -> Insn:
    return dataclasses.replace(insn, **changes)


def ld_imm64_value(first: Insn, second: Insn) -> int:
    """The unsigned 64-bit immediate of an ld_imm64 pair."""
    return (first.imm & 0xFFFFFFFF) | ((second.imm & 0xFFFFFFFF) << 32)


# --------------------------------------------------------------------------- constructors

def _s32(value: int) -> int:
    """Accept a signed or unsigned 32-bit value, return it signed."""
    if not (_S32_MIN <= value <= 0xFFFFFFFF):
        raise InsnError(f"immediate {value} does not fit in 32 bits")
    return value - (1 << 32) if value > _S32_MAX else value


def mov64_reg(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)


def mov64_imm(dst: int, imm: int) -> Insn:
    """``dst = imm`` (the 32-bit immediate is sign-extended to 64 bits)."""
    return Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, _s32(imm))


def mov32_reg(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)


def mov32_imm(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, _s32(imm))


def alu64_reg(op: int, dst: int, src: int) -> Insn:
    return Insn(BPF_ALU64 | op | BPF_X, dst, src, 0, 0)


def alu64_imm(op: int, dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | op | BPF_K, dst, 0, 0, _s32(imm))


def alu32_reg(op: int, dst: int, src: int) -> Insn:
    return Insn(BPF_ALU | op | BPF_X, dst, src, 0, 0)


def alu32_imm(op: int, dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU | op | BPF_K, dst, 0, 0, _s32(imm))


def ld_imm64(dst: int, src: int, imm_lo: int, imm_hi: int = 0) -> tuple[Insn, Insn]:
    return (Insn(OP_LD_IMM64, dst, src, 0, _s32(imm_lo)), Insn(0, 0, 0, 0, _s32(imm_hi)))


def ld_map_fd(dst: int, fd: int) -> tuple[Insn, Insn]:
    return ld_imm64(dst, BPF_PSEUDO_MAP_FD, fd)


def call_helper(helper_id: int) -> Insn:
    return Insn(OP_CALL, 0, 0, 0, _s32(helper_id))


def call_pseudo(rel: int) -> Insn:
    """Call of the subprogram starting ``rel + 1`` slots after this instruction."""
    return Insn(OP_CALL, 0, BPF_PSEUDO_CALL, 0, _s32(rel))


def call_kfunc(btf_id: int, btf_fd_idx: int = 0) -> Insn:
    return Insn(OP_CALL, 0, BPF_PSEUDO_KFUNC_CALL, btf_fd_idx, _s32(btf_id))


def jmp_imm(op: int, dst: int, imm: int, off: int) -> Insn:
    return Insn(BPF_JMP | op | BPF_K, dst, 0, off, _s32(imm))


def jmp_reg(op: int, dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_JMP | op | BPF_X, dst, src, off, 0)


def jmp32_imm(op: int, dst: int, imm: int, off: int) -> Insn:
    return Insn(BPF_JMP32 | op | BPF_K, dst, 0, off, _s32(imm))


def jmp32_reg(op: int, dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_JMP32 | op | BPF_X, dst, src, off, 0)


def ja(off: int) -> Insn:
    return Insn(OP_JA, 0, 0, off, 0)


def exit_insn() -> Insn:
    return Insn(OP_EXIT, 0, 0, 0, 0)


def ldx_mem(size: int, dst: int, src: int, off: int) -> Insn:
    """``dst = *(size *)(src + off)``"""
    return Insn(BPF_LDX | BPF_MEM | size, dst, src, off, 0)


def stx_mem(size: int, dst: int, src: int, off: int) -> Insn:
    """``*(size *)(dst + off) = src``"""
    return Insn(BPF_STX | BPF_MEM | size, dst, src, off, 0)


def st_mem(size: int, dst: int, off: int, imm: int) -> Insn:
    """``*(size *)(dst + off) = imm``"""
    return Insn(BPF_ST | BPF_MEM | size, dst, 0, off, _s32(imm))


def atomic_op(size: int, op: int, dst: int, src: int, off: int) -> Insn:
    """Atomic read-modify-write of ``*(size *)(dst + off)``; ``op`` goes to ``imm``."""
    return Insn(BPF_STX | BPF_ATOMIC | size, dst, src, off, _s32(op))


# --------------------------------------------------------------------------- disassembler

_ALU_OPS: dict[int, str] = {
    BPF_ADD: "+=", BPF_SUB: "-=", BPF_MUL: "*=", BPF_DIV: "/=", BPF_OR: "|=", BPF_AND: "&=",
    BPF_LSH: "<<=", BPF_RSH: ">>=", BPF_MOD: "%=", BPF_XOR: "^=", BPF_MOV: "=",
    BPF_ARSH: "s>>=",
}
_JMP_OPS: dict[int, str] = {
    BPF_JEQ: "==", BPF_JGT: ">", BPF_JGE: ">=", BPF_JSET: "&", BPF_JNE: "!=", BPF_JSGT: "s>",
    BPF_JSGE: "s>=", BPF_JLT: "<", BPF_JLE: "<=", BPF_JSLT: "s<", BPF_JSLE: "s<=",
}
_SIZE_BITS: dict[int, int] = {BPF_B: 8, BPF_H: 16, BPF_W: 32, BPF_DW: 64}
_ATOMIC_RMW: dict[int, tuple[str, str]] = {
    BPF_ADD: ("+=", "add"), BPF_OR: ("|=", "or"), BPF_AND: ("&=", "and"),
    BPF_XOR: ("^=", "xor"),
}


def _unknown(insn: Insn) -> str:
    return f"<unknown 0x{insn.code:02x}>"


def _addr(reg: int, off: int) -> str:
    return f"r{reg} + {off}" if off >= 0 else f"r{reg} - {-off}"


def _disasm_alu(insn: Insn) -> str:
    code, dst, src, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    r = "r" if code & 0x07 == BPF_ALU64 else "w"
    op = code & 0xF0
    if op == BPF_NEG:
        return _unknown(insn) if code & BPF_X else f"{r}{dst} = -{r}{dst}"
    if op == BPF_END:
        if imm not in (16, 32, 64):
            return _unknown(insn)
        if r == "w":
            kind = "be" if code & BPF_TO_BE else "le"
        elif code & BPF_X:
            return _unknown(insn)
        else:
            kind = "bswap"
        return f"r{dst} = {kind}{imm} r{dst}"
    sym = _ALU_OPS.get(op)
    if sym is None:
        return _unknown(insn)
    rhs = f"{r}{src}" if code & BPF_X else str(imm)
    if op == BPF_MOV and code & BPF_X and off in (8, 16, 32):
        if off == 32 and r == "w":
            return _unknown(insn)
        rhs = f"(s{off}){rhs}"
    elif op in (BPF_DIV, BPF_MOD) and off == 1:
        sym = "s" + sym
    return f"{r}{dst} {sym} {rhs}"


def _disasm_jmp(insn: Insn) -> str:
    code, dst, src, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    jmp64 = code & 0x07 == BPF_JMP
    op = code & 0xF0
    if op == BPF_JA:
        if code & BPF_X:
            return _unknown(insn)
        return f"goto {off:+d}" if jmp64 else f"gotol {imm:+d}"
    if op == BPF_CALL:
        if not jmp64:
            return _unknown(insn)
        if code & BPF_X:
            # LLVM 14 encodes the register of an indirect call in imm (the kernel has no callx).
            return f"callx r{imm}" if 0 <= imm <= 15 else _unknown(insn)
        return f"call {imm}"
    if op == BPF_EXIT:
        return "exit" if code == OP_EXIT else _unknown(insn)
    sym = _JMP_OPS.get(op)
    if sym is None:
        return _unknown(insn)
    r = "r" if jmp64 else "w"
    rhs = f"{r}{src}" if code & BPF_X else str(imm)
    return f"if {r}{dst} {sym} {rhs} goto {off:+d}"


def _disasm_mem(insn: Insn) -> str:
    code, dst, src, off, imm = insn.code, insn.dst, insn.src, insn.off, insn.imm
    cls = code & 0x07
    size = code & 0x18
    mode = code & 0xE0
    bits = _SIZE_BITS[size]
    if cls == BPF_LDX:
        if mode == BPF_MEM:
            return f"r{dst} = *(u{bits} *)({_addr(src, off)})"
        if mode == BPF_MEMSX and size != BPF_DW:
            return f"r{dst} = *(s{bits} *)({_addr(src, off)})"
        return _unknown(insn)
    if cls == BPF_ST:
        if mode == BPF_MEM:
            return f"*(u{bits} *)({_addr(dst, off)}) = {imm}"
        return _unknown(insn)
    if cls == BPF_STX:
        if mode == BPF_MEM:
            return f"*(u{bits} *)({_addr(dst, off)}) = r{src}"
        if mode == BPF_ATOMIC:
            return _disasm_atomic(insn, bits)
        return _unknown(insn)
    # BPF_LD: legacy packet access (ld_imm64 is handled by the caller)
    if size != BPF_DW:
        if mode == BPF_ABS:
            return f"r0 = *(u{bits} *)skb[{imm}]"
        if mode == BPF_IND:
            return f"r0 = *(u{bits} *)skb[r{src}]"
    return _unknown(insn)


def _disasm_atomic(insn: Insn, bits: int) -> str:
    dst, src, imm = insn.dst, insn.src, insn.imm
    addr = _addr(dst, insn.off)
    r = "r" if bits == 64 else "w"
    if imm == BPF_LOAD_ACQ:
        return f"{r}{src} = load_acquire((u{bits} *)({addr}))"
    if imm == BPF_STORE_REL:
        return f"store_release((u{bits} *)({addr}), {r}{src})"
    if bits < 32:
        return _unknown(insn)
    sfx = "_64" if bits == 64 else "32_32"
    if imm == BPF_XCHG:
        return f"{r}{src} = xchg{sfx}({addr}, {r}{src})"
    if imm == BPF_CMPXCHG:
        return f"{r}0 = cmpxchg{sfx}({addr}, {r}0, {r}{src})"
    rmw = _ATOMIC_RMW.get(imm & ~BPF_FETCH)
    if rmw is None:
        return _unknown(insn)
    if imm & BPF_FETCH:
        return f"{r}{src} = atomic_fetch_{rmw[1]}((u{bits} *)({addr}), {r}{src})"
    # LLVM 14 prints the 32-bit plain add with an r register; the other ops need its alu32 mode.
    reg = "r" if imm == BPF_ADD else r
    return f"lock *(u{bits} *)({addr}) {rmw[0]} {reg}{src}"


def disasm_one(insn: Insn, next_insn: Insn | None = None) -> str:
    """Text of one instruction; an ld_imm64 needs its second slot as ``next_insn``."""
    cls = insn.code & 0x07
    if cls == BPF_ALU or cls == BPF_ALU64:
        return _disasm_alu(insn)
    if cls == BPF_JMP or cls == BPF_JMP32:
        return _disasm_jmp(insn)
    if insn.code == OP_LD_IMM64:
        if next_insn is None:
            return _unknown(insn)
        if insn.src:
            return f"ld_pseudo r{insn.dst}, {insn.src}, {insn.imm & 0xFFFFFFFF}"
        value = ld_imm64_value(insn, next_insn)
        if value >> 63:
            value -= 1 << 64
        return f"r{insn.dst} = {value} ll"
    return _disasm_mem(insn)


def disasm(insns: Sequence[Insn]) -> list[tuple[int, str]]:
    """``(slot index, text)`` per instruction; an ld_imm64 pair gives one entry."""
    out: list[tuple[int, str]] = []
    n = len(insns)
    i = 0
    while i < n:
        insn = insns[i]
        if insn.code == OP_LD_IMM64 and i + 1 < n:
            out.append((i, disasm_one(insn, insns[i + 1])))
            i += 2
            continue
        out.append((i, disasm_one(insn)))
        i += 1
    return out


def format_insn_bytes(insn: Insn) -> str:
    """The 8 bytes as ``llvm-objdump`` shows them: ``b7 00 00 00 02 00 00 00``."""
    return insn.to_bytes().hex(" ")
