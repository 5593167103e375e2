"""Combine several XDP programs into ONE program: the linked dispatcher (pure, no I/O).

Layout of the result::

    [ xdp_chain (generated main) ][ comp0 entry ][ comp0 subprogs ][ comp1 entry ] ...

Main keeps ctx in r6, references the description map with its 2nd instruction (so the
map lives exactly as long as the program and is ``map_ids[0]``), and per slot calls the
component's entry as a bpf-to-bpf subprogram, then applies the chain-call bitmap:
continue only if bit ``verdict`` is set, otherwise return the verdict; XDP_PASS after the
last slot. Each component is linked by ``link.link_program`` with its own maps.

BTF ("hybrid"): a generated part for main, then each component's BTF shifted; the
component ENTRY FUNC becomes static (verified as part of main's call, like a main
program), its own global subprograms stay global. Without BTF on every component the
chain is loaded without program BTF ("none"), which rules out callbacks and tail calls.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

from dispatcher.chain import stats as chain_stats
from dispatcher.chain.description import (
    DESC_MAP_NAME,
    MODE,
    ChainDescription,
    SlotDescription,
)
from dispatcher.record import record
from dispatcher.uapi import (
    BPF_F_XDP_HAS_FRAGS,
    BPF_PROG_TYPE_XDP,
    BPF_XDP,
    XDP_PASS,
    BPF_FUNC_map_lookup_elem,
)

__all__ = ["DESC_MAP_NAME", "MODE", "PROGRAM_NAME", "CombinedProgram", "ComponentCheck",
           "LinkComponent", "LinkError", "Slot", "check_components", "combine",
           "StatsLink", "description", "inline_plan", "main_layout", "MainLayout", "description_btf", "main_btf", "main_insn_count",
           "sort_components"]
from dispatcher.chain.protocol import SortKey, sort_key
from dispatcher.errors import ObjectFileError
from dispatcher.obj import insn as I
from dispatcher.obj.btf import (
    FUNC_GLOBAL,
    FUNC_STATIC,
    VAR_GLOBAL_ALLOCATED,
    Btf,
    BtfArray,
    BtfKind,
    BtfMember,
    BtfParam,
    BtfType,
    BtfVarSecinfo,
)
from dispatcher.obj.btf_ext import CoreReloRec, LineInfoRec
from dispatcher.obj.link import LinkedProgram, link_program, referenced_maps
from dispatcher.obj.spec import (
    ObjectSpec,
    ProgramSpec,
    actions_to_names,
)

PROGRAM_NAME = "xdp_chain"             # never "xdp_dispatcher" (libxdp would misread it)
DESC_VAR_NAME = "bpf_metadata_xdp_chain"

MAX_COMPONENTS = 10
MAX_FRAMES = 8                          # kernel MAX_CALL_FRAMES; main takes one
MAX_COMPONENT_FRAMES = MAX_FRAMES - 1
MAX_STACK = 512
MAIN_FRAME_STACK = 32                   # older kernels round every frame (even 0 bytes) to 32
MAX_MAPS = 64
MAX_SUBPROGS = 256
MAX_INSNS = 1_000_000
HELPER_TAIL_CALL = 12
MAX_INLINE_INSNS = 0x7FFF               # an inlined exit becomes a 16-bit-offset goto

_GPL_COMPATIBLE = {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL",
                   "Dual MIT/GPL", "Dual MPL/GPL"}


class LinkError(ObjectFileError):
    """A component cannot be part of a linked chain (names the component)."""


@record
class LinkComponent:
    """One chain member as given to the combiner."""

    obj: ObjectSpec
    prog: ProgramSpec
    label: str
    priority: int
    actions: int                        # chain-call bitmap, bit N = continue on action N
    sha256: str = ""                    # of the object file (hex prefix), for the description
    kept_slot: int = -1                 # slot in the chain being rebuilt; -1 = new
    pin_dir: str = ""                   # where its pinned maps live ("" = the default root)
    settings: str = ""                  # load-time overrides (config files), kept for rebuilds
    source: str = ""                    # the config file managing this slot, if any

    @property
    def frags(self) -> bool:
        return self.prog.frags

    def sort_key(self) -> tuple[object, ...]:
        kept = self.kept_slot >= 0
        return sort_key(SortKey(self.priority, self.prog.name, kept,
                                0 if kept else self.prog.function.insn_count,
                                load_time=self.kept_slot if kept else 0))

    def where(self) -> str:
        return f"{self.label} ({self.obj.path})"


def sort_components(comps: Sequence[LinkComponent]) -> list[LinkComponent]:
    """libxdp's order (protocol.sort_key); kept components keep their relative order."""
    return sorted(comps, key=lambda c: c.sort_key())


