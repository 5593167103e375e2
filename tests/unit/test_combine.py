"""dispatcher.chain.linked.combine: the linked chain builder (pure; no kernel).

Real objects (bpf/examples, Debian's xdp-tools objects) for layout and BTF; small
hand-built objects for the limits (call frames, stack, maps, tail calls, callbacks).
"""

from __future__ import annotations

import json
import os
import struct

import pytest

from dispatcher.chain import description
from dispatcher.chain.linked import combine
from dispatcher.obj import insn as I
from dispatcher.obj.btf import FUNC_GLOBAL, FUNC_STATIC, Btf, BtfKind
from dispatcher.obj.elf import read_object
from dispatcher.obj.spec import (
    FunctionSpec,
    MapSpec,
    ObjectSpec,
    ProgramSpec,
    RelocKind,
    RelocSpec,
)
from dispatcher.record import replace
from dispatcher.uapi import BPF_F_XDP_HAS_FRAGS, BPF_PROG_TYPE_XDP, BPF_XDP, BPF_XDP_DEVMAP
from tests.objects import DEBIAN_BPF_DIR, example

PASS, DROP, TX = 1 << 2, 1 << 1, 1 << 3


def comp(path: str, prio: int | None = None, actions: int | None = None,
         label: str | None = None, kept: int = -1) -> combine.LinkComponent:
    obj = read_object(path)
    prog = next(p for p in obj.programs if p.prog_type == BPF_PROG_TYPE_XDP)
    return combine.LinkComponent(obj, prog, label or prog.name,
                                 prog.run_config.priority if prio is None else prio,
                                 prog.run_config.chain_call_actions if actions is None else actions,
                                 "0" * 16, kept)


def fds(comps: list[combine.LinkComponent]) -> list[dict[str, int]]:
    from dispatcher.obj.link import referenced_maps

    return [{n: 100 + 10 * i + j for j, n in enumerate(referenced_maps(c.obj, c.prog))}
            for i, c in enumerate(comps)]


def decode(b: bytes) -> list[I.Insn]:
    return I.decode(b)


# ---------------------------------------------------------------- synthetic objects

def _enc(*insns: I.Insn | tuple[I.Insn, I.Insn]) -> bytes:
    flat: list[I.Insn] = []
    for x in insns:
        flat.extend(x if isinstance(x, tuple) else (x,))
    return I.encode(flat)


def synth(name: str, funcs: list[tuple[str, bytes, tuple[RelocSpec, ...]]],
          maps: tuple[MapSpec, ...] = (), attach: int = BPF_XDP,
          flags: int = 0, license: str = "GPL") -> ObjectSpec:
    """An object without BTF: the first function is the entry (section 'xdp'), the rest
    live in .text in order."""
    fs = []
    start = 0
    for i, (fname, code, relocs) in enumerate(funcs):
        sec = "xdp" if i == 0 else ".text"
        fs.append(FunctionSpec(fname, sec, 0 if i == 0 else start, code, i == 0, relocs))
        if i:
            start += len(code) // 8
    prog = ProgramSpec(funcs[0][0], "xdp", BPF_PROG_TYPE_XDP, attach, flags, fs[0])
    return ObjectSpec(f"/synthetic/{name}.o", name, license, (prog,), maps, tuple(fs), None, None)


def synth_comp(obj: ObjectSpec, prio: int = 50) -> combine.LinkComponent:
    return combine.LinkComponent(obj, obj.programs[0], obj.programs[0].name, prio, PASS)


def chain_of_calls(depth: int, stack_each: int = 8) -> ObjectSpec:
    """depth functions, each storing at r10-stack_each and calling the next (bpf-to-bpf)."""
    funcs = []
    text_start = 0
    sizes = []
    for i in range(depth):
        last = i == depth - 1
        n = 3 if last else 4
        sizes.append(n)
    for i in range(depth):
        last = i == depth - 1
        body = [I.st_mem(I.BPF_DW, 10, -stack_each, 0)]
        relocs: tuple[RelocSpec, ...] = ()
        if not last:
            body.append(I.call_pseudo(-1))
            relocs = (RelocSpec(1, RelocKind.CALL, f"f{i + 1}", target_section=".text",
                                target_insn=text_start if i == 0 else text_start + sizes[i]),)
            if i:
                text_start += sizes[i]
        body += [I.mov64_imm(0, 2), I.exit_insn()]
        funcs.append((f"f{i}", _enc(*body), relocs))
    return synth(f"deep{depth}", funcs)


