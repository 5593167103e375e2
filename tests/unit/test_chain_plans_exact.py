"""The freplace and linked back-ends' pure plans, member by member (the mutation run
found kept components' actions, frags and keys, the probe's use and the refusal text
unchecked)."""

from __future__ import annotations

import pytest

from dispatcher.chain import protocol
from dispatcher.chain.description import ChainDescription, SlotDescription
from dispatcher.chain.freplace import plan as fplan
from dispatcher.chain.linked import plan as lplan
from dispatcher.chain.state import Component, DispatcherInfo, InterfaceState
from dispatcher.chain.stats import DEFAULT_LINKED
from dispatcher.errors import NotSupportedError
from tests.unit.test_chain_rules import LEGACY, MAIN, NONE, dispatcher_state, never, new, req

PASS, DROP = 4, 2


def _comp(slot: int, name: str, pid: int, prio: int, acts: tuple[str, ...] = ("XDP_PASS",),
          frags: bool = False) -> Component:
    return Component(slot, name, pid, f"{pid:016x}", prio, acts, frags, load_time=1000 + pid)


def test_freplace_members_in_full() -> None:
    st = dispatcher_state(_comp(0, "a", 11, 10, ("XDP_DROP", "XDP_PASS"), frags=True),
                          _comp(1, "b", 12, 30), _comp(2, "c", 13, 40))
    p = fplan.plan(st, req(add=[new("xdp_frags", prio=20), new("xdp_pass_long", prio=30)],
                           remove_ids={13}, update={12: (30, DROP)}), never)  # type: ignore[arg-type]
    got = [(m.name, m.priority, m.actions, m.frags, m.existing, m.new) for m in p.members]
    assert got == [("a", 10, DROP | PASS, True, 0, -1), ("xdp_frags", 20, PASS, True, -1, 0),
                   ("b", 30, DROP, False, 1, -1), ("xdp_pass", 30, PASS, False, -1, 1)]
    assert p.members[0].key == protocol.sort_key(protocol.SortKey(
        10, "a", True, 0, bytes.fromhex(f"{11:016x}"), 1011))
    assert p.members[3].key == protocol.sort_key(protocol.SortKey(30, "xdp_pass", False, 8))
    assert (p.old_pin_dir, p.direct, p.probe_detail) == ("/b/xdp/d", False, "")


def test_freplace_probe_is_asked_only_without_components() -> None:
    asked = []

    def probe() -> tuple[bool, str]:
        asked.append(1)
        return True, ""

    fplan.plan(dispatcher_state(_comp(0, "a", 11, 10)), req(add=[new()]), never)  # type: ignore[arg-type]
    p = fplan.plan(dispatcher_state(), req(add=[new()]), probe)  # type: ignore[arg-type]
    assert asked == [1] and not p.direct and p.old_pin_dir == "/b/xdp/d"
    p = fplan.plan(NONE, req(add=[new()]), probe)  # type: ignore[arg-type]
    assert asked == [1, 1] and p.old_pin_dir is None
    assert fplan.plan(NONE, req(), never) == fplan.FreplacePlan((), None)  # type: ignore[arg-type]


def test_freplace_refused_cases() -> None:
    refuse = lambda: (False, "EPERM")  # noqa: E731
    direct = fplan.plan(LEGACY, req(add=[new()], force=True), refuse)  # type: ignore[arg-type]
    assert direct.direct and direct.probe_detail == "EPERM" and direct.old_pin_dir is None
    with pytest.raises(NotSupportedError) as e:
        fplan.plan(NONE, req(add=[new(), new("xdp_counter")]), refuse)  # type: ignore[arg-type]
    assert (e.value.message, e.value.hint, e.value.exit_code) == (
        "eth0: probe freplace: Operation not supported (ENOTSUP): the running kernel refuses "
        "extension programs (EPERM); a chain of 2 programs needs freplace (Linux >= 5.10 with "
        "BPF trampolines)",
        "use --dispatch linked (or auto) to link the programs into one XDP program, load a "
        "single program, or use a kernel that allows BPF_PROG_TYPE_EXT", 3)
    # an empty attached dispatcher: one new program still needs freplace (not direct)
    empty = InterfaceState("eth0", 3, "skb", "dispatcher", main=MAIN,
                           dispatcher=DispatcherInfo(42, protocol.VERSION, False, pin_dir="/p"))
    with pytest.raises(NotSupportedError, match="a chain of 1 programs needs freplace"):
        fplan.plan(empty, req(add=[new()]), refuse)  # type: ignore[arg-type]


