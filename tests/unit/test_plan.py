"""plan_interface: every plan case from desired state, observed state and ownership records."""

from __future__ import annotations

from dispatcher.chain import protocol
from dispatcher.chain.state import Component, DispatcherInfo, InterfaceState, ProgFacts
from dispatcher.config.plan import DesiredProgram, Owner, plan_interface, plan_text

PASS, DROP = 4, 2


def _d(name: str, prio: int, acts: int = PASS, sha: str = "a", prog: str = "f") -> DesiredProgram:
    return DesiredProgram(name, f"/o/{name}.o", sha, prog, prio, acts)


def _owner(pid: int, name: str, prio: int, sha: str = "a", prog: str = "f") -> Owner:
    return Owner(pid, "eth0", None, name, f"/o/{name}.o", sha, prog, prio, PASS)


def _state(*comps: tuple[int, str, int, tuple[str, ...]]) -> InterfaceState:
    cfg = protocol.decode_config(protocol.encode_config(2, [c[2] for c in comps], [PASS] * len(comps),
                                                        [0] * len(comps), False))
    return InterfaceState("eth0", 2, "skb", "dispatcher",
                          main=ProgFacts(1, "xdp_dispatcher", "xdp_dispatcher", "00" * 8, 1, (5,)),
                          dispatcher=DispatcherInfo(1, 2, False), config=cfg,
                          programs=tuple(Component(i, n, pid, "00" * 8, prio, acts, False)
                                         for i, (pid, n, prio, acts) in enumerate(comps)))


def _actions(p) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(i.action, i.name) for i in p.items]


def test_empty_interface_adds_everything() -> None:
    p = plan_interface("eth0", None, "skb", [_d("a", 10), _d("b", 20)],
                       InterfaceState("eth0", 2, None, "none"), {})
    assert _actions(p) == [("add", "a"), ("add", "b")] and p.changed


def test_keep_update_upgrade_remove_foreign() -> None:
    st = _state((11, "f", 10, ("XDP_PASS",)), (12, "f", 20, ("XDP_PASS",)),
                (13, "f", 30, ("XDP_PASS",)), (14, "f", 40, ("XDP_PASS",)),
                (15, "xdp_other", 50, ("XDP_PASS",)))
    owners = {11: _owner(11, "keep", 10), 12: _owner(12, "prio", 20),
              13: _owner(13, "upg", 30), 14: _owner(14, "gone", 40)}
    desired = [_d("keep", 10), _d("prio", 25), _d("upg", 30, sha="b"), _d("new", 60)]
    p = plan_interface("eth0", None, "skb", desired, st, owners)
    assert _actions(p) == [("keep", "keep"), ("update", "prio"), ("upgrade", "upg"),
                           ("add", "new"), ("remove", "gone"), ("foreign", "xdp_other")]
    assert p.items[1].detail == "priority 20 -> 25, actions XDP_PASS -> XDP_PASS"
    text = plan_text([p])
    assert "+ add" in text and "- remove" in text and "Plan: 4 change(s) on 1 interface(s)." in text


def test_actions_change_is_an_update() -> None:
    st = _state((11, "f", 10, ("XDP_PASS",)))
    p = plan_interface("eth0", None, "skb", [_d("a", 10, PASS | DROP)], st, {11: _owner(11, "a", 10)})
    assert _actions(p) == [("update", "a")]


def test_exclusive_removes_foreign_and_nothing_changes_when_equal() -> None:
    st = _state((11, "f", 10, ("XDP_PASS",)), (15, "xdp_other", 50, ("XDP_PASS",)))
    owners = {11: _owner(11, "a", 10)}
    same = plan_interface("eth0", None, "skb", [_d("a", 10)], st, owners)
    assert not same.changed and _actions(same) == [("keep", "a"), ("foreign", "xdp_other")]
    excl = plan_interface("eth0", None, "skb", [_d("a", 10)], st, owners, exclusive=True)
    assert _actions(excl) == [("keep", "a"), ("remove", "xdp_other")] and excl.changed


def test_program_change_in_same_object_is_an_upgrade() -> None:
    st = _state((11, "f", 10, ("XDP_PASS",)))
    p = plan_interface("eth0", None, "skb", [_d("a", 10, prog="g")], st, {11: _owner(11, "a", 10)})
    assert _actions(p) == [("upgrade", "a")] and p.items[0].detail == "program changed"


def test_a_version_change_is_its_own_kind_of_change() -> None:
    st = _state((11, "f", 10, ("XDP_PASS",)))
    owners = {11: _owner(11, "a", 10)}
    p = plan_interface("eth0", None, "skb", [_d("a", 10)], st, owners, dispatcher_version=3)
    assert _actions(p) == [("keep", "a"), ("version", "dispatcher")] and p.changed
    assert p.items[1].detail == "v2 -> v3" and p.to_json()["dispatcher_version"] == 3
    text = plan_text([p])
    assert "  ~ version  dispatcher (id 1) v2 -> v3\n" in text
    assert "Plan: 1 change(s) on 1 interface(s)." in text
    # the same version, no version asked for, or a fresh interface: no version change
    for v, state in ((2, st), (None, st), (3, InterfaceState("eth0", 2, None, "none"))):
        q = plan_interface("eth0", None, "skb", [_d("a", 10)], state, owners, dispatcher_version=v)
        assert "version" not in [a for a, _n in _actions(q)]
    assert not plan_interface("eth0", None, "skb", [_d("a", 10)], st, owners,
                              dispatcher_version=2).changed


def test_inline_switch_alone_is_a_planned_change_and_survives_the_record() -> None:
    """A linked chain's inlining differing from the config's ``inline`` is a change of
    its own (``~ inline``); unset in the config, the chain's setting is kept; the plan
    record (apply's journal) keeps both values."""
    from dispatcher.config.applied import plan_from_record, plan_record
    from dispatcher.config.plan import InterfacePlan

    p = InterfacePlan("eth0", None, "skb", linked=True, inline=True, observed_inline=False)
    assert p.inline_change and p.changed
    text = plan_text([p])
    assert "  ~ inline   off -> on" in text and "Plan: 1 change(s) on 1 interface(s)." in text
    assert p.to_json()["inline"] is True
    assert plan_from_record(plan_record(p)) == p
    for q in (InterfacePlan("eth0", None, "skb", linked=True, observed_inline=False),
              InterfacePlan("eth0", None, "skb", linked=True, inline=False,
                            observed_inline=False)):
        assert not q.inline_change and not q.changed and "inline" not in plan_text([q])