# ---------------------------------------------------------------- layout

def test_main_layout_calls_each_entry_and_applies_masks() -> None:
    comps = combine.sort_components([comp(example("xdp_counter")), comp(example("xdp_runcfg")),
                                     comp(example("xdp_globals"), prio=60, actions=PASS | TX)])
    assert [c.label for c in comps] == ["xdp_runcfg", "xdp_counter", "xdp_globals"]
    cp = combine.combine(comps, fds(comps), desc_fd=77, inline=False)
    ins = decode(cp.insns)
    assert ins[0] == I.mov64_reg(6, 1)
    assert ins[1].code == I.OP_LD_IMM64 and ins[1].src == I.BPF_PSEUDO_MAP_FD and ins[1].imm == 77
    n = len(comps)
    out_idx = combine.main_insn_count(n) - 1
    for i, (c, s) in enumerate(zip(comps, cp.slots, strict=True)):
        blk = 3 + 6 * i
        assert ins[blk] == I.mov64_reg(1, 6)
        call = ins[blk + 1]
        assert call.is_pseudo_call and blk + 1 + call.imm + 1 == s.start
        assert ins[blk + 4] == I.alu32_imm(I.BPF_AND, 1, c.actions)
        jeq = ins[blk + 5]
        assert jeq.code == I.BPF_JMP | I.BPF_JEQ and blk + 5 + jeq.off + 1 == out_idx
        # the entry's first instruction is the component's own first instruction
        assert cp.insns[s.start * 8:s.start * 8 + 8] == c.prog.function.insns[:8] or \
            ins[s.start].code == I.OP_LD_IMM64
    assert ins[out_idx - 2] == I.mov64_imm(0, 2) and ins[out_idx].is_exit
    assert cp.slots[-1].end == cp.insn_count
    assert cp.name == "xdp_chain" != "xdp_dispatcher"


def test_maps_are_patched_with_each_components_own_fds() -> None:
    comps = [comp(example("xdp_counter")), comp(example("xdp_counter"), label="second")]
    f = fds(comps)
    cp = combine.combine(comps, f, desc_fd=5, inline=False)
    for s, m in zip(cp.slots, f, strict=True):
        imms = {i.imm for i in decode(cp.insns[s.start * 8:s.end * 8])
                if i.code == I.OP_LD_IMM64 and i.src == I.BPF_PSEUDO_MAP_FD}
        assert imms == set(m.values())


def test_hybrid_btf_entry_static_globals_kept_main_first() -> None:
    comps = [comp(example("xdp_subprogs")), comp(example("xdp_counter"))]
    cp = combine.combine(comps, fds(comps), 9, inline=False)
    assert cp.btf_mode == "hybrid" and cp.btf is not None
    btf = Btf.parse(cp.btf.encode())            # encodes and decodes
    fi = dict(cp.func_info)
    assert cp.func_info[0][0] == 0
    main = btf.type_by_id(cp.func_info[0][1])
    assert main.name == "xdp_chain" and main.linkage == FUNC_GLOBAL
    for s in cp.slots:
        entry = btf.type_by_id(fi[s.start])
        assert entry.kind == BtfKind.FUNC and entry.linkage == FUNC_STATIC
        assert entry.name == s.label
    # xdp_subprogs has a global subprogram: it stays global
    globals_kept = [btf.type_by_id(t).name for o, t in cp.func_info[1:]
                    if o not in {s.start for s in cp.slots}
                    and btf.type_by_id(t).linkage == FUNC_GLOBAL]
    assert globals_kept, "the component's global subprogram lost its linkage"
    offs = [o for o, _ in cp.func_info]
    assert offs == sorted(offs) and len(set(offs)) == len(offs)
    li = [r.insn_off for r in cp.line_info]
    assert li == sorted(li) and set(offs) <= set(li)
    assert btf.string_at(cp.line_info[1].line_off).startswith("slot 0: xdp_sub_a prio=50")


