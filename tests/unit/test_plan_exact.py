"""plan_interface / plan_linked / plan_text, output checked in full (every field, every
word of the text): the mutation run (scripts/mutation.sh) showed that checking only the
actions let wrong names, details, ids, modes and hints through."""

from __future__ import annotations

import json

from dispatcher.chain import protocol
from dispatcher.chain.description import ChainDescription, SlotDescription
from dispatcher.chain.state import Component, DispatcherInfo, InterfaceState, ProgFacts
from dispatcher.config.plan import (
    DesiredProgram,
    InterfacePlan,
    Owner,
    PlanItem,
    _settings_changed,
    plan_interface,
    plan_linked,
    plan_text,
)
from dispatcher.record import replace

PASS, DROP = 4, 2


def _d(name: str, prio: int, acts: int = PASS, sha: str = "a", prog: str = "f",
       path: str | None = None, settings: str = "") -> DesiredProgram:
    return DesiredProgram(name, path or f"/o/{name}.o", sha, prog, prio, acts, settings)


def _owner(pid: int, name: str, prio: int, sha: str = "a", prog: str = "f", iface: str = "eth0",
           path: str | None = None, settings: str = "", acts: int = PASS) -> Owner:
    return Owner(pid, iface, None, name, path or f"/o/{name}.o", sha, prog, prio, acts,
                 settings=settings)


def _state(*comps: tuple[int, str, int, tuple[str, ...]], mode: str = "skb") -> InterfaceState:
    cfg = protocol.decode_config(protocol.encode_config(2, [c[2] for c in comps],
                                                        [PASS] * len(comps), [0] * len(comps),
                                                        False))
    return InterfaceState("eth0", 2, mode, "dispatcher",
                          main=ProgFacts(1, "xdp_dispatcher", "xdp_dispatcher", "00" * 8, 1, (5,)),
                          dispatcher=DispatcherInfo(1, 2, False), config=cfg,
                          programs=tuple(Component(i, n, pid, "00" * 8, prio, acts, False)
                                         for i, (pid, n, prio, acts) in enumerate(comps)))


def test_dispatcher_plan_in_full() -> None:
    st = _state((11, "f", 10, ("XDP_PASS",)), (12, "f", 20, ("XDP_PASS",)),
                (13, "f", 30, ("XDP_PASS",)), (14, "f", 40, ("XDP_PASS",)),
                (15, "xdp_other", 50, ("XDP_DROP", "XDP_PASS")),
                (16, "f", 60, ("XDP_PASS",)), (17, "f", 70, ("XDP_PASS",)), mode="native")
    owners = {11: _owner(11, "keep", 10), 12: _owner(12, "prio", 20),
              13: _owner(13, "upg", 30), 14: _owner(14, "gone", 40),
              16: _owner(16, "elsewhere", 60, iface="eth9"),
              17: _owner(17, "set", 70, settings='{"frags": true}')}
    desired = [_d("keep", 10), _d("prio", 25, PASS | DROP), _d("upg", 30, sha="b"),
               _d("new", 5, DROP, prog="g"), _d("set", 70, settings='{"frags": false}')]
    p = plan_interface("eth0", "ns1", "skb", desired, st, owners, source="/c.yaml")
    assert p.to_json() == {
        "interface": "eth0", "netns": "ns1", "mode": "skb", "changed": True, "error": None,
        "items": [
            {"action": "keep", "name": "keep", "id": 11, "priority": 10,
             "chain_call_actions": ["XDP_PASS"], "detail": ""},
            {"action": "update", "name": "prio", "id": 12, "priority": 25,
             "chain_call_actions": ["XDP_DROP", "XDP_PASS"],
             "detail": "priority 20 -> 25, actions XDP_PASS -> XDP_DROP,XDP_PASS"},
            {"action": "upgrade", "name": "upg", "id": 13, "priority": 30,
             "chain_call_actions": ["XDP_PASS"], "detail": "object changed"},
            {"action": "add", "name": "new", "id": None, "priority": 5,
             "chain_call_actions": ["XDP_DROP"], "detail": "g from /o/new.o"},
            {"action": "upgrade", "name": "set", "id": 17, "priority": 70,
             "chain_call_actions": ["XDP_PASS"], "detail": "frags changed"},
            {"action": "remove", "name": "gone", "id": 14, "priority": 40,
             "chain_call_actions": ["XDP_PASS"], "detail": "no longer in the config"},
            {"action": "foreign", "name": "xdp_other", "id": 15, "priority": 50,
             "chain_call_actions": ["XDP_DROP", "XDP_PASS"],
             "detail": "not managed by this config: kept"},
            {"action": "foreign", "name": "f", "id": 16, "priority": 60,
             "chain_call_actions": ["XDP_PASS"], "detail": "not managed by this config: kept"},
        ]}
    assert p.observed_mode == "native" and not p.linked and p.dispatch == "auto"
    assert [i.kernel for i in p.items] == [(10, ("XDP_PASS",)), (20, ("XDP_PASS",)),
                                          (30, ("XDP_PASS",)), None, (70, ("XDP_PASS",)),
                                          None, None, None]
    assert [i.desired for i in p.items[:5]] == desired[:2] + [desired[2], desired[3], desired[4]]
    assert plan_text([p]) == (
        "eth0 (netns ns1) [skb]: changes\n"
        "    keep     keep                 id 11      prio 10  XDP_PASS\n"
        "  ~ update   prio                 id 12      prio 25  XDP_DROP,XDP_PASS"
        "  (priority 20 -> 25, actions XDP_PASS -> XDP_DROP,XDP_PASS)\n"
        "  ~ upgrade  upg                  id 13      prio 30  XDP_PASS  (object changed)\n"
        "  + add      new                  new        prio 5  XDP_DROP  (g from /o/new.o)\n"
        "  ~ upgrade  set                  id 17      prio 70  XDP_PASS  (frags changed)\n"
        "  - remove   gone                 id 14      prio 40  XDP_PASS  (no longer in the config)\n"
        "    foreign  xdp_other            id 15      prio 50  XDP_DROP,XDP_PASS"
        "  (not managed by this config: kept)\n"
        "    foreign  f                    id 16      prio 60  XDP_PASS"
        "  (not managed by this config: kept)\n"
        "Plan: 5 change(s) on 1 interface(s).\n")


