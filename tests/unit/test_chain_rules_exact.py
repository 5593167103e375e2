"""Every refusal of chain/rules.py (and the linked plan's), word for word: message, hint
and exit code as the CLI prints them. The fragment matches of test_chain_rules.py let the
mutation run change hints, the other half of a message or an exit code unnoticed."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.chain import rules
from dispatcher.chain.linked import plan as lplan
from dispatcher.chain.state import InterfaceState
from dispatcher.errors import XdpDispatchError
from tests.unit.test_chain_rules import (
    LEGACY,
    LINKED,
    NONE,
    comp,
    dispatcher_state,
    never,
    new,
    req,
)

UNLOAD_OR_FORCE = "remove it first (xdp-dispatch unload eth0 --all), or pass --force to replace it"
NOT_A_DISPATCHER = "eth0 has a program that is not a dispatcher attached (xdp_prog_full, id 7)"
NOTHING = "eth0: no XDP program is attached"


def _run(kind: str, st: InterfaceState | None, kw: dict[str, Any]) -> None:
    if kind == "upgrade":
        rules.check_upgrade(st, "eth0", kw["version"])  # type: ignore[arg-type]
    elif kind == "choose":
        rules.choose_backend(st, req(**kw), never)  # type: ignore[arg-type]
    elif kind == "request":
        rules.check_request(req(**kw))  # type: ignore[arg-type]
    elif kind == "freplace":
        rules.check_freplace(st, req(**kw))  # type: ignore[arg-type]
    else:
        lplan.plan(st, req(**kw))  # type: ignore[arg-type]


CASES = [
    ("choose", LINKED, {"add": [new()], "dispatch": "freplace"}, 5,
     "eth0 has a linked chain attached; --dispatch freplace cannot add to it",
     "unload it first (xdp-dispatch unload eth0 --all), or use --dispatch auto|linked"),
    ("request", NONE, {"mode": "bogus"}, 2,
     "unknown mode 'bogus' (expected native, skb or hw)", None),
    ("request", NONE, {"dispatch": "x"}, 2,
     "unknown dispatch mode 'x' (expected auto, freplace, linked)", None),
    ("request", NONE, {"stats": "verbose"}, 2,
     "unknown stats setting 'verbose' (expected off, counts, timing)", None),
    ("request", NONE, {"dispatcher_version": 1}, 2,
     "dispatcher version 1 cannot be written: this tool writes 2 and 3 (v1 is what libxdp 1.0 "
     "to 1.2 wrote; it is read, not written)",
     "pass --dispatcher-version 2 (read by libxdp 1.3 and later) or 3 (libxdp 1.6 and later)"),
    ("request", NONE, {"dispatcher_version": 4}, 2,
     "dispatcher version 4 cannot be written: this tool writes 2 and 3",
     "pass --dispatcher-version 2 (read by libxdp 1.3 and later) or 3 (libxdp 1.6 and later)"),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10), version=3, devbound=True),
     {"add": [new()], "dispatcher_version": 2}, 5,
     "eth0: the dispatcher is device-bound (v3, bound to eth0) and so are its components; a v2 "
     "dispatcher cannot be device-bound, so they cannot be re-linked to it",
     "unload the chain (xdp-dispatch unload eth0 --all) and load its programs again with "
     "--dispatcher-version 2"),
    ("linked", NONE, {"add": [new()], "dispatch": "linked", "dispatcher_version": 3}, 2,
     "eth0: a linked chain is one XDP program, not libxdp's dispatcher: --dispatcher-version "
     "applies to freplace chains",
     "leave out --dispatcher-version (or dispatcher_version in a config), or use --dispatch "
     "freplace"),
    ("upgrade", LINKED, {"version": 3}, 2,
     "eth0: a linked chain is one XDP program, not libxdp's dispatcher: it has no dispatcher "
     "version to change", None),
    ("upgrade", NONE, {"version": 3}, 2,
     "eth0: has no XDP program attached; there is no dispatcher to upgrade",
     "load programs with xdp-dispatch load eth0 --dispatcher-version 3 OBJ"),
    ("upgrade", LEGACY, {"version": 2}, 2,
     "eth0: has a program that is not a dispatcher attached; there is no dispatcher to upgrade",
     "load programs with xdp-dispatch load eth0 --dispatcher-version 2 OBJ"),
    ("upgrade", dispatcher_state(), {"version": 1}, 2,
     "dispatcher version 1 cannot be written: this tool writes 2 and 3 (v1 is what libxdp 1.0 "
     "to 1.2 wrote; it is read, not written)",
     "pass --dispatcher-version 2 (read by libxdp 1.3 and later) or 3 (libxdp 1.6 and later)"),
    ("freplace", LEGACY, {"add": [new()]}, 5, NOT_A_DISPATCHER, UNLOAD_OR_FORCE),
    ("freplace", LEGACY, {"remove_ids": {8}}, 5, NOT_A_DISPATCHER, UNLOAD_OR_FORCE),
    ("freplace", InterfaceState("eth0", 3, "skb", "legacy"), {"add": [new()]}, 5,
     "eth0 has a program that is not a dispatcher attached (?, id ?)", UNLOAD_OR_FORCE),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10), version=1), {"add": [new()]}, 5,
     "eth0: the attached dispatcher uses protocol version 1, older than ours (2); refusing a "
     "transparent upgrade (dispatcher v1: read by libxdp 1.0.0 and later, extended by 1.0.0 "
     "to 1.2.10)", "upgrade it explicitly (xdp-dispatch upgrade eth0 --dispatcher-version 2), "
     "or unload it first: xdp-dispatch unload eth0 --all"),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10), version=4), {"add": [new()]}, 5,
     "eth0: the attached dispatcher uses protocol version 4; this tool writes versions 2 and 3 "
     "and will not change it",
     "unload it first (xdp-dispatch unload eth0 --all), or use the libxdp that wrote it"),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10), problems=(
        "slot 0: pin missing", "other", "slot 2: map missing")), {"add": [new()]}, 5,
     "eth0: dispatcher 42 cannot be changed: slot 0: pin missing; slot 2: map missing",
     "remove it with xdp-dispatch unload eth0 --all"),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10), comp(1, "b", 12, 20)),
     {"remove_ids": {99, 11}}, 2, "eth0: no program with id 99 in the chain (ids: 11, 12)", None),
    ("freplace", dispatcher_state(), {"remove_ids": {99}}, 2,
     "eth0: no program with id 99 in the chain (ids: none)", None),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10), mode="native"), {"add": [new()]}, 2,
     "eth0: the chain is attached in native mode, not skb", "pass -m native"),
    ("freplace", NONE, {"remove_ids": {5}}, 2, NOTHING, None),
    ("linked", dispatcher_state(comp(0, "a", 11, 10)), {"add": [new()]}, 5,
     "eth0 has a freplace dispatcher chain (id 42); it cannot be turned into a linked chain "
     "in place",
     "unload it first (xdp-dispatch unload eth0 --all), or use --dispatch freplace"),
    ("linked", LEGACY, {"add": [new()]}, 5, NOT_A_DISPATCHER, UNLOAD_OR_FORCE),
    ("linked", NONE, {"remove_names": {"a"}}, 2, NOTHING, None),
    ("linked", NONE, {"remove_ids": {3}}, 2, NOTHING, None),
    ("linked", LINKED, {"remove_ids": {5}}, 2,
     "eth0: the linked chain's components have no program ids of their own (the chain is "
     "program 42)", "remove a component by name: xdp-dispatch unload eth0 -n NAME"),
    ("linked", LINKED, {"remove_ids": {5, 42}}, 2,
     "eth0: the linked chain's components have no program ids of their own (the chain is "
     "program 42)", "remove a component by name: xdp-dispatch unload eth0 -n NAME"),
    ("linked", LINKED, {"add": [new()], "mode": "native"}, 2,
     "eth0: the linked chain is attached in skb mode, not native", "pass -m skb"),
    ("linked", LINKED, {"remove_names": {"zz", "a"}}, 2,
     "eth0: no component named 'zz' in the linked chain (components: a, b)", None),
    ("linked", LEGACY, {"remove_names": {"a"}, "force": True}, 2,
     "eth0: removing by name (-n) works on linked chains; this interface has kind legacy", None),
    ("linked", dispatcher_state(comp(0, "a", 11, 10)), {"remove_names": {"a"}, "remove_ids": {42}},
     2, "eth0: removing by name (-n) works on linked chains; this interface has kind dispatcher",
     None),
]


@pytest.mark.parametrize("kind,st,kw,code,msg,hint", CASES)
def test_refusal_word_for_word(kind: str, st: InterfaceState, kw: dict[str, Any], code: int,
                               msg: str, hint: str | None) -> None:
    with pytest.raises(XdpDispatchError) as e:
        _run(kind, st, kw)
    assert (e.value.message, e.value.hint, e.value.exit_code) == (msg, hint, code)


@pytest.mark.parametrize("kind,st,kw", [
    ("freplace", LEGACY, {"remove_all": True}),
    ("freplace", LEGACY, {"remove_ids": {7}}),
    ("freplace", LEGACY, {"add": [new()], "force": True}),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10), version=1), {"remove_all": True}),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10), version=3), {"add": [new()]}),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10)), {"remove_ids": {11}}),
    ("freplace", dispatcher_state(mode="native"), {"add": [new()]}),   # empty chain: any mode
    ("freplace", InterfaceState("eth0", 3, None, "dispatcher", main=None,
                                dispatcher=dispatcher_state().dispatcher), {"add": [new()]}),
    ("freplace", LINKED, {"remove_all": True}),
    ("freplace", NONE, {"add": [new()]}),
    ("linked", LINKED, {"remove_all": True, "mode": "native"}),
    ("linked", LINKED, {"remove_ids": {42}, "mode": "native"}),
    ("linked", dispatcher_state(comp(0, "a", 11, 10)), {"remove_ids": {42}}),
    ("linked", dispatcher_state(comp(0, "a", 11, 10)), {"remove_all": True}),
    ("linked", LEGACY, {"remove_ids": {7}}),
    ("linked", LEGACY, {"add": [new()], "force": True}),
    ("linked", NONE, {"add": [new()]}),
    ("linked", NONE, {"add": [new()], "dispatcher_version": 3}),     # auto: for a dispatcher
    ("linked", LINKED, {"remove_all": True, "dispatch": "linked", "dispatcher_version": 3}),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10)), {"add": [new()], "stats": "off"}),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10), version=3, devbound=True),
     {"add": [new()], "dispatcher_version": 3}),
    ("freplace", dispatcher_state(comp(0, "a", 11, 10), version=1),
     {"add": [new()], "dispatcher_version": 2}),        # an explicit upgrade of a v1 chain
    ("linked", InterfaceState("eth0", 3, None, "linked", main=None,
                              description=LINKED.description), {"add": [new()], "mode": "hw"}),
])
def test_allowed(kind: str, st: InterfaceState, kw: dict[str, Any]) -> None:
    _run(kind, st, kw)


def test_upgrade_says_whether_there_is_anything_to_do() -> None:
    assert rules.check_upgrade(dispatcher_state(version=2), "eth0", 3) is True
    assert rules.check_upgrade(dispatcher_state(version=3), "eth0", 3) is False


def test_slots_named_and_slot_limit() -> None:
    assert rules.slots_named("eth0", ["a", "b", "a"], frozenset({"a"})) == {0, 2}
    assert rules.slots_named("eth0", ["a", "b"], frozenset({"b", "a"})) == {0, 1}
    assert rules.slots_named("eth0", ["a"], frozenset()) == set()
    with pytest.raises(XdpDispatchError) as e:
        rules.slots_named("eth0", [], frozenset({"q"}))
    assert (e.value.message, e.value.exit_code) == (
        "eth0: no component named 'q' in the linked chain (components: none)", 2)
    rules.check_slots("eth0", 10)
    with pytest.raises(XdpDispatchError) as e:
        rules.check_slots("eth1", 11)
    assert (e.value.message, e.value.hint, e.value.exit_code) == (
        "eth1: 11 programs requested; a dispatcher has 10 slots", None, 2)


def test_linked_mode_is_not_compared_when_nothing_is_attached_in_a_mode() -> None:
    assert rules.check_linked(LINKED, req(add=[new()])) is False  # type: ignore[arg-type]
    assert rules.check_linked(LINKED, req(remove_ids={42})) is True  # type: ignore[arg-type]
    assert rules.check_linked(NONE, req(add=[new()])) is False  # type: ignore[arg-type]


def test_race_message_and_a_linked_chain_without_main() -> None:
    with pytest.raises(rules.Race, match="^a linked chain was attached meanwhile$"):
        rules.check_freplace(LINKED, req(add=[new()]))  # type: ignore[arg-type]
    bare = InterfaceState("eth0", 3, "skb", "linked", description=LINKED.description)
    with pytest.raises(XdpDispatchError, match=r"\(the chain is program 0\)$"):
        rules.check_linked(bare, req(remove_ids={1}))  # type: ignore[arg-type]