def test_component_btf_appended_after_the_generated_part() -> None:
    paths = [os.path.join(DEBIAN_BPF_DIR, "xdpfilt_alw_all.o"), example("xdp_counter")]
    if not all(os.path.exists(p) for p in paths):
        pytest.skip("Debian xdp-tools objects are not installed")
    comps = [comp(p) for p in paths]
    cp = combine.combine(comps, fds(comps), 3)
    assert cp.btf is not None
    for a, b in zip(comps[0].obj.btf.types[1:20], cp.btf.types[7:26], strict=True):  # type: ignore[union-attr]
        assert a.name == b.name and a.kind == b.kind


def test_license_and_frags_policy() -> None:
    pa, fr = comp(example("xdp_pass")), comp(example("xdp_frags"))
    assert combine.combine([fr], fds([fr]), 3).prog_flags == BPF_F_XDP_HAS_FRAGS
    assert combine.combine([pa, fr], fds([pa, fr]), 3).prog_flags == 0
    assert combine.chain_license([pa, fr]) == "GPL"
    prop = replace(pa, obj=replace(pa.obj, license="Proprietary"))
    assert combine.chain_license([fr, prop]) == "Proprietary"
    dual = replace(pa, obj=replace(pa.obj, license="Dual BSD/GPL"))
    assert combine.chain_license([dual, fr]) == "GPL"


def test_component_without_license_is_named_before_loading() -> None:
    gpl, nolic = comp(example("xdp_counter")), comp(example("xdp_no_license"))
    assert nolic.obj.license == ""
    for order in ([gpl, nolic], [nolic, gpl]):
        with pytest.raises(combine.LinkError) as ei:
            combine.check_components(order)
        msg = ei.value.message
        assert msg.startswith(f"xdp_no_license ({nolic.obj.path}): program xdp_no_license has "
                              "no license"), msg
        assert "GPL component xdp_counter" in msg
    # without a GPL component the chain has the license each would have alone
    combine.check_components([nolic])
    prop = replace(gpl, obj=replace(gpl.obj, license="Proprietary"))
    combine.check_components([prop, nolic])


def test_sort_keeps_existing_before_new_on_ties() -> None:
    a = comp(example("xdp_pass"), prio=20, kept=1)
    b = comp(example("xdp_pass_long"), prio=20)      # new, same name: after the kept one
    c = comp(example("xdp_pass"), prio=20, kept=0)
    d = comp(example("xdp_counter"), prio=5)
    order = combine.sort_components([a, b, c, d])
    assert [(x.label, x.kept_slot) for x in order] == [
        ("xdp_counter", -1), ("xdp_pass", 0), ("xdp_pass", 1), ("xdp_pass", -1)]


# ---------------------------------------------------------------- limits and refusals

def test_more_than_ten_components_refused() -> None:
    c = comp(example("xdp_pass"))
    with pytest.raises(combine.LinkError, match="at most 10"):
        combine.check_components([c] * 11)


def test_devmap_program_refused_by_name() -> None:
    o = synth("dm", [("dm_prog", _enc(I.mov64_imm(0, 2), I.exit_insn()), ())],
              attach=BPF_XDP_DEVMAP)
    with pytest.raises(combine.LinkError, match=r"dm_prog \(/synthetic/dm.o\).*not a plain XDP"):
        combine.check_components([synth_comp(o)])


def test_call_frames_seven_ok_eight_refused() -> None:
    ok = combine.check_components([synth_comp(chain_of_calls(7))])[1][0]
    assert ok.frames == 7
    with pytest.raises(combine.LinkError, match=r"f0 \(/synthetic/deep8.o\).*8 frames deep"):
        combine.check_components([synth_comp(chain_of_calls(8))])


