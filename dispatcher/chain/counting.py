"""The counting code chains generate (pure): instruction sequences, no I/O.

``count_block`` is the one implementation of the rule "after a component returned, add
one packet and its bytes to its (component, action) cell of a per-CPU array": a linked
chain's main runs it after each call (the packet is its XDP context), and a freplace
chain's fexit programs run it after each component (the packet is the kernel's
``struct xdp_buff``; see ``fexit_program``).

fexit/fentry programs (freplace chains, ``dispatcher.chain.fexit``): one
fexit program per component, ``BPF_PROG_TYPE_TRACING`` / ``BPF_TRACE_FEXIT`` attached to
the component's entry function (the component is a ``BPF_PROG_TYPE_EXT`` program, which
the kernel lets tracing programs attach to). Its context is the u64 argument array: the
entry's one argument (the ``xdp_md`` pointer, which the kernel hands a tracing program
as its ``struct xdp_buff``) at 0 and the return value at 8. Each component has its own
per-CPU array (layout: ``chain.stats``, "freplace chains").
"""

from __future__ import annotations

from dispatcher.chain import stats as chain_stats
from dispatcher.obj import insn as I
from dispatcher.uapi import BPF_FUNC_ktime_get_ns, BPF_FUNC_map_lookup_elem

# struct xdp_buff (include/net/xdp.h, not UAPI): what a tracing program attached to an XDP
# program gets for its context argument; its first two members, unchanged since XDP began
XDP_BUFF_DATA = 0            # void *data
XDP_BUFF_DATA_END = 8        # void *data_end

COUNT_INSNS = 22                 # count_block's length (asserted)
TIME_KEY = chain_stats.TIME_KEY
START_KEY = chain_stats.START_KEY
FEXIT_PROG_NAME = "xdpd_fexit"
FENTRY_PROG_NAME = "xdpd_fentry"
LICENSE = "GPL"                  # the kernel lets only GPL-compatible tracing programs run


def xdp_md_length() -> list[I.Insn]:
    """r2 = data_end - data of the XDP context in r6 (``struct xdp_md``)."""
    return [I.ldx_mem(I.BPF_W, 2, 6, 4), I.ldx_mem(I.BPF_W, 3, 6, 0),
            I.alu64_reg(I.BPF_SUB, 2, 3)]


def xdp_buff_length() -> list[I.Insn]:
    """r2 = data_end - data of the kernel's ``struct xdp_buff`` pointed to by r6."""
    return [I.ldx_mem(I.BPF_DW, 2, 6, XDP_BUFF_DATA_END),
            I.ldx_mem(I.BPF_DW, 3, 6, XDP_BUFF_DATA), I.alu64_reg(I.BPF_SUB, 2, 3)]


def count_block(base: int, map_fd: int, key_off: int, length: list[I.Insn]) -> list[I.Insn]:
    """Verdict in r0, packet in r6: add one packet and ``length``'s bytes to key
    ``base + action`` of the per-CPU map ``map_fd`` (action 0..4, anything else counts as
    ``OTHER``). The verdict is kept in r7 across the lookup and put back in r0; a NULL
    lookup skips the counting; the key lives at ``key_off`` below r10."""
    out = [
        I.mov64_reg(7, 0),
        I.mov32_reg(2, 0),                                   # w2 = verdict (zero-extended)
        I.jmp_imm(I.BPF_JLE, 2, chain_stats.OTHER - 1, 1),
        I.mov32_imm(2, chain_stats.OTHER),
        I.alu32_imm(I.BPF_ADD, 2, base),
        I.stx_mem(I.BPF_W, 10, 2, key_off),
        I.mov64_reg(2, 10),
        I.alu64_imm(I.BPF_ADD, 2, key_off),
        *I.ld_imm64(1, I.BPF_PSEUDO_MAP_FD, map_fd),
        I.call_helper(BPF_FUNC_map_lookup_elem),
        I.jmp_imm(I.BPF_JEQ, 0, 0, 9),
        I.ldx_mem(I.BPF_DW, 1, 0, 0),
        I.alu64_imm(I.BPF_ADD, 1, 1),
        I.stx_mem(I.BPF_DW, 0, 1, 0),                        # packets += 1 (this CPU's)
        *length,                                             # r2 = bytes
        I.ldx_mem(I.BPF_DW, 1, 0, 8),
        I.alu64_reg(I.BPF_ADD, 1, 2),
        I.stx_mem(I.BPF_DW, 0, 1, 8),                        # bytes += r2
        I.mov64_reg(0, 7),
    ]
    assert len(out) == COUNT_INSNS, len(out)
    return out


