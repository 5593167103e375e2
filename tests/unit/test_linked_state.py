"""Linked chains as observed and planned (pure): components from the description, status
JSON/table with no component ids, and plan items matched by slot name."""

from __future__ import annotations

from dispatcher.chain.linked import combine
from dispatcher.chain.state import (
    DispatcherInfo,
    InterfaceState,
    ProgFacts,
    components_from_description,
)
from dispatcher.config.plan import (
    ADD,
    FOREIGN,
    KEEP,
    REMOVE,
    UPDATE,
    UPGRADE,
    DesiredProgram,
    plan_linked,
)
from dispatcher.obj.elf import read_object
from dispatcher.render import status_text
from tests.objects import example

PASS, DROP = 1 << 2, 1 << 1


def _doc(source: str = "") -> dict[str, object]:
    comps = []
    for name, prio, acts in (("xdp_counter", 10, PASS), ("xdp_drop_icmp", 20, PASS | DROP)):
        obj = read_object(example(name))
        comps.append(combine.LinkComponent(obj, obj.programs[0], name, prio, acts,
                                           "ab" * 8, source=source))
    return combine.description(comps, [{"counters": 7}, {}], "hybrid", "0.1.0")


def _state(doc: dict[str, object]) -> InterfaceState:
    main = ProgFacts(42, "xdp_chain", "xdp_chain", "00112233445566aa", 9, (1, 2))
    return InterfaceState("veth0", 3, "skb", "linked", main=main,
                          dispatcher=DispatcherInfo(42, 1, False, name="xdp_chain",
                                                    tag=main.tag),
                          programs=components_from_description(doc), description=doc)


def test_status_json_and_table_of_a_linked_chain() -> None:
    st = _state(_doc())
    js = st.to_json()
    assert js["kind"] == "linked" and js["main"] is None
    assert js["dispatcher"] == {"id": 42, "version": 1, "frags": False, "name": "xdp_chain",
                                "tag": "00112233445566aa"}
    progs = js["programs"]
    assert isinstance(progs, list)
    assert [(p["slot"], p["name"], p["id"], p["tag"], p["priority"], p["chain_call_actions"])
            for p in progs] == [(0, "xdp_counter", None, None, 10, ["XDP_PASS"]),
                                (1, "xdp_drop_icmp", None, None, 20, ["XDP_DROP", "XDP_PASS"])]
    assert progs[0]["object"] == example("xdp_counter")
    # map ids per component, from the description (no bpftool needed to find them)
    assert progs[0]["maps"] == {"counters": 7} and progs[1]["maps"] == {}
    text = status_text([st])
    assert "xdp_chain         skb      42   00112233445566aa  (linked chain)" in text
    assert " =>              10     xdp_counter               -    -                 XDP_PASS" \
        in text


def _want(name: str, obj: str, prio: int, acts: int, sha: str = "ab" * 8 + "ff" * 24,
          settings: str = "") -> DesiredProgram:
    o = read_object(example(obj))
    return DesiredProgram(name, o.path, sha, o.programs[0].name, prio, acts, settings)


def test_plan_linked_matches_slots_by_name() -> None:
    doc = _doc(source="/etc/c.yaml")
    want = [_want("xdp_counter", "xdp_counter", 10, PASS),
            _want("xdp_drop_icmp", "xdp_drop_icmp", 20, PASS | DROP)]
    p = plan_linked("veth0", None, "skb", want, doc, "skb", source="/etc/c.yaml")
    assert p.linked and not p.changed and [i.action for i in p.items] == [KEEP, KEEP]
    want[1] = _want("xdp_drop_icmp", "xdp_drop_icmp", 5, PASS | DROP)
    assert [i.action for i in plan_linked("v", None, "skb", want, doc, "skb").items] == [
        KEEP, UPDATE]
    want[0] = _want("xdp_counter", "xdp_counter", 10, PASS, sha="cd" * 32)
    items = plan_linked("v", None, "skb", want, doc, "skb").items
    assert items[0].action == UPGRADE and items[0].detail == "object changed"
    want[0] = _want("xdp_counter", "xdp_counter", 10, PASS, settings='{"frags":true}')
    assert plan_linked("v", None, "skb", want, doc, "skb").items[0].detail == "settings changed"
    # a slot this config manages but no longer lists goes; others are foreign unless exclusive
    only = [_want("new", "xdp_pass", 30, PASS)]
    assert [i.action for i in plan_linked("v", None, "skb", only, doc, "skb",
                                          source="/etc/c.yaml").items] == [ADD, REMOVE, REMOVE]
    assert [i.action for i in plan_linked("v", None, "skb", only, doc, "skb",
                                          source="/other.yaml").items] == [ADD, FOREIGN, FOREIGN]
    assert [i.action for i in plan_linked("v", None, "skb", only, doc, "skb", exclusive=True,
                                          source="/other.yaml").items] == [ADD, REMOVE, REMOVE]