def test_exclusive_and_program_and_path_changes() -> None:
    st = _state((11, "f", 10, ("XDP_PASS",)), (12, "f", 20, ("XDP_PASS",)),
                (15, "xdp_other", 50, ()))
    owners = {11: _owner(11, "prog", 10), 12: _owner(12, "path", 20)}
    desired = [_d("prog", 10, prog="g"), _d("path", 20, path="/elsewhere/path.o")]
    p = plan_interface("eth0", None, "skb", desired, st, owners, exclusive=True)
    assert [(i.action, i.name, i.prog_id, i.actions, i.detail) for i in p.items] == [
        ("upgrade", "prog", 11, ("XDP_PASS",), "program changed"),
        ("upgrade", "path", 12, ("XDP_PASS",), "program changed"),
        ("remove", "xdp_other", 15, (), "not managed by this config (--exclusive)")]
    assert plan_text([p]).splitlines()[-2] == (
        "  - remove   xdp_other            id 15      prio 50  -"
        "  (not managed by this config (--exclusive))")


def test_update_with_no_actions_shows_a_dash() -> None:
    st = _state((11, "f", 10, ()))
    p = plan_interface("eth0", None, "skb", [_d("a", 10, PASS)], st,
                       {11: _owner(11, "a", 10, acts=0)})
    assert p.items[0].detail == "priority 10 -> 10, actions - -> XDP_PASS"
    p = plan_interface("eth0", None, "skb", [_d("a", 10, 0)], _state((11, "f", 10, ("XDP_PASS",))),
                       {11: _owner(11, "a", 10)})
    assert p.items[0].detail == "priority 10 -> 10, actions XDP_PASS -> -"


def test_legacy_program_is_matched_through_its_owner() -> None:
    main = ProgFacts(7, "xdp_pass_long_name", "xdp_pass_long_n", "11" * 8, 2, ())
    st = InterfaceState("eth0", 2, "skb", "legacy", main=main)
    owners = {7: _owner(7, "a", 33, acts=PASS | DROP)}
    keep = plan_interface("eth0", None, "skb", [_d("a", 33, PASS | DROP)], st, owners)
    assert [(i.action, i.prog_id, i.kernel) for i in keep.items] == [
        ("keep", 7, (33, ("XDP_DROP", "XDP_PASS")))]
    assert keep.observed_mode == "skb" and not keep.changed
    foreign = plan_interface("eth0", None, "skb", [], st, {})
    assert [(i.action, i.name, i.priority, i.actions) for i in foreign.items] == [
        ("foreign", main.full_name, 0, ())]
    assert plan_interface("eth0", None, "skb", [], InterfaceState("eth0", 2, "skb", "none"),
                          {}).observed_mode is None


