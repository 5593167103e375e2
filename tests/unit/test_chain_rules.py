"""chain/rules.py and the back-ends' pure plans: every refusal, the back-end choice and the
member order, without a kernel (the host and VM tiers run the same rules for real)."""

from __future__ import annotations

import pytest

from dispatcher.chain import protocol, rules
from dispatcher.chain.description import ChainDescription, SlotDescription
from dispatcher.chain.freplace import plan as fplan
from dispatcher.chain.linked import plan as lplan
from dispatcher.chain.model import NewProgram, request, settings_json, with_settings
from dispatcher.chain.state import Component, DispatcherInfo, InterfaceState, ProgFacts
from dispatcher.errors import ForeignStateError, NotSupportedError, UsageError
from dispatcher.obj.elf import read_object
from dispatcher.uapi import BPF_F_XDP_HAS_FRAGS
from tests.objects import example

PASS = 1 << 2
MAIN = ProgFacts(42, "xdp_dispatcher", "xdp_dispatcher", "00112233445566aa", 9, (1,))
PLAIN = ProgFacts(7, "xdp_prog", "xdp_prog_full", "aa" * 8, 3, ())


def comp(slot: int, name: str, pid: int, prio: int) -> Component:
    return Component(slot, name, pid, f"{pid:016x}", prio, ("XDP_PASS",), False, load_time=pid)


def dispatcher_state(*comps: Component, version: int = protocol.VERSION,
                     mode: str = "skb", problems: tuple[str, ...] = (),
                     devbound: bool = False) -> InterfaceState:
    return InterfaceState("eth0", 3, mode, "dispatcher", main=MAIN,
                          dispatcher=DispatcherInfo(42, version, False, pin_dir="/b/xdp/d",
                                                    devbound=devbound),
                          programs=comps, problems=problems)


NONE = InterfaceState("eth0", 3, None, "none")
LEGACY = InterfaceState("eth0", 3, "skb", "legacy", main=PLAIN)
LINKED = InterfaceState("eth0", 3, "skb", "linked", main=MAIN, description=ChainDescription(
    "xdp-dispatch", "hybrid", False, tuple(
        SlotDescription(label, 50, ("XDP_PASS",), False, "/o.o", sha, "xdp_pass", "xdp", ())
        for label, sha in (("a", "11" * 8), ("b", "22" * 8)))))


def new(name: str = "xdp_pass", prio: int = 50, **kw: object) -> NewProgram:
    obj = read_object(example(name))
    return NewProgram(obj, obj.programs[0], prio, PASS, **kw)  # type: ignore[arg-type]


def req(**kw: object) -> object:
    kw.setdefault("mode", "skb")
    kw.setdefault("root", "/sys/fs/bpf")
    return request("eth0", **kw)  # type: ignore[arg-type]


def never() -> bool:
    raise AssertionError("the probe must not be asked")


# ------------------------------------------------------------------ choosing a back-end

@pytest.mark.parametrize("st,kw,probe,want", [
    (LINKED, {"add": [new()]}, never, "linked"),               # a linked chain stays linked
    (LINKED, {"remove_all": True}, never, "linked"),
    (NONE, {"remove_names": {"a"}}, never, "linked"),          # names: the linked rules say why
    (NONE, {"remove_names": {"a"}, "remove_all": True}, never, "freplace"),
    (NONE, {"add": [new()], "dispatch": "linked"}, never, "linked"),
    (NONE, {"dispatch": "linked", "remove_all": True}, never, "freplace"),
    (NONE, {"add": [new(), new()]}, lambda: True, "freplace"),
    (NONE, {"add": [new(), new()]}, lambda: False, "linked"),
    (NONE, {"add": [new()]}, never, "freplace"),               # one program: freplace's rules
    (NONE, {"add": [new(), new()], "dispatch": "freplace"}, never, "freplace"),
])
def test_choose_backend(st: InterfaceState, kw: dict[str, object], probe: object,
                        want: str) -> None:
    assert rules.choose_backend(st, req(**kw), probe) == want  # type: ignore[arg-type]


def test_freplace_cannot_add_to_a_linked_chain() -> None:
    with pytest.raises(ForeignStateError, match="has a linked chain attached; --dispatch "
                       "freplace cannot add to it") as e:
        rules.choose_backend(LINKED, req(add=[new()], dispatch="freplace"), never)  # type: ignore[arg-type]
    assert "--dispatch auto|linked" in (e.value.hint or "")