@record
class ComponentCheck:
    """What the up-front checks measured for one component."""

    label: str
    insns: int
    functions: int
    frames: int                         # deepest call chain, in frames, entry included
    stack: int                          # bytes along the deepest-stack call chain (rounded)
    maps: int
    has_btf: bool
    uses_callbacks: bool
    uses_tail_calls: bool
    entry_stack: int = 0                # bytes the entry function's own frame touches
    below_entry: int = 0                # stack along the deepest call chain below the entry
    entry_insns: int = 0                # length of the entry function
    inline_problem: str = ""            # why the entry cannot be inlined into main ("" = can)


def _fake_fds(obj: ObjectSpec, prog: ProgramSpec) -> dict[str, int]:
    return dict.fromkeys(referenced_maps(obj, prog), 0x7FFF)


def _functions(lp: LinkedProgram) -> list[tuple[str, int, int]]:
    starts = sorted(s for _n, s in lp.pieces)
    names = {s: n for n, s in lp.pieces}
    ends = starts[1:] + [lp.insn_count]
    return [(names[s], s, e) for s, e in zip(starts, ends, strict=True)]


def _stack_depth(insns: bytes, s: int, e: int) -> int:
    """Bytes of stack function [s, e) touches below r10: direct r10-relative accesses and
    pointers derived from r10 (``rX = r10; rX += K``, then used with an offset or passed
    on). A linear scan; the kernel's verifier remains the judge of the real frame."""
    depth = 0
    derived: dict[int, int] = {}            # register -> its offset from r10
    k = s
    while k < e:
        code, regs, off, imm = struct.unpack_from("<BBhi", insns, k * 8)
        dst, src = regs & 0xF, regs >> 4
        cls = code & 7
        if cls in (I.BPF_LDX, I.BPF_ST, I.BPF_STX):
            base = src if cls == I.BPF_LDX else dst
            at = 0 if base == 10 else derived.get(base)
            if at is not None:
                depth = max(depth, -(at + off))
            if cls == I.BPF_LDX:
                derived.pop(dst, None)
        elif cls in (I.BPF_ALU64, I.BPF_ALU) or code == I.OP_LD_IMM64:
            op = code & 0xF0
            if cls == I.BPF_ALU64 and op == I.BPF_MOV and code & I.BPF_X and src == 10 \
                    and off == 0:
                derived[dst] = 0
            elif cls == I.BPF_ALU64 and op == I.BPF_MOV and code & I.BPF_X and src in derived \
                    and off == 0:
                derived[dst] = derived[src]
            elif cls == I.BPF_ALU64 and op in (I.BPF_ADD, I.BPF_SUB) and not code & I.BPF_X \
                    and dst in derived:
                derived[dst] += imm if op == I.BPF_ADD else -imm
                depth = max(depth, -derived[dst])
            else:
                derived.pop(dst, None)
        elif code == I.OP_CALL:
            for r in range(6):
                derived.pop(r, None)
        k += 2 if code == I.OP_LD_IMM64 else 1
    return depth


