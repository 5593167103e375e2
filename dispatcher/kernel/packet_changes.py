"""Which programs change packet data, as the kernel judges it, and which kernels care.

Kernels from 6.13 (and the 6.12 stable series from 6.12.26) refuse an extension that
changes packet data in place of a function that does not; libxdp's stubs make a no-op
packet-changing call from 1.5.5 on. ``status`` reads a freplace chain's components with
this module, so it stays light: raw instructions, no instruction codec, no probe registry.
"""

from __future__ import annotations

import os
import re
import struct

from dispatcher import caches, uapi
from dispatcher.kernel import bpf
from dispatcher.obj.opcodes import BPF_ALU64, BPF_K, BPF_MOV, BPF_X, OP_CALL, OP_EXIT

#: The XDP helpers the kernel counts as changing packet data (bpf_helper_changes_pkt_data).
HELPERS = (uapi.BPF_FUNC_xdp_adjust_head, uapi.BPF_FUNC_xdp_adjust_meta,
           uapi.BPF_FUNC_xdp_adjust_tail)
_INSN = struct.Struct("<BBhi")
_calls: list[frozenset[int]] = []
caches.register("kernel.packet_changes.calls", _calls.clear)


def kernel_checks(release: str | None = None) -> bool:
    """Whether the kernel (``release``, default the running one) refuses an extension that
    changes packet data in place of a function that does not (by release number: other
    stable backports are not known)."""
    nums = [int(n) for n in re.findall(r"\d+", release or os.uname().release)[:3]]
    v = tuple(nums + [0] * (3 - len(nums)))
    return v >= (6, 13, 0) or (v[:2] == (6, 12) and v[2] >= 26)


def helper_calls(insns: bytes) -> list[int]:
    """The immediates of the helper calls (``call imm``, source register 0) in ``insns``."""
    return [imm for code, regs, _off, imm in _INSN.iter_unpack(insns[:len(insns) // 8 * 8])
            if code == OP_CALL and regs >> 4 == 0]


def _insn(code: int, dst: int = 0, src: int = 0, imm: int = 0) -> bytes:
    return _INSN.pack(code, src << 4 | dst, 0, imm)


def calls() -> frozenset[int]:
    """How xlated code (``bpf.prog_xlated_insns``) spells a call to each of ``HELPERS``:
    the kernel rewrites a helper call's immediate to the helper's address, so ask it, with
    a program that calls the three. Empty when the kernel hides those addresses (zero or
    equal immediates). KernelError if the kernel refuses the program."""
    if not _calls:
        mov_x, mov_k = BPF_ALU64 | BPF_MOV | BPF_X, BPF_ALU64 | BPF_MOV | BPF_K
        body = _insn(mov_x, 6, 1)                                 # r6 = ctx
        for helper in HELPERS:                                     # helper(ctx, 0)
            body += _insn(mov_x, 1, 6) + _insn(mov_k, 2) + _insn(OP_CALL, imm=helper)
        body += _insn(mov_k, 0, imm=uapi.XDP_PASS) + _insn(OP_EXIT)
        with bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, body, "GPL", name="probe_pkt") as p:
            found = helper_calls(bpf.prog_xlated_insns(p.fd))
        _calls.append(frozenset(found) if len(set(found)) == len(HELPERS) and 0 not in found
                      else frozenset())
    return _calls[0]


def changes_packets(fd: int, known: frozenset[int]) -> bool:
    """Whether program ``fd`` calls one of ``HELPERS`` (``known``: ``calls()``)."""
    return not known.isdisjoint(helper_calls(bpf.prog_xlated_insns(fd)))