def test_freplace_slot_limit_counts_kept_and_new() -> None:
    st = dispatcher_state(*(_comp(i, "a", 11 + i, 10) for i in range(9)))
    assert len(fplan.plan(st, req(add=[new()]), never).members) == 10  # type: ignore[arg-type]
    with pytest.raises(Exception, match="11 programs requested"):
        fplan.plan(st, req(add=[new(), new()]), never)  # type: ignore[arg-type]
    assert len(fplan.plan(st, req(add=[new(), new()], remove_ids={11}),  # type: ignore[arg-type]
                          never).members) == 10


def _linked(*slots: tuple[str, str, str, str]) -> InterfaceState:
    return InterfaceState("eth0", 3, "skb", "linked", main=MAIN, description=ChainDescription(
        "t", "hybrid", False, tuple(
            SlotDescription(label, 50, ("XDP_PASS",), False, "/o.o", sha, prog, "xdp", (),
                            settings=settings)
            for label, sha, prog, settings in slots)))


def test_linked_reuse_needs_label_object_program_and_settings_equal() -> None:
    st = _linked(("a", "11", "xdp_pass", ""), ("xdp_pass", "11", "xdp_pass", ""),
                 ("c", "11", "xdp_pass", '{"x": 1}'))
    every = {"a", "xdp_pass", "c"}
    p = lplan.plan(st, req(add=[new(label="a", sha256="11"), new(sha256="11"),  # type: ignore[arg-type]
                                new(label="c", sha256="11", settings='{"x": 1}')],
                           remove_names=every))
    assert p.reuse == (0, 1, 2) and p.removed == frozenset({0, 1, 2}) and not p.empty
    for other in (new(label="a", sha256=""), new(label="a", sha256="22"),
                  new("xdp_counter", label="a", sha256="11"),
                  new(label="c", sha256="11", settings='{"x": 2}')):
        assert lplan.plan(st, req(add=[other], remove_names=every)).reuse == (-1,)  # type: ignore[arg-type]
    # a removed slot is taken once
    two = lplan.plan(st, req(add=[new(label="a", sha256="11"), new(label="a", sha256="11")],  # type: ignore[arg-type]
                             remove_names={"a"}))
    assert two.reuse == (0, -1)
    assert lplan.plan(NONE, req(add=[new()])) == lplan.LinkedPlan(  # type: ignore[arg-type]
        False, None, frozenset(), (-1,), DEFAULT_LINKED == "counts")
    assert lplan.plan(st, req(remove_all=True)) == lplan.LinkedPlan(  # type: ignore[arg-type]
        True, st.description, frozenset(), ())
    assert lplan.plan(st, req(remove_all=True)).empty  # type: ignore[arg-type]
    assert lplan.LinkedPlan(False, None, frozenset(), ()).empty
    assert not lplan.LinkedPlan(False, None, frozenset(), (-1,)).empty


def test_freplace_plan_edges() -> None:
    st = dispatcher_state(*(_comp(i, "a", 11 + i, 10) for i in range(10)))
    with pytest.raises(Exception, match="^eth0: 11 programs requested; a dispatcher has 10 slots$"):
        fplan.plan(st, req(add=[new()]), never)  # type: ignore[arg-type]
    linked = InterfaceState("eth0", 3, "skb", "linked", main=MAIN,
                            dispatcher=DispatcherInfo(42, 1, False, name="xdp_chain", pin_dir="/l"))
    assert fplan.plan(linked, req(remove_all=True), never) == fplan.FreplacePlan((), None)  # type: ignore[arg-type]
    direct = fplan.plan(NONE, req(add=[new()]), lambda: (False, "EPERM"))  # type: ignore[arg-type]
    assert [(m.name, m.new) for m in direct.members] == [("xdp_pass", 0)]