def _frame(depth: int) -> int:
    """A frame's size as the kernel counts it against the 512-byte limit (older kernels
    round every frame, even an empty one, up to 32 bytes)."""
    return ((max(depth, 1) + 31) // 32) * 32


def _analyse(c: LinkComponent, lp: LinkedProgram) -> ComponentCheck:
    funcs = _functions(lp)
    start_idx = {s: i for i, (_n, s, _e) in enumerate(funcs)}
    depth = [_stack_depth(lp.insns, s, e) for _n, s, e in funcs]
    edges: list[set[int]] = [set() for _ in funcs]
    callbacks = tail_calls = False
    for fi, (_name, s, e) in enumerate(funcs):
        k = s
        while k < e:
            code, regs, off, imm = struct.unpack_from("<BBhi", lp.insns, k * 8)
            src = regs >> 4
            if code == I.OP_CALL and src == I.BPF_PSEUDO_CALL or (
                    code == I.OP_LD_IMM64 and src == I.BPF_PSEUDO_FUNC):
                callbacks |= code == I.OP_LD_IMM64
                tgt = start_idx.get(k + imm + 1)
                if tgt is None:
                    raise LinkError(f"{c.where()}: call at instruction {k} does not land on a "
                                    "function start")
                edges[fi].add(tgt)
            if code == I.OP_CALL and src == 0 and imm == HELPER_TAIL_CALL:
                tail_calls = True
            k += 2 if code == I.OP_LD_IMM64 else 1

    frames_memo: dict[int, tuple[int, int]] = {}
    visiting: set[int] = set()

    def walk(f: int) -> tuple[int, int]:
        if f in frames_memo:
            return frames_memo[f]
        if f in visiting:
            raise LinkError(f"{c.where()}: function {funcs[f][0]} is recursive, which BPF "
                            "does not allow")
        visiting.add(f)
        fr, st = 0, 0
        for t in edges[f]:
            a, b = walk(t)
            fr, st = max(fr, a), max(st, b)
        visiting.discard(f)
        frames_memo[f] = (fr + 1, st + _frame(depth[f]))
        return frames_memo[f]

    frames, stack = walk(0)
    has_btf = (c.obj.btf is not None and c.obj.btf_ext is not None
               and len(lp.func_info) == len(funcs))
    below = max((walk(t)[1] for t in edges[0]), default=0)
    entry_len = funcs[1][1] if len(funcs) > 1 else lp.insn_count
    problem = ""
    if any(0 in ed for ed in edges):
        problem = ("its entry function is also called (or used as a callback) by its own "
                   "subprograms")
    elif entry_len > MAX_INLINE_INSNS:
        problem = (f"its entry function has {entry_len} instructions; inlined exits jump at "
                   f"most {MAX_INLINE_INSNS}")
    return ComponentCheck(c.label, lp.insn_count, len(funcs), frames, stack,
                          len(referenced_maps(c.obj, c.prog)), has_btf, callbacks, tail_calls,
                          depth[0], below, entry_len, problem)


def _check_licenses(comps: Sequence[LinkComponent]) -> None:
    """A chain is one program with one license (``chain_license``): a component without
    any license next to a GPL one would make the chain non-GPL, and the kernel would then
    refuse the GPL component's GPL-only helper calls with a verifier error that names the
    GPL component. Refuse up front, naming the component that has no license."""
    gpl = next((c for c in comps if c.obj.license in _GPL_COMPATIBLE), None)
    if gpl is None:
        return          # no GPL component: the chain's license is what each would have alone
    for c in comps:
        if not c.obj.license:
            raise LinkError(f"{c.where()}: program {c.prog.name} has no license (no "
                            f"\"license\" section); linked with GPL component {gpl.label}, the "
                            "chain would not be GPL-compatible and the kernel would refuse "
                            "its GPL-only helper calls (add char _license[] SEC(\"license\") = "
                            "\"GPL\"; or a compatible license to its source)")


def check_components(comps: Sequence[LinkComponent], stats: bool = False
                     ) -> tuple[str, list[ComponentCheck]]:
    """Up-front checks (no kernel needed). Returns (BTF mode, per-component measures) or
    raises ``LinkError`` naming the component that does not fit. ``stats``: the chain
    also references its stats map and counts in main."""
    if not comps:
        raise LinkError("a linked chain needs at least one component")
    if len(comps) > MAX_COMPONENTS:
        raise LinkError(f"{len(comps)} programs requested; a linked chain holds at most "
                        f"{MAX_COMPONENTS} (like libxdp's dispatcher)")
    _check_licenses(comps)
    checks = []
    for c in comps:
        p = c.prog
        if p.prog_type != BPF_PROG_TYPE_XDP or p.expected_attach_type not in (0, BPF_XDP):
            raise LinkError(f"{c.where()}: program {p.name} (section {p.section}) is not a plain "
                            "XDP program (devmap/cpumap/freplace programs cannot be linked)")
        try:
            lp = link_program(c.obj, p, _fake_fds(c.obj, p))
        except ObjectFileError as e:
            raise LinkError(f"{c.where()}: {e.message}") from None
        ck = _analyse(c, lp)
        if ck.frames > MAX_COMPONENT_FRAMES:
            raise LinkError(f"{c.where()}: its calls nest {ck.frames} frames deep; a linked "
                            f"component may use at most {MAX_COMPONENT_FRAMES} (the kernel allows "
                            f"{MAX_FRAMES} and the chain's main function takes one)")
        if ck.stack + MAIN_FRAME_STACK > MAX_STACK:
            raise LinkError(f"{c.where()}: its call chain uses {ck.stack} bytes of stack; linked "
                            f"below the chain's main frame ({MAIN_FRAME_STACK} bytes on older "
                            f"kernels) that exceeds the kernel's {MAX_STACK}-byte limit")
        checks.append(ck)
    mode = "hybrid" if all(ck.has_btf for ck in checks) else "none"
    if mode == "none":
        no_btf = next(ck.label for ck in checks if not ck.has_btf)
        for c, ck in zip(comps, checks, strict=True):
            what = ("bpf_loop-style callbacks" if ck.uses_callbacks else
                    "tail calls" if ck.uses_tail_calls else
                    "CO-RE relocations" if c.obj.btf_ext and c.obj.btf_ext.core_relos else "")
            if what:
                raise LinkError(f"{c.where()}: uses {what}, which need program BTF, but "
                                f"component {no_btf} has no BTF/func_info, so the chain is "
                                "linked without BTF")
    total_funcs = 1 + sum(ck.functions for ck in checks)
    if total_funcs > MAX_SUBPROGS:
        raise LinkError(f"the chain would have {total_funcs} functions; the kernel allows "
                        f"{MAX_SUBPROGS} per program (largest: "
                        f"{max(checks, key=lambda k: k.functions).label})")
    total_maps = 1 + int(stats) + sum(ck.maps for ck in checks)
    if total_maps > MAX_MAPS:
        raise LinkError(f"the chain would reference {total_maps} maps (with its description "
                        f"map); the kernel allows {MAX_MAPS} per program (most: "
                        f"{max(checks, key=lambda k: k.maps).label} with "
                        f"{max(ck.maps for ck in checks)})")
    total = main_insn_count(len(comps), stats) + sum(ck.insns for ck in checks)
    if total > MAX_INSNS:
        raise LinkError(f"the chain would have {total} instructions; the kernel allows "
                        f"{MAX_INSNS}")
    return mode, checks


# ------------------------------------------------------------------ main function

SLOT_INSNS = 6                  # per slot without stats: call + chain-call test
STATS_INSNS = 22                # per slot, with stats: counting after the call


@record
class StatsLink:
    """Stats on: the chain's ``chain.stats`` map (borrowed fd) and each slot's counter
    index (see ``dispatcher.chain.stats``)."""

    fd: int
    counters: tuple[int, ...]


def slot_insns(stats: bool) -> int:
    return SLOT_INSNS + (STATS_INSNS if stats else 0)


def main_insn_count(n: int, stats: bool = False) -> int:
    return 3 + slot_insns(stats) * n + 3


def _count(counter: int, stats_fd: int, key_off: int = -4) -> list[I.Insn]:
    """After a component returned (verdict in r0, ctx in r6): add one packet and its
    bytes to key counter*6 + action of the per-CPU stats map. The verdict is kept in r7
    (callee-saved) across the lookup and put back in r0; the action index is bounded
    (anything but 0..4 counts as "other"); a NULL lookup skips the counting. The key
    lives at ``key_off`` in main's frame."""
    base = counter * chain_stats.NUM_ACTIONS
    out = [
        I.mov64_reg(7, 0),
        I.mov32_reg(2, 0),                                   # w2 = verdict (zero-extended)
        I.jmp_imm(I.BPF_JLE, 2, chain_stats.OTHER - 1, 1),
        I.mov32_imm(2, chain_stats.OTHER),
        I.alu32_imm(I.BPF_ADD, 2, base),
        I.stx_mem(I.BPF_W, 10, 2, key_off),                  # key on main's stack
        I.mov64_reg(2, 10),
        I.alu64_imm(I.BPF_ADD, 2, key_off),
        *I.ld_imm64(1, I.BPF_PSEUDO_MAP_FD, stats_fd),
        I.call_helper(BPF_FUNC_map_lookup_elem),
        I.jmp_imm(I.BPF_JEQ, 0, 0, 9),
        I.ldx_mem(I.BPF_DW, 1, 0, 0),
        I.alu64_imm(I.BPF_ADD, 1, 1),
        I.stx_mem(I.BPF_DW, 0, 1, 0),                        # packets += 1 (this CPU's)
        I.ldx_mem(I.BPF_W, 2, 6, 4),                         # ctx->data_end
        I.ldx_mem(I.BPF_W, 3, 6, 0),                         # ctx->data
        I.alu64_reg(I.BPF_SUB, 2, 3),
        I.ldx_mem(I.BPF_DW, 1, 0, 8),
        I.alu64_reg(I.BPF_ADD, 1, 2),
        I.stx_mem(I.BPF_DW, 0, 1, 8),                        # bytes += data_end - data
        I.mov64_reg(0, 7),
    ]
    assert len(out) == STATS_INSNS, len(out)
    return out


@record
class MainLayout:
    """Where main keeps what it needs across an inlined body (bytes below r10). The
    inlined bodies keep their own stack offsets: their shared region is the top
    ``region`` bytes of main's frame, and main's own slots (ctx, the stats key) lie
    below it, so no body instruction (nor any pointer a body derives from r10) moves."""

    region: int = 0          # max stack depth of the inlined entry functions (8-aligned)
    inlined: bool = False    # some slot is inlined: ctx is kept in a stack slot
    stats: bool = False

    @property
    def ctx_off(self) -> int:
        return -(self.region + 8)

    @property
    def key_off(self) -> int:
        return -(self.region + (8 if self.inlined else 0) + 4)

    @property
    def depth(self) -> int:
        """Bytes of main's frame (region + own slots)."""
        return self.region + (8 if self.inlined else 0) + (4 if self.stats else 0)


def main_layout(checks: Sequence[ComponentCheck], reasons: Sequence[str], stats: bool
                ) -> MainLayout:
    depths = [ck.entry_stack for ck, r in zip(checks, reasons, strict=True) if not r]
    return MainLayout((max(depths, default=0) + 7) // 8 * 8, bool(depths), stats)


def inline_plan(checks: Sequence[ComponentCheck], stats: bool, inline: bool = True
                ) -> tuple[str, ...]:
    """Per component (slot order): "" when its entry is inlined into main, else why it
    stays a bpf-to-bpf call. An inlined body's frame becomes part of main's, so main's
    frame grows to the largest inlined entry's stack plus main's own slots; every call
    chain below main (an inlined body's subprograms, or a called component) must still
    fit the kernel's stack limit, else the component with the largest entry frame stays
    a call, until everything fits."""
    reasons = ["inlining is turned off" if not inline else ck.inline_problem
               for ck in checks]
    while True:
        main = _frame(main_layout(checks, reasons, stats).depth)
        over = [(main + (ck.below_entry if not r else ck.stack), ck.label)
                for ck, r in zip(checks, reasons, strict=True)
                if main + (ck.below_entry if not r else ck.stack) > MAX_STACK]
        inl = [i for i, r in enumerate(reasons) if not r]
        if not over or not inl:
            return tuple(reasons)
        j = max(inl, key=lambda i: (checks[i].entry_stack, i))
        need, who = max(over)
        reasons[j] = (f"its entry's {checks[j].entry_stack}-byte stack frame inside the "
                      f"chain's main function would make the call chain of {who} need "
                      f"{need} bytes of stack, over the kernel's {MAX_STACK}")


def _inline_body(lp: LinkedProgram, entry_len: int, at: int, subs_at: int, cont: int
                 ) -> bytes:
    """The entry function of ``lp`` placed at ``at`` inside main: every ``exit`` jumps to
    ``cont`` (the verdict stays in r0), calls and callback references to its subprograms
    point at ``subs_at`` (where lp's instruction ``entry_len`` was placed). Jumps inside
    the body are relative and do not move."""
    buf = bytearray(lp.insns[:entry_len * 8])
    k = 0
    while k < entry_len:
        code, regs, _off, imm = struct.unpack_from("<BBhi", buf, k * 8)
        src = regs >> 4
        if code == I.OP_EXIT:
            buf[k * 8:k * 8 + 8] = I.ja(cont - (at + k) - 1).to_bytes()
        elif code == I.OP_CALL and src == I.BPF_PSEUDO_CALL or (
                code == I.OP_LD_IMM64 and src == I.BPF_PSEUDO_FUNC):
            t = k + imm + 1
            assert t >= entry_len, "a call into the entry itself (inline_problem)"
            struct.pack_into("<i", buf, k * 8 + 4, subs_at + t - entry_len - (at + k) - 1)
        k += 2 if code == I.OP_LD_IMM64 else 1
    return bytes(buf)


@record
class _MainCode:
    insns: bytes
    slot_at: tuple[int, ...]          # each slot's first instruction in main
    body_at: tuple[int, ...]          # inlined: the body's first instruction; else -1
    cont_at: tuple[int, ...]          # inlined: the continuation after the body; else -1
    tail_at: int                      # "return XDP_PASS"


def _main(n: int, desc_fd: int, masks: Sequence[int], bases: Sequence[int],
          stats: StatsLink | None = None) -> bytes:
    """Generated main calling every entry; ``bases`` are absolute instruction indexes
    of each entry."""
    return _main_code(desc_fd, masks, bases, [None] * n, stats, MainLayout()).insns


def _main_code(desc_fd: int, masks: Sequence[int], bases: Sequence[int],
               bodies: Sequence[tuple[LinkedProgram, int] | None],
               stats: StatsLink | None, lay: MainLayout) -> _MainCode:
    """Main: per slot either a call of the entry at ``bases[i]``, or (``bodies[i]`` =
    (linked component, entry length)) its entry inlined, its subprograms placed at
    ``bases[i]``; then the counting block (stats) and the chain-call test."""
    out: list[I.Insn] = [I.mov64_reg(6, 1), *I.ld_imm64(1, I.BPF_PSEUDO_MAP_FD, desc_fd)]
    if lay.inlined:
        out.append(I.stx_mem(I.BPF_DW, 10, 6, lay.ctx_off))
    tests: list[int] = []
    slot_at, body_at, cont_at = [], [], []
    for i, body in enumerate(bodies):
        slot_at.append(len(out))
        out.append(I.mov64_reg(1, 6))
        if body is None:
            out.append(I.call_pseudo(bases[i] - len(out) - 1))
            body_at.append(-1)
            cont_at.append(-1)
        else:
            lp, elen = body
            at = len(out)
            code = _inline_body(lp, elen, at, bases[i], at + elen)
            out.extend(I.decode(code))
            body_at.append(at)
            cont_at.append(len(out))
            out.append(I.ldx_mem(I.BPF_DW, 6, 10, lay.ctx_off))   # the body may clobber r6
        if stats is not None:
            out.extend(_count(stats.counters[i], stats.fd, lay.key_off))
        out.append(I.mov32_imm(1, 1))
        out.append(I.alu32_reg(I.BPF_LSH, 1, 0))
        out.append(I.alu32_imm(I.BPF_AND, 1, masks[i] & 0x1F))
        tests.append(len(out))
        out.append(I.jmp_imm(I.BPF_JEQ, 1, 0, 0))
    tail = len(out)
    out.append(I.mov64_imm(0, XDP_PASS))    # after the last slot
    out.append(I.exit_insn())
    out.append(I.exit_insn())        # out_r0: return the verdict that stopped the chain
    for t in tests:
        out[t] = I.jmp_imm(I.BPF_JEQ, 1, 0, len(out) - 1 - t - 1)
    return _MainCode(I.encode(out), tuple(slot_at), tuple(body_at), tuple(cont_at), tail)


def main_length(checks: Sequence[ComponentCheck], reasons: Sequence[str], stats: bool
                ) -> int:
    """Instructions of main with the entries ``reasons`` leaves inlined."""
    inl = [ck.entry_insns for ck, r in zip(checks, reasons, strict=True) if not r]
    return main_insn_count(len(checks), stats) + sum(inl) + (1 if inl else 0)


def _strtab(strings: Sequence[str]) -> tuple[bytes, dict[str, int]]:
    buf = bytearray(b"\0")
    offs: dict[str, int] = {}
    for s in strings:
        if s and s not in offs:
            offs[s] = len(buf)
            buf += s.encode() + b"\0"
    return bytes(buf), offs


def _slot_line(i: int, c: LinkComponent) -> str:
    names = ",".join(actions_to_names(c.actions)) or "none"
    return f"slot {i}: {c.label} prio={c.priority} continue on {names}"


_MAIN_FILE = "<xdp-dispatch linked chain>"


def main_btf(comps: Sequence[LinkComponent]) -> tuple[Btf, int, dict[str, int]]:
    """Part 0 of the program BTF: types for main's FUNC plus line-info strings.
    Returns (btf, FUNC id of main, string offsets)."""
    lines = [_slot_line(i, c) for i, c in enumerate(comps)] + ["return XDP_PASS"]
    names = ["int", "unsigned int", "xdp_md", "data", "data_end", "data_meta",
             "ingress_ifindex", "rx_queue_index", "egress_ifindex", "ctx", PROGRAM_NAME,
             _MAIN_FILE, *lines]
    strs, off = _strtab(names)
    u32 = 2
    members = tuple(BtfMember(n, off[n], u32, i * 32) for i, n in enumerate(
        ("data", "data_end", "data_meta", "ingress_ifindex", "rx_queue_index",
         "egress_ifindex")))
    types = [
        BtfType(BtfKind.INT, name_off=off["int"], size_or_type=4, int_encoding=(1 << 24) | 32),
        BtfType(BtfKind.INT, name_off=off["unsigned int"], size_or_type=4, int_encoding=32),
        BtfType(BtfKind.STRUCT, name_off=off["xdp_md"], size_or_type=24, members=members),
        BtfType(BtfKind.PTR, size_or_type=3),
        BtfType(BtfKind.FUNC_PROTO, size_or_type=1, params=(BtfParam("ctx", off["ctx"], 4),)),
        BtfType(BtfKind.FUNC, name_off=off[PROGRAM_NAME], size_or_type=5, linkage=FUNC_GLOBAL),
    ]
    return Btf.from_parts(types, strs), 6, off


# ------------------------------------------------------------------ combining

@record
class Slot:
    label: str
    start: int          # instruction index of the entry (inlined: of its first subprogram)
    end: int            # one past the component's last instruction
    body_start: int = -1     # inlined: where its entry's body lies inside main
    body_end: int = -1

    @property
    def inlined(self) -> bool:
        return self.body_start >= 0


@record
class CombinedProgram:
    name: str
    insns: bytes
    btf_mode: str                        # hybrid | none
    btf: Btf | None
    func_info: tuple[tuple[int, int], ...]
    line_info: tuple[LineInfoRec, ...]
    core_relos: tuple[CoreReloRec, ...]
    license: str
    prog_flags: int
    slots: tuple[Slot, ...]
    checks: tuple[ComponentCheck, ...] = ()
    not_inlined: tuple[str, ...] = ()    # per slot: why it stays a call ("" = inlined)

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8

    def slot_of_insn(self, idx: int) -> Slot | None:
        for s in self.slots:
            if s.start <= idx < s.end or s.body_start <= idx < s.body_end:
                return s
        return None


def chain_license(comps: Sequence[LinkComponent]) -> str:
    """"GPL" if every component's license is GPL-compatible, else the first other one."""
    for c in comps:
        if c.obj.license not in _GPL_COMPATIBLE:
            return c.obj.license or "unknown"
    return "GPL"


def chain_frags(comps: Sequence[LinkComponent]) -> bool:
    return all(c.frags for c in comps)


def combine(comps: Sequence[LinkComponent], map_fds: Sequence[Mapping[str, int]],
            desc_fd: int, stats: StatsLink | None = None, inline: bool = True,
            not_inlined: Sequence[str] | None = None) -> CombinedProgram:
    """Build the chain program from components in slot order (see ``sort_components``).
    ``map_fds[i]`` maps component i's map names to (borrowed) fds. With ``stats``, main
    counts every component's verdicts (``_count``). With ``inline``, each entry that
    ``inline_plan`` allows is inlined into main (its subprograms stay subprograms);
    ``not_inlined`` overrides that plan (per slot: "" = inline, else why not)."""
    if len(map_fds) != len(comps):
        raise ValueError("one map-fd mapping per component")
    if stats is not None and len(stats.counters) != len(comps):
        raise ValueError("one stats counter per component")
    mode, checks = check_components(comps, stats is not None)
    reasons = inline_plan(checks, stats is not None, inline)
    if not_inlined is not None:
        if len(not_inlined) != len(comps):
            raise ValueError("one not_inlined reason per component")
        reasons = tuple(a or b for a, b in zip(reasons, not_inlined, strict=True))
    lay = main_layout(checks, reasons, stats is not None)
    linked: list[LinkedProgram] = []
    for c, fds in zip(comps, map_fds, strict=True):
        try:
            linked.append(link_program(c.obj, c.prog, fds))
        except ObjectFileError as e:
            raise LinkError(f"{c.where()}: {e.message}") from None
    # what stays outside main: a called component whole, an inlined one's subprograms
    cut = [0 if r else ck.entry_insns for ck, r in zip(checks, reasons, strict=True)]
    bases = []
    pos = main_length(checks, reasons, stats is not None)
    for lp, k in zip(linked, cut, strict=True):
        bases.append(pos)
        pos += lp.insn_count - k
    bodies = [None if r else (lp, k) for lp, k, r in zip(linked, cut, reasons, strict=True)]
    mc = _main_code(desc_fd, [c.actions for c in comps], bases, bodies, stats, lay)
    assert not bases or len(mc.insns) // 8 == bases[0]
    insns = mc.insns + b"".join(lp.insns[k * 8:] for lp, k in zip(linked, cut, strict=True))

    def at(i: int, k: int) -> int:
        """Final index of instruction ``k`` of component ``i``'s linked program."""
        return mc.body_at[i] + k if k < cut[i] else bases[i] + k - cut[i]

    slots = tuple(Slot(c.label, b, b + lp.insn_count - k, mc.body_at[i],
                       mc.body_at[i] + k if k else -1)
                  for i, (c, b, lp, k) in enumerate(zip(comps, bases, linked, cut, strict=True)))

    btf: Btf | None = None
    func_info: list[tuple[int, int]] = []
    line_info: list[LineInfoRec] = []
    core: list[CoreReloRec] = []
    if mode == "hybrid":
        btf, main_func, off = main_btf(comps)
        func_info.append((0, main_func))
        file_off = off[_MAIN_FILE]
        line_info.append(LineInfoRec(0, file_off, file_off, 1 << 10))
        for i, c in enumerate(comps):
            for where in (mc.slot_at[i], mc.cont_at[i]):
                if where >= 0:
                    line_info.append(LineInfoRec(where, file_off, off[_slot_line(i, c)],
                                                 (i + 2) << 10))
        line_info.append(LineInfoRec(mc.tail_at, file_off, off["return XDP_PASS"],
                                     (len(comps) + 2) << 10))
        lines_ok = True
        for i, (c, lp) in enumerate(zip(comps, linked, strict=True)):
            assert c.obj.btf is not None
            btf, id_base, str_base = btf.append(c.obj.btf)
            entry_tid = lp.func_info[0][1] + id_base
            btf = btf.with_func_linkage(entry_tid, FUNC_STATIC)
            # an inlined entry is no function any more: no func_info record for it
            func_info.extend((at(i, o), t + id_base) for o, t in lp.func_info
                             if not o < cut[i])
            starts = {s for _n, s in lp.pieces}
            if not starts <= {li.insn_off for li in lp.line_info}:
                lines_ok = False
            line_info.extend(LineInfoRec(at(i, li.insn_off), li.file_name_off + str_base,
                                         li.line_off + str_base, li.line_col)
                             for li in lp.line_info)
            core.extend(CoreReloRec(at(i, cr.insn_off // 8) * 8 + cr.insn_off % 8,
                                    cr.type_id + id_base, cr.access_str_off + str_base,
                                    cr.kind)
                        for cr in lp.core_relos)
        line_info.sort(key=lambda li: li.insn_off)
        func_info.sort()
        core.sort(key=lambda cr: cr.insn_off)
        if not lines_ok:   # the kernel wants line info at every function start, or none
            line_info = []
    flags = BPF_F_XDP_HAS_FRAGS if chain_frags(comps) else 0
    return CombinedProgram(PROGRAM_NAME, insns, mode, btf, tuple(func_info), tuple(line_info),
                           tuple(core), chain_license(comps), flags, slots, tuple(checks),
                           reasons)


# ------------------------------------------------------------------ description

def description(comps: Sequence[LinkComponent], map_ids: Sequence[Mapping[str, int]],
                btf_mode: str, tool_version: str = "", stats_map: int = 0,
                counters: Sequence[int] = (), not_inlined: Sequence[str] | None = None,
                inline: bool = True) -> ChainDescription:
    """What the description map records (components in slot order); with stats, the
    stats map's id and each slot's counter index; ``not_inlined`` (from ``inline_plan``):
    per slot, why it stays a call ("" = inlined; None: a chain that does not inline)."""
    idx = list(counters) if stats_map else [-1] * len(comps)
    why = list(not_inlined) if not_inlined is not None else [""] * len(comps)
    return ChainDescription(
        f"xdp-dispatch {tool_version}".strip(), btf_mode, chain_frags(comps),
        tuple(SlotDescription(
            c.label, c.priority, actions_to_names(c.actions), c.frags, c.obj.path, c.sha256,
            c.prog.name, c.prog.section, tuple(ids.items()), c.pin_dir, c.settings, c.source,
            k, not_inlined is not None and not w, w)
            for c, ids, k, w in zip(comps, map_ids, idx, why, strict=True)),
        stats_map=stats_map, inline=inline)


def description_btf(value_size: int) -> tuple[Btf, int]:
    """BTF for the description map value: DATASEC .rodata { const char
    bpf_metadata_xdp_chain[value_size] } (what ``bpftool prog show`` prints as metadata).
    Returns (btf, value type id)."""
    strs, off = _strtab(["char", "int", DESC_VAR_NAME, ".rodata"])
    types = [
        BtfType(BtfKind.INT, name_off=off["char"], size_or_type=1, int_encoding=(1 << 24) | 8),
        BtfType(BtfKind.INT, name_off=off["int"], size_or_type=4, int_encoding=(1 << 24) | 32),
        BtfType(BtfKind.ARRAY, array=BtfArray(1, 2, value_size)),
        BtfType(BtfKind.CONST, size_or_type=3),
        BtfType(BtfKind.VAR, name_off=off[DESC_VAR_NAME], size_or_type=4,
                linkage=VAR_GLOBAL_ALLOCATED),
        BtfType(BtfKind.DATASEC, name_off=off[".rodata"], size_or_type=value_size,
                secinfos=(BtfVarSecinfo(5, 0, value_size),)),
    ]
    return Btf.from_parts(types, strs), 6