def test_stack_along_call_chain_limit() -> None:
    # 2 frames of 224 bytes = 448 (+32 for main) fits; 2 x 256 = 512 does not.
    assert combine.check_components([synth_comp(chain_of_calls(2, 224))])[1][0].stack == 448
    with pytest.raises(combine.LinkError, match="512 bytes of stack"):
        combine.check_components([synth_comp(chain_of_calls(2, 256))])


def test_recursion_refused() -> None:
    code = _enc(I.call_pseudo(-1), I.mov64_imm(0, 2), I.exit_insn())
    o = synth("rec", [("r", code, (RelocSpec(0, RelocKind.CALL, "r", target_section="xdp",
                                             target_insn=0),))])
    with pytest.raises(combine.LinkError, match="recursive"):
        combine.check_components([synth_comp(o)])


def test_too_many_maps_refused() -> None:
    maps = tuple(MapSpec(f"m{i}", f"m{i}", 2, 4, 8, 1) for i in range(7))
    body = []
    relocs = []
    for i in range(7):
        relocs.append(RelocSpec(len(body), RelocKind.MAP, f"m{i}", map_name=f"m{i}"))
        body.extend(I.ld_map_fd(1, 0))
    body += [I.mov64_imm(0, 2), I.exit_insn()]
    o = synth("manymaps", [("mm", I.encode(body), tuple(relocs))], maps=maps)
    combine.check_components([synth_comp(o)] * 9)          # 63 + description = 64
    with pytest.raises(combine.LinkError, match="71 maps.*64 per program"):
        combine.check_components([synth_comp(o)] * 10)


def test_without_btf_chain_is_linked_without_program_btf() -> None:
    plain = synth("plain", [("plain", _enc(I.mov64_imm(0, 2), I.exit_insn()), ())])
    c = comp(example("xdp_counter"))
    cp = combine.combine([synth_comp(plain), c], fds([synth_comp(plain), c]), 4)
    assert cp.btf_mode == "none" and cp.btf is None and not cp.func_info and not cp.line_info


def test_tail_call_refused_without_btf() -> None:
    tc = synth("tc", [("tc", _enc(I.call_helper(12), I.mov64_imm(0, 2), I.exit_insn()), ())])
    with pytest.raises(combine.LinkError, match=r"tc \(/synthetic/tc.o\): uses tail calls"):
        combine.check_components([synth_comp(tc)])


def test_callback_refused_without_btf() -> None:
    code = _enc(I.ld_imm64(2, I.BPF_PSEUDO_FUNC, 0), I.mov64_imm(0, 2), I.exit_insn(),
                I.mov64_imm(0, 0), I.exit_insn())
    o = synth("cb", [("cb", code[:32], (RelocSpec(0, RelocKind.FUNC_ADDR, "cbf",
                                                   target_section=".text", target_insn=0),)),
                     ("cbf", code[32:], ())])
    with pytest.raises(combine.LinkError, match="callbacks"):
        combine.check_components([synth_comp(o)])


def test_extern_reference_refused_with_component_name() -> None:
    code = _enc(I.ld_imm64(1, 0, 0), I.mov64_imm(0, 2), I.exit_insn())
    o = synth("ext", [("ext", code, (RelocSpec(0, RelocKind.EXTERN, "bpf_ksym"),))])
    with pytest.raises(combine.LinkError, match=r"ext \(/synthetic/ext.o\).*extern symbol"):
        combine.check_components([synth_comp(o)])


# ---------------------------------------------------------------- description