def test_owner_json_round_trip_keeps_every_field() -> None:
    o = Owner(5, "eth1", "ns", "n", "/o.o", "ff", "prog", 12, 6, config="/c.yaml",
              settings='{"a": 1}')
    js = o.to_json()
    assert js == {"prog_id": 5, "iface": "eth1", "netns": "ns", "name": "n", "object": "/o.o",
                  "sha256": "ff", "program": "prog", "priority": 12, "actions": 6,
                  "config": "/c.yaml", "settings": '{"a": 1}'}
    assert Owner.from_json(json.loads(json.dumps(js))) == o
    assert Owner.from_json({**js, "prog_id": "5", "priority": "12", "actions": "6"}) == o
    bare = {k: v for k, v in js.items() if k not in ("config", "settings", "netns")}
    assert Owner.from_json(bare) == Owner(5, "eth1", None, "n", "/o.o", "ff", "prog", 12, 6)
    assert o.managed_by == "/c.yaml" and Owner.from_json(bare).managed_by == "xdp-dispatch"


def test_settings_changed_names_exactly_the_changed_keys() -> None:
    assert _settings_changed('{"a": 1, "b": 2, "c": 3}', '{"a": 1, "b": 5, "d": 4}') == \
        "b, c, d changed"
    assert _settings_changed("", '{"z": 1, "y": 2}') == "y, z changed"
    assert _settings_changed('{"x": 1}', "") == "x changed"


def _slot(label: str, prio: int, acts: tuple[str, ...] = ("XDP_PASS",), sha: str = "abcd",
          program: str = "f", path: str | None = None, settings: str = "",
          source: str = "") -> SlotDescription:
    return SlotDescription(label, prio, acts, False, path or f"/o/{label}.o", sha, program, "xdp",
                           (), settings=settings, source=source)


def test_linked_plan_in_full() -> None:
    desc = ChainDescription("xdp-dispatch 0", "hybrid", False, (
        _slot("keep", 10), _slot("prio", 20), _slot("obj", 30), _slot("prog", 40),
        _slot("path", 50), _slot("set", 60, settings='{"a": 1}'), _slot("nosha", 65, sha=""),
        _slot("mine", 70, source="/c.yaml"), _slot("other", 80, ("XDP_DROP",), source="/d.yaml"),
        _slot("anon", 90, ())))
    desired = [_d("keep", 10, sha="abcdef"), _d("prio", 25, PASS | DROP, sha="abcd"),
               _d("obj", 30, sha="ffff"), _d("prog", 40, sha="abcd", prog="g"),
               _d("path", 50, sha="abcd", path="/x/path.o"),
               _d("set", 60, sha="abcd", settings='{"a": 2}'), _d("nosha", 65, sha="abcd"),
               _d("new", 1, 0, sha="abcd", prog="h")]
    p = plan_linked("v0", "ns", "native", desired, desc, "skb", source="/c.yaml")
    assert (p.iface, p.netns, p.mode, p.observed_mode, p.linked) == ("v0", "ns", "native", "skb",
                                                                    True)
    assert [(i.action, i.name, i.prog_id, i.priority, i.actions, i.detail) for i in p.items] == [
        ("keep", "keep", None, 10, ("XDP_PASS",), ""),
        ("update", "prio", None, 25, ("XDP_DROP", "XDP_PASS"),
         "priority 20 -> 25, actions XDP_PASS -> XDP_DROP,XDP_PASS"),
        ("upgrade", "obj", None, 30, ("XDP_PASS",), "object changed"),
        ("upgrade", "prog", None, 40, ("XDP_PASS",), "program changed"),
        ("upgrade", "path", None, 50, ("XDP_PASS",), "program changed"),
        ("upgrade", "set", None, 60, ("XDP_PASS",), "settings changed"),
        ("upgrade", "nosha", None, 65, ("XDP_PASS",), "object changed"),
        ("add", "new", None, 1, (), "h from /o/new.o"),
        ("remove", "mine", None, 70, ("XDP_PASS",), "no longer in the config"),
        ("foreign", "other", None, 80, ("XDP_DROP",), "not managed by this config: kept"),
        ("foreign", "anon", None, 90, (), "not managed by this config: kept")]
    assert [i.kernel for i in p.items[:7]] == [(10, ("XDP_PASS",)), (20, ("XDP_PASS",)),
                                              (30, ("XDP_PASS",)), (40, ("XDP_PASS",)),
                                              (50, ("XDP_PASS",)), (60, ("XDP_PASS",)),
                                              (65, ("XDP_PASS",))]
    assert [i.desired for i in p.items[:8]] == [desired[k] for k in range(8)]
    excl = plan_linked("v0", None, "skb", [], desc, None, exclusive=True)
    assert {(i.action, i.detail) for i in excl.items} == {
        ("remove", "not managed by this config (--exclusive)")}
    # dispatch through plan_interface: a linked chain is planned by slot names
    st = InterfaceState("v0", 3, "skb", "linked", description=desc)
    via = plan_interface("v0", "ns", "native", desired, st, {}, source="/c.yaml")
    assert via == p
    assert plan_text([via]).splitlines()[1] == \
        "    keep     keep                 linked     prio 10  XDP_PASS"
    assert plan_text([via]).splitlines()[8] == \
        "  + add      new                  new        prio 1  -  (h from /o/new.o)"
    assert plan_interface("v0", None, "skb", [], st, {}, exclusive=True).items == excl.items