def _lookup(map_fd: int, key: int, key_off: int = -4) -> list[I.Insn]:
    """r0 = &cell ``key`` of ``map_fd`` (or NULL); clobbers r1..r5."""
    return [I.st_mem(I.BPF_W, 10, key_off, key), I.mov64_reg(2, 10),
            I.alu64_imm(I.BPF_ADD, 2, key_off), *I.ld_imm64(1, I.BPF_PSEUDO_MAP_FD, map_fd),
            I.call_helper(BPF_FUNC_map_lookup_elem)]


def fentry_program(map_fd: int) -> bytes:
    """Timing: store this CPU's clock in the component's ``START_KEY`` cell."""
    out = [I.call_helper(BPF_FUNC_ktime_get_ns), I.mov64_reg(6, 0),
           *_lookup(map_fd, START_KEY), I.jmp_imm(I.BPF_JEQ, 0, 0, 1),
           I.stx_mem(I.BPF_DW, 0, 6, 0), I.mov64_imm(0, 0), I.exit_insn()]
    return I.encode(out)


def fexit_program(map_fd: int, timing: bool) -> bytes:
    """Count the component's verdict and bytes (``count_block``, base 0); with
    ``timing``, first add (clock - the fentry's reading, 1) to ``TIME_KEY``. Returns 0
    (the kernel requires it of fexit programs)."""
    out: list[I.Insn] = [I.mov64_reg(6, 1)]                  # r6 = the argument array
    if timing:
        timed: list[I.Insn] = [
            I.call_helper(BPF_FUNC_ktime_get_ns), I.mov64_reg(8, 0),       # r8 = now
            *_lookup(map_fd, START_KEY), I.jmp_imm(I.BPF_JEQ, 0, 0, -1),   # -> count
            I.ldx_mem(I.BPF_DW, 9, 0, 0), I.jmp_imm(I.BPF_JEQ, 9, 0, -1),  # no start: skip
            I.st_mem(I.BPF_DW, 0, 0, 0),                                   # used up
            I.alu64_reg(I.BPF_SUB, 8, 9),                                  # r8 = elapsed
            *_lookup(map_fd, TIME_KEY), I.jmp_imm(I.BPF_JEQ, 0, 0, -1),
            I.ldx_mem(I.BPF_DW, 1, 0, 0), I.alu64_reg(I.BPF_ADD, 1, 8),
            I.stx_mem(I.BPF_DW, 0, 1, 0),
            I.ldx_mem(I.BPF_DW, 1, 0, 8), I.alu64_imm(I.BPF_ADD, 1, 1),
            I.stx_mem(I.BPF_DW, 0, 1, 8),
        ]
        end = len(timed)
        for k, ins in enumerate(timed):      # every forward exit goes to the counting
            if ins.code == I.BPF_JMP | I.BPF_JEQ | I.BPF_K and ins.off == -1:
                timed[k] = I.replace(ins, off=end - k - 1)
        out += timed
    out += [I.ldx_mem(I.BPF_DW, 0, 6, 8),                    # r0 = the verdict
            I.ldx_mem(I.BPF_DW, 6, 6, 0),                    # r6 = struct xdp_buff *
            *count_block(0, map_fd, -4, xdp_buff_length()),
            I.mov64_imm(0, 0), I.exit_insn()]
    return I.encode(out)
