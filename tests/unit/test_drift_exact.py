"""Drift JSON in full, from plans built by hand (the mutation run found the interface
fields of to_json and the UPDATE/upgrade texts unchecked)."""

from __future__ import annotations

from dispatcher.config.drift import drift, interface_drift
from dispatcher.config.plan import InterfacePlan, PlanItem


def test_drift_json_in_full() -> None:
    p = InterfacePlan("eth0", "ns", "native", (
        PlanItem("update", "u", 11, 25, ("XDP_DROP",), "", None, (20, ("XDP_PASS",))),
        PlanItem("update", "same-prio", 12, 20, ("XDP_DROP",), "", None, (20, ())),
        PlanItem("upgrade", "obj", 13, 30, ("XDP_PASS",), "object changed", None,
                 (31, ("XDP_PASS",))),
        PlanItem("upgrade", "set", 14, 40, ("XDP_PASS",), "frags, globals changed", None, None),
        PlanItem("add", "new", None, 5, ("XDP_PASS",)),
        PlanItem("remove", "old", 15, 6, ("XDP_PASS",)),
        PlanItem("foreign", "xdp_x", 16, 7, ()),
        PlanItem("keep", "k", 17, 8, ("XDP_PASS",))), observed_mode="skb")
    d = interface_drift(p)
    assert d.to_json() == {
        "interface": "eth0", "netns": "ns", "mode": "native", "drifted": True, "error": None,
        "items": [
            {"kind": "mode", "name": "", "id": None,
             "detail": "attached in skb mode, the file says native",
             "fields": {"mode": {"kernel": "skb", "file": "native"}}},
            {"kind": "differs", "name": "u", "id": 11,
             "detail": "priority: kernel 20, file 25, chain_call_actions: kernel XDP_PASS, "
                       "file XDP_DROP",
             "fields": {"priority": {"kernel": 20, "file": 25},
                        "chain_call_actions": {"kernel": ["XDP_PASS"], "file": ["XDP_DROP"]}}},
            {"kind": "differs", "name": "same-prio", "id": 12,
             "detail": "chain_call_actions: kernel -, file XDP_DROP",
             "fields": {"chain_call_actions": {"kernel": [], "file": ["XDP_DROP"]}}},
            {"kind": "differs", "name": "obj", "id": 13,
             "detail": "the object file changed since this program was loaded, "
                       "priority: kernel 31, file 30",
             "fields": {"priority": {"kernel": 31, "file": 30}}},
            {"kind": "differs", "name": "set", "id": 14,
             "detail": "frags, globals differ from what was loaded", "fields": {}},
            {"kind": "missing", "name": "new", "id": None,
             "detail": "in the file, not on the interface", "fields": {}},
            {"kind": "extra", "name": "old", "id": 15,
             "detail": "loaded by xdp-dispatch for this interface, not in the file",
             "fields": {}},
            {"kind": "foreign", "name": "xdp_x", "id": 16, "detail": "not managed by this file",
             "fields": {}},
        ]}
    assert interface_drift(InterfacePlan("eth1", None, "skb", (
        PlanItem("upgrade", "p", 1, 1, (), "program changed"),))).items[0].detail == \
        "the file names another object or program"


def test_no_mode_drift_without_an_observed_mode_and_errors_pass_through() -> None:
    quiet = interface_drift(InterfacePlan("eth0", None, "skb", (), observed_mode=None))
    assert quiet.to_json() == {"interface": "eth0", "netns": None, "mode": "skb",
                               "drifted": False, "items": [], "error": None}
    same = interface_drift(InterfacePlan("eth0", None, "skb", (), observed_mode="skb"))
    assert same.items == ()
    bad = interface_drift(InterfacePlan("eth2", "n", "hw", (PlanItem("add", "x"),), error="gone"))
    assert bad.to_json() == {"interface": "eth2", "netns": "n", "mode": "hw", "drifted": False,
                             "items": [], "error": "gone"}
    plans = [InterfacePlan("a", None, "skb"), InterfacePlan("b", None, "skb")]
    assert [d.iface for d in drift(plans)] == ["a", "b"]
    assert [d.iface for d in drift(plans, "b")] == ["b"]