def test_description_roundtrip_and_btf() -> None:
    comps = [comp(example("xdp_counter")), comp(example("xdp_runcfg"))]
    doc = combine.description(comps, [{"counters": 42}, {}], "hybrid", "0.1.0")
    raw = description.encode(doc)
    assert raw.endswith(b"\0") and description.parse(raw + b"\0\0") == doc
    js = doc.to_json()
    assert js["mode"] == "linked" and js["version"] == 1
    slots = js["slots"]
    assert isinstance(slots, list)
    assert slots[0]["maps"] == {"counters": 42} and slots[1]["actions"] == ["XDP_DROP", "XDP_PASS"]
    assert description.parse(b'{"mode":"other"}\0') is None
    assert description.parse(b"\xff\0") is None
    # a malformed field is not a description of ours (never a crash)
    bad = raw.replace(b'"priority":', b'"priority":"x","p":')
    assert description.parse(bad) is None
    assert description.parse(b'{"mode":"linked","slots":[5]}\0') is None
    assert description.parse(b"[" * 100000 + b"\0") is None
    btf, vid = combine.description_btf(len(raw))
    back = Btf.parse(btf.encode())
    ds = back.type_by_id(vid)
    assert ds.kind == BtfKind.DATASEC and ds.name == ".rodata" and ds.size == len(raw)
    var = back.type_by_id(ds.secinfos[0].type_id)
    assert var.name == "bpf_metadata_xdp_chain" and back.resolve_size(var.type_id) == len(raw)
    json.loads(raw[:-1])


def test_main_insns_fixed_size() -> None:
    for n in range(1, 11):
        code = combine._main(n, 3, [PASS] * n, [combine.main_insn_count(n)] * n)
        assert len(code) // 8 == combine.main_insn_count(n)
        struct.unpack_from("<BBhi", code, 0)


def test_stats_main_counts_after_each_call_and_keeps_layout() -> None:
    """With stats, each slot block grows by the counting code (lookup into the stats map
    at key counter*6 + bounded action), BTF line info follows the blocks, and the
    description map stays the 2nd instruction."""
    comps = combine.sort_components([comp(example("xdp_counter")), comp(example("xdp_runcfg")),
                                     comp(example("xdp_globals"), prio=60, actions=PASS | TX)])
    n = len(comps)
    link = combine.StatsLink(88, (4, 0, 7))
    cp = combine.combine(comps, fds(comps), desc_fd=77, stats=link, inline=False)
    plain = combine.combine(comps, fds(comps), desc_fd=77, inline=False)
    ins = decode(cp.insns)
    per = combine.slot_insns(True)
    assert combine.main_insn_count(n, True) == 6 + per * n
    assert cp.insn_count - plain.insn_count == (per - combine.SLOT_INSNS) * n
    assert ins[1].src == I.BPF_PSEUDO_MAP_FD and ins[1].imm == 77
    out_idx = combine.main_insn_count(n, True) - 1
    for i, (c, s) in enumerate(zip(comps, cp.slots, strict=True)):
        blk = 3 + per * i
        call = ins[blk + 1]
        assert call.is_pseudo_call and blk + 1 + call.imm + 1 == s.start
        body = ins[blk + 2:blk + 2 + combine.STATS_INSNS]
        assert body[0] == I.mov64_reg(7, 0) and body[-1] == I.mov64_reg(0, 7)
        assert I.alu32_imm(I.BPF_ADD, 2, link.counters[i] * 6) in body
        maps = [x for x in body if x.code == I.OP_LD_IMM64 and x.src == I.BPF_PSEUDO_MAP_FD]
        assert [m.imm for m in maps] == [88]
        jeq = ins[blk + per - 1]
        assert ins[blk + per - 2] == I.alu32_imm(I.BPF_AND, 1, c.actions)
        assert jeq.code == I.BPF_JMP | I.BPF_JEQ and blk + per - 1 + jeq.off + 1 == out_idx
    # line info: main's slot lines sit on each block's first instruction
    main_lines = [li.insn_off for li in cp.line_info if li.insn_off < cp.slots[0].start]
    assert main_lines == [0, *(3 + per * i for i in range(n)), 3 + per * n]
    assert cp.func_info[1][0] == cp.slots[0].start
    with pytest.raises(ValueError):
        combine.combine(comps, fds(comps), desc_fd=77, stats=combine.StatsLink(88, (0,)))