def test_plan_text_of_errors_and_several_interfaces() -> None:
    bad = InterfacePlan("eth1", "ns2", "skb", error="boom")
    same = InterfacePlan("eth2", None, "native", (PlanItem("keep", "k", 3, 10, ("XDP_PASS",)),))
    assert plan_text([bad, same]) == (
        "eth1 (netns ns2): error: boom\n"
        "eth2 [native]: no changes\n"
        "    keep     k                    id 3       prio 10  XDP_PASS\n"
        "Plan: 0 change(s) on 0 interface(s).\n")


def test_more_details_word_for_word() -> None:
    # the kernel's several actions joined by commas; settings keys that went away
    st = _state((11, "f", 10, ("XDP_DROP", "XDP_PASS")), (12, "f", 20, ("XDP_PASS",)))
    owners = {11: _owner(11, "a", 10), 12: _owner(12, "b", 20, settings='{"x": 1, "y": 2}')}
    p = plan_interface("eth0", None, "skb", [_d("a", 10, PASS),
                                             _d("b", 20, settings='{"y": 2}')], st, owners)
    assert [i.detail for i in p.items] == ["priority 10 -> 10, actions XDP_DROP,XDP_PASS -> XDP_PASS",
                                           "x changed"]
    desc = ChainDescription("t", "hybrid", False, (
        _slot("two", 20, ("XDP_DROP", "XDP_PASS")), _slot("none", 30, ()),
        _slot("ex", 40, ("XDP_TX",))))
    want = [_d("added-first", 1, sha="abcd"), _d("two", 25, 0, sha="abcd"),
            _d("none", 30, PASS, sha="abcd")]
    lp = plan_linked("v", None, "skb", want, desc, None, exclusive=True)
    assert [(i.action, i.name, i.prog_id, i.priority, i.actions, i.detail) for i in lp.items] == [
        ("add", "added-first", None, 1, ("XDP_PASS",), "f from /o/added-first.o"),
        ("update", "two", None, 25, (), "priority 20 -> 25, actions XDP_DROP,XDP_PASS -> -"),
        ("update", "none", None, 30, ("XDP_PASS",), "priority 30 -> 30, actions - -> XDP_PASS"),
        ("remove", "ex", None, 40, ("XDP_TX",), "not managed by this config (--exclusive)")]


def test_linked_plan_carries_the_chains_stats_and_inlining_and_why_not_inlined() -> None:
    """plan_linked reports the chain's own counters and inlining settings (what `~ stats`
    and `~ inline` compare against) and a kept slot's reason for staying a call."""
    slot = SlotDescription("keep", 10, ("XDP_PASS",), False, "/o/keep.o", "abcd", "f", "xdp",
                           (), not_inlined="its entry calls itself")
    desc = ChainDescription("t", "hybrid", False, (slot,), stats_map=7, inline=False)
    p = plan_linked("v0", None, "skb", [_d("keep", 10, sha="abcd")], desc, "skb")
    assert (p.observed_stats, p.observed_inline) == ("counts", False)
    assert [(i.action, i.detail) for i in p.items] == [
        ("keep", "not inlined: its entry calls itself")]
    off = plan_linked("v0", None, "skb", [_d("keep", 10, sha="abcd")],
                      ChainDescription("t", "hybrid", False, (slot,)), "skb")
    assert (off.observed_stats, off.observed_inline) == ("off", True)
    asked = replace(p, stats="off", inline=True)
    assert asked.stats_change and asked.inline_change
    assert plan_text([asked]).splitlines()[2:4] == ["  ~ stats    counts -> off",
                                                    "  ~ inline   off -> on"]
    assert plan_text([replace(off, inline=False)]).splitlines()[2] == "  ~ inline   on -> off"
    assert asked.to_json()["stats"] == "off"
    assert "stats" not in p.to_json()


def test_a_linked_chain_gets_no_dispatcher_version_item() -> None:
    """Only a libxdp dispatcher has a version to change: a linked chain (whose state also
    carries a DispatcherInfo, with the description's format version) gets no item."""
    slot = SlotDescription("keep", 10, ("XDP_PASS",), False, "/o/keep.o", "abcd", "f", "xdp", ())
    desc = ChainDescription("t", "hybrid", False, (slot,))
    st = InterfaceState("v0", 3, "skb", "linked", description=desc,
                        dispatcher=DispatcherInfo(1, desc.version, False, name="xdpd_chain"))
    p = plan_interface("v0", None, "skb", [_d("keep", 10, sha="abcd")], st, {},
                       dispatcher_version=desc.version + 5)
    assert [i.action for i in p.items] == ["keep"] and not p.changed