@pytest.mark.parametrize("kw,msg", [({"mode": "bogus"}, "unknown mode 'bogus'"),
                                    ({"dispatch": "x"}, "unknown dispatch mode 'x'")])
def test_request_values_are_checked(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        rules.check_request(req(**kw))  # type: ignore[arg-type]


# ------------------------------------------------------------------ freplace refusals

@pytest.mark.parametrize("st,kw,err,msg", [
    (LEGACY, {"add": [new()]}, ForeignStateError,
     r"has a program that is not a dispatcher attached \(xdp_prog_full, id 7\)"),
    (dispatcher_state(comp(0, "a", 11, 10), version=1), {"add": [new()]}, ForeignStateError,
     "protocol version 1, older than ours"),
    (dispatcher_state(comp(0, "a", 11, 10), version=4), {"add": [new()]}, ForeignStateError,
     "protocol version 4; this tool writes versions 2 and 3 and will not change it"),
    (dispatcher_state(comp(0, "a", 11, 10), version=3, devbound=True),
     {"dispatcher_version": 2}, ForeignStateError,
     r"the dispatcher is device-bound \(v3, bound to eth0\) and so are its components; "
     "a v2 dispatcher cannot be device-bound"),
    (dispatcher_state(comp(0, "a", 11, 10), problems=("slot 0: pin missing",)),
     {"add": [new()]}, ForeignStateError, "cannot be changed: slot 0: pin missing"),
    (dispatcher_state(comp(0, "a", 11, 10)), {"remove_ids": {99}}, UsageError,
     r"no program with id 99 in the chain \(ids: 11\)"),
    (dispatcher_state(comp(0, "a", 11, 10), mode="native"), {"add": [new()]}, UsageError,
     "attached in native mode, not skb"),
    (NONE, {"remove_ids": {5}}, UsageError, "no XDP program is attached"),
])
def test_freplace_refusals(st: InterfaceState, kw: dict[str, object], err: type,
                           msg: str) -> None:
    with pytest.raises(err, match=msg):
        rules.check_freplace(st, req(**kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("st,kw", [
    (LEGACY, {"add": [new()], "force": True}),
    (LEGACY, {"remove_ids": {7}}),
    (dispatcher_state(comp(0, "a", 11, 10), version=3), {"remove_all": True}),
    (dispatcher_state(comp(0, "a", 11, 10), version=3), {"add": [new()]}),   # v3 is ours too
    (dispatcher_state(comp(0, "a", 11, 10), version=3, devbound=True), {"add": [new()]}),
    (dispatcher_state(comp(0, "a", 11, 10), version=3, devbound=True), {"remove_ids": {11}}),
    (dispatcher_state(comp(0, "a", 11, 10), version=1), {"dispatcher_version": 2}),
    (dispatcher_state(comp(0, "a", 11, 10), version=2), {"dispatcher_version": 3}),
    (dispatcher_state(comp(0, "a", 11, 10), version=3), {"dispatcher_version": 2}),
    (dispatcher_state(comp(0, "a", 11, 10), mode="native"), {"remove_all": True}),
])
def test_freplace_allows(st: InterfaceState, kw: dict[str, object]) -> None:
    rules.check_freplace(st, req(**kw))  # type: ignore[arg-type]


def test_a_v1_chain_is_refused_with_the_upgrade_command() -> None:
    st = dispatcher_state(comp(0, "a", 11, 10), version=1)
    with pytest.raises(ForeignStateError, match="protocol version 1, older than ours "
                       r"\(2\); refusing a transparent upgrade \(dispatcher v1: read by "
                       r"libxdp 1.0.0 and later, extended by 1.0.0 to 1.2.10\)") as e:
        rules.check_freplace(st, req(add=[new()]))  # type: ignore[arg-type]
    assert e.value.hint == ("upgrade it explicitly (xdp-dispatch upgrade eth0 "
                            "--dispatcher-version 2), or unload it first: xdp-dispatch "
                            "unload eth0 --all")


@pytest.mark.parametrize("v,msg", [
    (1, "dispatcher version 1 cannot be written: this tool writes 2 and 3 "
        r"\(v1 is what libxdp 1.0 to 1.2 wrote; it is read, not written\)"),
    (4, "dispatcher version 4 cannot be written: this tool writes 2 and 3$"),
])
def test_only_written_versions_can_be_asked_for(v: int, msg: str) -> None:
    with pytest.raises(UsageError, match=msg) as e:
        rules.check_request(req(dispatcher_version=v))  # type: ignore[arg-type]
    assert "--dispatcher-version 2" in (e.value.hint or "")
    rules.check_request(req(dispatcher_version=3))  # type: ignore[arg-type]


@pytest.mark.parametrize("st,msg", [
    (NONE, "eth0: has no XDP program attached; there is no dispatcher to upgrade"),
    (LEGACY, "eth0: has a program that is not a dispatcher attached; there is no"),
    (LINKED, "a linked chain is one XDP program, not libxdp's dispatcher: it has no"),
])
def test_upgrade_needs_a_dispatcher(st: InterfaceState, msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        rules.check_upgrade(st, "eth0", 3)


def test_upgrade_to_the_same_version_is_nothing_to_do() -> None:
    st = dispatcher_state(comp(0, "a", 11, 10), version=3)
    assert not rules.check_upgrade(st, "eth0", 3)
    assert rules.check_upgrade(st, "eth0", 2)
    with pytest.raises(UsageError, match="version 1 cannot be written"):
        rules.check_upgrade(st, "eth0", 1)


def test_linked_chains_refuse_a_dispatcher_version() -> None:
    with pytest.raises(UsageError, match="--dispatcher-version applies to freplace chains"):
        rules.check_linked(NONE, req(add=[new()], dispatcher_version=3, dispatch="linked"))  # type: ignore[arg-type]
    assert rules.check_linked(LINKED, req(remove_all=True, dispatcher_version=3,  # type: ignore[arg-type]
                                          dispatch="linked"))
    # auto on a kernel without freplace links the chain: a config's version has no say
    assert not rules.check_linked(NONE, req(add=[new()], dispatcher_version=3))  # type: ignore[arg-type]


def test_linked_chain_seen_by_freplace_is_a_race() -> None:
    with pytest.raises(rules.Race):
        rules.check_freplace(LINKED, req(add=[new()]))  # type: ignore[arg-type]


def test_slot_limit() -> None:
    rules.check_slots("eth0", protocol.MAX_SLOTS)
    with pytest.raises(UsageError, match="11 programs requested; a dispatcher has 10 slots"):
        rules.check_slots("eth0", protocol.MAX_SLOTS + 1)


# ------------------------------------------------------------------ freplace plan

def test_freplace_plan_orders_kept_and_new_members_and_updates() -> None:
    st = dispatcher_state(comp(0, "a", 11, 10), comp(1, "b", 12, 30), comp(2, "c", 13, 40))
    p = fplan.plan(st, req(add=[new(prio=20)], remove_ids={13}, update={12: (5, PASS)}),  # type: ignore[arg-type]
                   never)
    assert [(m.name, m.priority, m.existing, m.new) for m in p.members] == [
        ("b", 5, 1, -1), ("a", 10, 0, -1), ("xdp_pass", 20, -1, 0)]
    assert p.old_pin_dir == "/b/xdp/d" and not p.direct


def test_freplace_plan_equal_priority_kept_before_new() -> None:
    st = dispatcher_state(comp(0, "xdp_pass", 11, 50))
    p = fplan.plan(st, req(add=[new(prio=50)]), never)  # type: ignore[arg-type]
    assert [(m.existing, m.new) for m in p.members] == [(0, -1), (-1, 0)]


def test_freplace_plan_without_freplace() -> None:
    p = fplan.plan(NONE, req(add=[new()]), lambda: (False, "EPERM"))  # type: ignore[arg-type]
    assert p.direct and p.probe_detail == "EPERM"
    with pytest.raises(NotSupportedError, match="a chain of 2 programs needs freplace") as e:
        fplan.plan(NONE, req(add=[new(), new()]), lambda: (False, "EPERM"))  # type: ignore[arg-type]
    assert "--dispatch linked" in (e.value.hint or "")


def no_host() -> int:
    raise AssertionError("the host's libxdp must not be asked")


@pytest.mark.parametrize("version,devbound,kw,host,want", [
    (2, False, {"add": [new()]}, no_host, (2, False)),           # v2 stays v2
    (3, False, {"add": [new()]}, no_host, (3, False)),           # v3 stays v3
    (3, True, {"add": [new()]}, no_host, (3, True)),             # devbound kept
    (3, True, {"remove_ids": {11}}, no_host, (3, True)),
    (3, False, {"add": [new()], "dispatcher_version": 3}, no_host, (3, False)),
    (2, False, {"dispatcher_version": 3}, no_host, (3, False)),  # upgrade
    (3, False, {"dispatcher_version": 2}, no_host, (2, False)),  # downgrade
    (1, False, {"dispatcher_version": 2}, no_host, (2, False)),
])
def test_an_attached_chain_keeps_its_version(version: int, devbound: bool,
                                             kw: dict[str, object], host: object,
                                             want: tuple[int, bool]) -> None:
    st = dispatcher_state(comp(0, "a", 11, 10), comp(1, "b", 12, 20), version=version,
                          devbound=devbound)
    p = fplan.plan(st, req(**kw), never, host)  # type: ignore[arg-type]
    assert (p.version, p.devbound) == want


@pytest.mark.parametrize("kw,host,want", [
    ({}, lambda: 3, 3),               # the host's libxdp 1.6 writes v3
    ({}, lambda: 2, 2),
    ({}, lambda: 0, protocol.VERSION),   # no libxdp installed: v2, read by libxdp >= 1.3
    ({}, lambda: 1, protocol.VERSION),   # libxdp <= 1.2 (v1): we do not write v1
    ({"dispatcher_version": 2}, no_host, 2),
    ({"dispatcher_version": 3}, no_host, 3),
])
def test_a_fresh_chain_gets_the_asked_or_the_host_version(kw: dict[str, object], host: object,
                                                          want: int) -> None:
    p = fplan.plan(NONE, req(add=[new(), new()], **kw), lambda: (True, ""), host)  # type: ignore[arg-type]
    assert (p.version, p.devbound) == (want, False)
    p = fplan.plan(LEGACY, req(add=[new()], force=True, **kw), lambda: (True, ""), host)  # type: ignore[arg-type]
    assert p.version == want


def test_freplace_plan_remove_all_keeps_nothing() -> None:
    st = dispatcher_state(comp(0, "a", 11, 10))
    p = fplan.plan(st, req(remove_all=True), never)  # type: ignore[arg-type]
    assert p.members == () and p.old_pin_dir == "/b/xdp/d"


# ------------------------------------------------------------------ linked refusals and plan

@pytest.mark.parametrize("st,kw,err,msg", [
    (dispatcher_state(comp(0, "a", 11, 10)), {"add": [new()]}, ForeignStateError,
     "has a freplace dispatcher chain .*cannot be turned into a linked chain"),
    (LEGACY, {"add": [new()]}, ForeignStateError, "is not a dispatcher attached"),
    (NONE, {"remove_names": {"a"}}, UsageError, "no XDP program is attached"),
    (LINKED, {"remove_ids": {5}}, UsageError, "components have no program ids of their own"),
    (LINKED, {"add": [new()], "mode": "native"}, UsageError, "attached in skb mode, not native"),
    (LINKED, {"remove_names": {"zz"}}, UsageError,
     r"no component named 'zz' in the linked chain \(components: a, b\)"),
    (LEGACY, {"remove_names": {"a"}, "force": True}, UsageError,
     "removing by name .* works on linked chains; this interface has kind legacy"),
])
def test_linked_refusals(st: InterfaceState, kw: dict[str, object], err: type, msg: str) -> None:
    with pytest.raises(err, match=msg):
        lplan.plan(st, req(**kw))  # type: ignore[arg-type]


def test_linked_plan_removal_and_reuse_of_a_removed_slot() -> None:
    n = new(label="a", sha256="11" * 8)
    p = lplan.plan(LINKED, req(add=[n], remove_names={"a"}))  # type: ignore[arg-type]
    assert p.removed == {0} and p.reuse == (0,) and not p.empty
    other = new(label="a", sha256="33" * 8)            # another object: no maps carried
    assert lplan.plan(LINKED, req(add=[other], remove_names={"a"})).reuse == (-1,)  # type: ignore[arg-type]


def test_linked_plan_empty_when_everything_goes() -> None:
    assert lplan.plan(LINKED, req(remove_names={"a", "b"})).empty  # type: ignore[arg-type]
    assert lplan.plan(LINKED, req(remove_ids={42})).remove_all     # the chain's own id  # type: ignore[arg-type]
    assert not lplan.plan(LINKED, req(remove_names={"a"})).empty  # type: ignore[arg-type]


# ------------------------------------------------------------------ settings

def test_settings_round_trip() -> None:
    obj = read_object(example("xdp_pass"))
    s = settings_json(None, "/sys/fs/bpf/p", False)
    o2, prog, pin_dir = with_settings(obj, obj.programs[0].name, s)
    assert pin_dir == "/sys/fs/bpf/p" and not prog.prog_flags & BPF_F_XDP_HAS_FRAGS
    _o, prog, _d = with_settings(obj, obj.programs[0].name, settings_json(None, None, True))
    assert prog.prog_flags & BPF_F_XDP_HAS_FRAGS
    assert with_settings(obj, obj.programs[0].name, "")[2] is None


# ------------------------------------------------------------------ names (unload -n)

def test_names_of_a_freplace_chain_become_ids() -> None:
    st = dispatcher_state(comp(0, "a", 11, 10), comp(1, "b", 12, 20))
    r = rules.resolve_names(st, req(remove_names={"b"}))  # type: ignore[arg-type]
    assert r.remove_ids == {12} and not r.remove_names
    assert rules.choose_backend(st, r, never) == "freplace"


def test_a_name_two_components_share_is_refused_with_the_ids() -> None:
    st = dispatcher_state(comp(0, "a", 11, 10), comp(1, "a", 12, 20))
    with pytest.raises(UsageError, match=r"2 components are named 'a' \(ids 11, 12\)") as e:
        rules.resolve_names(st, req(remove_names={"a"}))  # type: ignore[arg-type]
    assert e.value.hint == "xdp-dispatch unload eth0 -i ID"
    with pytest.raises(UsageError, match=r"no component named 'z' in the chain \(components: a, a\)"):
        rules.resolve_names(st, req(remove_names={"z"}))  # type: ignore[arg-type]


def test_a_program_attached_directly_goes_by_its_name() -> None:
    r = rules.resolve_names(LEGACY, req(remove_names={"xdp_prog_full"}))  # type: ignore[arg-type]
    assert r.remove_all and not r.remove_names
    with pytest.raises(UsageError, match=r"no program named 'x' is attached \(attached directly: "
                       r"xdp_prog_full, id 7\)"):
        rules.resolve_names(LEGACY, req(remove_names={"x"}))  # type: ignore[arg-type]


def test_linked_chains_keep_names() -> None:
    r = req(remove_names={"a"})
    assert rules.resolve_names(LINKED, r) is r  # type: ignore[arg-type]


def test_second_program_without_freplace_hints_at_loading_both_linked() -> None:
    with pytest.raises(ForeignStateError) as e:
        rules.check_freplace(LEGACY, req(add=[new()]), lambda: (False, "EPERM"))  # type: ignore[arg-type]
    assert "load the programs together (xdp-dispatch load eth0 A.o B.o)" in (e.value.hint or "")
    with pytest.raises(ForeignStateError) as e:
        rules.check_freplace(LEGACY, req(add=[new()]), lambda: (True, ""))  # type: ignore[arg-type]
    assert e.value.hint == ("remove it first (xdp-dispatch unload eth0 --all), or pass --force "
                            "to replace it")


def test_an_upgrade_keeps_every_component_in_its_slot() -> None:
    st = dispatcher_state(comp(0, "a", 11, 10), comp(1, "b", 12, 20), comp(2, "c", 13, 30))
    p = fplan.plan(st, req(dispatcher_version=3), never, no_host)  # type: ignore[arg-type]
    assert [(m.name, m.priority, m.existing, m.new) for m in p.members] == [
        ("a", 10, 0, -1), ("b", 20, 1, -1), ("c", 30, 2, -1)]
    assert (p.version, p.devbound, p.old_pin_dir, p.direct) == (3, False, "/b/xdp/d", False)