def test_stats_description_keys_are_added_only_when_on() -> None:
    comps = [comp(example("xdp_counter"))]
    off = combine.description(comps, [{}], "hybrid", "1")
    on = combine.description(comps, [{}], "hybrid", "1", stats_map=42, counters=[3])
    j_off, j_on = off.to_json(), on.to_json()
    assert "stats_map" not in j_off and "counter" not in j_off["slots"][0]  # type: ignore[index]
    assert list(j_on)[:-1] == list(j_off) and j_on["stats_map"] == 42
    back = description.parse(description.encode(on))
    assert back == on and back.stats == "counts" and back.slots[0].counter == 3
    assert description.parse(description.encode(off)).stats == "off"  # type: ignore[union-attr]


def test_assign_counters_keeps_old_and_never_reuses_an_old_index() -> None:
    from dispatcher.chain import stats as cs

    assert cs.assign_counters([None, None], []) == [0, 1]
    # kept 3 and 0; the old chain also used 1 (removed): new ones take 2 and 4
    assert cs.assign_counters([3, None, 0, None], [0, 1, 3]) == [3, 2, 0, 4]
    assert cs.MAX_ENTRIES == cs.MAX_COUNTERS * cs.NUM_ACTIONS >= 2 * combine.MAX_COMPONENTS * 6


# ---------------------------------------------------------------- inlining

def _funcs_called(ins: list[I.Insn]) -> set[int]:
    """Instruction indexes that calls and callback references land on (subprog starts)."""
    out = set()
    for k, x in enumerate(ins):
        if x.is_pseudo_call or (x.code == I.OP_LD_IMM64 and x.src == I.BPF_PSEUDO_FUNC):
            out.add(k + x.imm + 1)
    return out


@pytest.mark.parametrize("stats", [False, True])
def test_inlined_entries_live_in_main_and_keep_their_subprograms(stats: bool) -> None:
    """Each entry is spliced into main: no call of it, ctx spilled once and reloaded after
    each body, every exit of a body jumps to its continuation; its subprograms (and
    callbacks) stay functions with func_info; the entry's own func_info goes; line info
    stays sorted and covers every function start; CO-RE records land on the same
    instructions as in the called layout."""
    comps = combine.sort_components([comp(example("xdp_subprogs")), comp(example("xdp_loop")),
                                     comp(example("xdp_core")), comp(example("xdp_counter"))])
    link = combine.StatsLink(88, tuple(range(len(comps)))) if stats else None
    cp = combine.combine(comps, fds(comps), 77, link)
    called = combine.combine(comps, fds(comps), 77, link, inline=False)
    assert cp.not_inlined == ("",) * len(comps) and all(s.inlined for s in cp.slots)
    assert called.not_inlined == ("inlining is turned off",) * len(comps)
    ins = decode(cp.insns)
    lay = combine.main_layout(cp.checks, cp.not_inlined, stats)
    assert ins[0] == I.mov64_reg(6, 1) and ins[1].imm == 77       # description map: 2nd insn
    assert ins[3] == I.stx_mem(I.BPF_DW, 10, 6, lay.ctx_off)
    assert lay.region >= max(ck.entry_stack for ck in cp.checks)
    starts = _funcs_called(ins)
    main_end = cp.slots[0].start
    assert all(s >= main_end for s in starts), "main calls no inlined entry"
    for s, ck in zip(cp.slots, cp.checks, strict=True):
        assert s.body_end - s.body_start == ck.entry_insns
        # a verifier error inside the body blames this component (build._blame)
        assert cp.slot_of_insn(s.body_start) == s == cp.slot_of_insn(s.body_end - 1)
        body = ins[s.body_start:s.body_end]
        assert not any(x.is_exit for x in body)
        cont = s.body_end
        assert ins[cont] == I.ldx_mem(I.BPF_DW, 6, 10, lay.ctx_off)
        assert ins[s.body_start - 1] == I.mov64_reg(1, 6)
        for k, x in enumerate(ins[s.body_start:s.body_end]):
            if x.code == I.OP_JA and s.body_start + k + x.off + 1 == cont:
                break
        else:
            raise AssertionError(f"{s.label}: no exit jumps to the continuation")
    # functions: main, then every subprogram; the inlined entries have none
    fi = [o for o, _t in cp.func_info]
    assert fi == sorted(set(fi)) and fi[0] == 0 and set(fi[1:]) == starts
    li = [r.insn_off for r in cp.line_info]
    assert li == sorted(set(li)) and set(fi) <= set(li)
    # CO-RE: the same instruction, wherever it went
    assert len(cp.core_relos) == len(called.core_relos) > 0
    for a, b in zip(cp.core_relos, called.core_relos, strict=True):
        assert cp.insns[a.insn_off:a.insn_off + 8] == called.insns[b.insn_off:b.insn_off + 8]
    assert cp.insn_count == called.insn_count + 1       # the ctx spill; calls became bodies


