"""``config/export.py`` (pure): foreign programs are comments, entries carry settings, and
the text is a config ``parse_config`` accepts."""

from __future__ import annotations

import yaml

from dispatcher.chain.description import ChainDescription, SlotDescription
from dispatcher.chain.state import Component, InterfaceState, ProgFacts
from dispatcher.config.export import Observed, export_text
from dispatcher.config.model import parse_config
from dispatcher.config.plan import Owner


def _comp(slot: int, name: str, pid: int, prio: int) -> Component:
    return Component(slot, name, pid, "ab" * 8, prio, ("XDP_PASS",), False)


def test_dispatcher_owned_and_foreign() -> None:
    st = InterfaceState("eth1", 3, "native", "dispatcher",
                        programs=(_comp(0, "xdp_counter", 11, 10), _comp(1, "xdp_pass", 12, 40)))
    owners = {11: Owner(11, "eth1", None, "count", "/o/c.o", "f" * 64, "xdp_counter", 10, 4,
                        "/etc/c.yaml", '{"pin_maps":"/sys/fs/bpf/x"}')}
    text = export_text([Observed(st)], owners)
    doc = yaml.safe_load(text)
    (entry,) = doc["interfaces"]
    assert entry["programs"] == [{"name": "count", "object": "/o/c.o", "program": "xdp_counter",
                                  "priority": 10, "chain_call_actions": ["XDP_PASS"],
                                  "pin_maps": "/sys/fs/bpf/x"}]
    assert '# foreign: "xdp_pass" (id 12' in text and "apply keeps it" in text
    parse_config(text, "x.yaml", "/")


def test_only_foreign_gives_empty_program_list_and_skips_unnamed_idle() -> None:
    main = ProgFacts(5, "xdp_prog", "xdp_prog", "cd" * 8, 0, ())
    legacy = InterfaceState("eth2", 4, "skb", "legacy", main=main)
    idle = InterfaceState("eth3", 5, None, "none")
    doc = yaml.safe_load(export_text([Observed(legacy), Observed(idle)], {}))
    assert doc["interfaces"] == [{"name": "eth2", "mode": "skb", "programs": []}]
    doc = yaml.safe_load(export_text([Observed(idle, "ns1", named=True)], {}))
    assert doc["interfaces"] == [{"name": "eth3", "mode": "native", "netns": "ns1",
                                  "programs": []}]
    assert yaml.safe_load(export_text([], {}))["interfaces"] == []


def test_linked_slots_are_entries() -> None:
    slot = SlotDescription("icmp", 20, ("XDP_PASS", "XDP_ABORTED"), False, "/o/i.o", "ab12",
                           "xdp_drop_icmp", "xdp", (), settings='{"globals":{"port":53}}')
    desc = ChainDescription("xdp-dispatch", "hybrid", False, (slot,))
    st = InterfaceState("veth9", 7, "skb", "linked", description=desc)
    doc = yaml.safe_load(export_text([Observed(st)], {}))
    (entry,) = doc["interfaces"]
    assert entry["dispatch"] == "linked" and entry["stats"] == "off"
    assert entry["programs"][0]["globals"] == {"port": 53}
    assert entry["programs"][0]["chain_call_actions"] == ["XDP_PASS", "XDP_ABORTED"]
