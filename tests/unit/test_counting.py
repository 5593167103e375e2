"""The counting code both chain kinds generate (dispatcher.chain.counting) and the names
of a freplace chain's counter pins (dispatcher.chain.stats): pure checks. The programs
themselves run in tests/host/test_fexit_stats.py (VM: tracing needs freplace)."""

from __future__ import annotations

import pytest

from dispatcher.chain import counting
from dispatcher.chain import stats as cs
from dispatcher.chain.linked import combine
from dispatcher.obj import insn as I


def _jump_targets(code: bytes) -> list[int]:
    insns = I.decode(code)
    out = []
    for k, ins in enumerate(insns):
        if ins.cls in (I.BPF_JMP, I.BPF_JMP32) and ins.code not in (I.OP_CALL, I.OP_EXIT):
            out.append(k + ins.off + 1)
    return out


@pytest.mark.parametrize("timing", [False, True])
def test_fexit_program_jumps_stay_inside_and_it_returns_zero(timing: bool) -> None:
    code = counting.fexit_program(7, timing)
    insns = I.decode(code)
    n = len(insns)
    assert all(0 <= t < n for t in _jump_targets(code))
    assert insns[-1].code == I.OP_EXIT and insns[-2] == I.mov64_imm(0, 0)
    # every timing exit (no clock, no start, no cell) lands on the counting, which starts
    # by reading the verdict from the argument array
    first_count = next(k for k, i in enumerate(insns) if i == I.ldx_mem(I.BPF_DW, 0, 6, 8))
    if timing:
        exits = [k + i.off + 1 for k, i in enumerate(insns[:first_count])
                 if i.cls == I.BPF_JMP and i.code not in (I.OP_CALL, I.OP_EXIT)]
        assert exits and all(t == first_count for t in exits), (exits, first_count)
    else:
        assert first_count == 1
    helpers = [i.imm for i in insns if i.code == I.OP_CALL and i.src == 0]
    assert helpers.count(5) == int(timing)          # bpf_ktime_get_ns


def test_fentry_program_stores_the_clock_in_the_start_cell() -> None:
    insns = I.decode(counting.fentry_program(3))
    assert insns[0] == I.call_helper(5)
    assert I.st_mem(I.BPF_W, 10, -4, cs.START_KEY) in insns
    assert insns[-1].code == I.OP_EXIT and insns[-2] == I.mov64_imm(0, 0)


def test_count_block_is_the_linked_chains_counting() -> None:
    """One rule, one implementation: the linked main's block is count_block with the XDP
    context's length."""
    assert combine._count(3, 9, -12) == counting.count_block(
        3 * cs.NUM_ACTIONS, 9, -12, counting.xdp_md_length())


def test_count_block_reads_the_kernel_xdp_buff_for_fexit() -> None:
    block = counting.count_block(0, 9, -4, counting.xdp_buff_length())
    assert I.ldx_mem(I.BPF_DW, 2, 6, 8) in block and I.ldx_mem(I.BPF_DW, 3, 6, 0) in block


@pytest.mark.parametrize(("name", "parsed"), [
    ("4026531840-7-counts", (4026531840, 7, "counts")),
    ("4026531840-7-timing", (4026531840, 7, "timing")),
    ("4026531840-7-42", (4026531840, 7, 42)),
    ("1-2-off", None), ("1-2-0", None), ("1-2-042", None), ("1-2", None), ("a-2-3", None),
    ("1-b-3", None), ("1-2-3-4", None), ("1-2-x", None), ("", None), ("1--3", None),
])
def test_counter_dir_names_parse_back(name: str, parsed: object) -> None:
    assert cs.parse_dir(name) == parsed


def test_counter_dir_names_round_trip() -> None:
    assert cs.parse_dir(cs.interface_dir(5, 6, "timing")) == (5, 6, "timing")
    assert cs.parse_dir(cs.component_dir(5, 6, 77)) == (5, 6, 77)
    assert cs.FEXIT_ENTRIES == cs.START_KEY + 1 == cs.TIME_KEY + 2 == cs.NUM_ACTIONS + 2