def test_stack_depth_follows_pointers_derived_from_r10() -> None:
    """xdp_bigstack touches its 400-byte frame only through r10-derived pointers; a
    count of direct r10 accesses would see 0 and put main's ctx slot inside it."""
    ck = combine.check_components([comp(example("xdp_bigstack"))])[1][0]
    assert ck.entry_stack == 400 and ck.stack == 416 and ck.below_entry == 0
    body = _enc(I.mov64_reg(2, 10), I.alu64_imm(I.BPF_ADD, 2, -8), I.st_mem(I.BPF_DW, 2, -292, 0),
                I.mov64_imm(0, 2), I.exit_insn())
    ck = combine.check_components([synth_comp(synth("derived", [("d", body, ())]))])[1][0]
    assert ck.entry_stack == 300


def test_large_entry_frame_stays_a_call_when_another_chain_would_pass_512() -> None:
    """Inlined, bigstack's 400-byte frame is main's; deepstack's 400-byte subprogram below
    main would then need 832 bytes: bigstack stays a call, with the reason, deepstack is
    inlined. Either one alone next to small components is inlined."""
    big, deep = comp(example("xdp_bigstack"), 10), comp(example("xdp_deepstack"), 20)
    small = comp(example("xdp_counter"), 30)
    for stats in (False, True):
        cp = combine.combine([big, deep, small], fds([big, deep, small]), 3,
                             combine.StatsLink(9, (0, 1, 2)) if stats else None)
        assert cp.not_inlined[1:] == ("", "")
        assert "400-byte stack frame" in cp.not_inlined[0] and "xdp_deepstack" in \
            cp.not_inlined[0] and "512" in cp.not_inlined[0]
        assert [s.inlined for s in cp.slots] == [False, True, True]
        for pair in ([big, small], [deep, small]):
            assert combine.combine(pair, fds(pair), 3).not_inlined == ("", "")


def test_recursive_entry_stays_refused_with_inlining() -> None:
    """An entry called back by its own subprogram is recursion: refused, inline or not."""
    entry = _enc(I.call_pseudo(-1), I.mov64_imm(0, 2), I.exit_insn())
    sub = _enc(I.call_pseudo(-1), I.exit_insn())
    o = synth("rec", [("e", entry, (RelocSpec(0, RelocKind.CALL, "s", target_section=".text",
                                              target_insn=0),)),
                      ("s", sub, (RelocSpec(0, RelocKind.CALL, "e", target_section="xdp",
                                            target_insn=0),))])
    with pytest.raises(combine.LinkError, match="recursive"):
        combine.combine([synth_comp(o)], [{}], 3)


def test_description_records_inlining_and_the_switch() -> None:
    comps = [comp(example("xdp_counter")), comp(example("xdp_drop_icmp"))]
    ids: list[dict[str, int]] = [{}, {}]
    on = combine.description(comps, ids, "hybrid", not_inlined=("", "why not"))
    off = combine.description(comps, ids, "hybrid", not_inlined=("off", "off"), inline=False)
    old = combine.description(comps, ids, "hybrid")
    js = on.to_json()["slots"]
    assert isinstance(js, list)
    assert js[0]["inlined"] is True and "not_inlined" not in js[0]
    assert js[1]["inlined"] is False and js[1]["not_inlined"] == "why not"
    assert "inline" not in on.to_json() and off.to_json()["inline"] is False
    assert description.parse(description.encode(on)) == on
    assert description.parse(description.encode(off)) == off
    assert "inlined" not in json.dumps(old.to_json())     # a chain that does not inline
