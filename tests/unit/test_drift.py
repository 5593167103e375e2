"""Drift (status --config): plans read as "what differs now", and their rendering."""

from __future__ import annotations

from dispatcher.chain import protocol
from dispatcher.chain.model import settings_json
from dispatcher.chain.state import Component, DispatcherInfo, InterfaceState, ProgFacts
from dispatcher.config.drift import drift, interface_drift
from dispatcher.config.plan import (
    DesiredProgram,
    InterfacePlan,
    Owner,
    plan_interface,
)
from dispatcher.render import drift_text

PASS, DROP = 4, 2


def _d(name: str, prio: int, acts: int = PASS, sha: str = "a", settings: str = "") -> DesiredProgram:
    return DesiredProgram(name, f"/o/{name}.o", sha, "f", prio, acts, settings)


def _owner(pid: int, name: str, prio: int, sha: str = "a", settings: str = "") -> Owner:
    return Owner(pid, "eth0", None, name, f"/o/{name}.o", sha, "f", prio, PASS, "/etc/c.yaml",
                 settings)


def _state(mode: str, *comps: tuple[int, str, int]) -> InterfaceState:
    cfg = protocol.decode_config(protocol.encode_config(
        2, [c[2] for c in comps], [PASS] * len(comps), [0] * len(comps), False))
    return InterfaceState("eth0", 2, mode, "dispatcher",
                          main=ProgFacts(1, "xdp_dispatcher", "xdp_dispatcher", "00" * 8, 1, (5,)),
                          dispatcher=DispatcherInfo(1, 2, False), config=cfg,
                          programs=tuple(Component(i, n, pid, "00" * 8, prio, ("XDP_PASS",), False)
                                         for i, (pid, n, prio) in enumerate(comps)))


def test_every_kind_of_drift() -> None:
    st = _state("skb", (11, "f", 10), (12, "f", 20), (13, "f", 30), (14, "f", 40),
                (15, "xdp_other", 50), (16, "f", 60))
    g1 = settings_json({"port": 53}, None, None)
    owners = {11: _owner(11, "same", 10), 12: _owner(12, "prio", 20),
              13: _owner(13, "obj", 30), 14: _owner(14, "gone", 40),
              16: _owner(16, "glob", 60, settings=g1)}
    desired = [_d("same", 10), _d("prio", 25, PASS | DROP), _d("obj", 30, sha="b"),
               _d("new", 70), _d("glob", 60, settings=settings_json({"port": 54}, None, None))]
    p = plan_interface("eth0", None, "skb", desired, st, owners)
    d = interface_drift(p)
    assert d.drifted
    assert [(i.kind, i.name, i.prog_id, i.detail) for i in d.items] == [
        ("differs", "prio", 12, "priority: kernel 20, file 25, "
                                "chain_call_actions: kernel XDP_PASS, file XDP_DROP,XDP_PASS"),
        ("differs", "obj", 13, "the object file changed since this program was loaded"),
        ("missing", "new", None, "in the file, not on the interface"),
        ("differs", "glob", 16, "globals differ from what was loaded"),
        ("extra", "gone", 14, "loaded by xdp-dispatch for this interface, not in the file"),
        ("foreign", "xdp_other", 15, "not managed by this file"),
    ]
    assert d.items[0].fields == {"priority": {"kernel": 20, "file": 25},
                                 "chain_call_actions": {"kernel": ["XDP_PASS"],
                                                        "file": ["XDP_DROP", "XDP_PASS"]}}
    j = d.to_json()
    assert j["drifted"] is True and j["items"][2] == {  # type: ignore[index]
        "kind": "missing", "name": "new", "id": None,
        "detail": "in the file, not on the interface", "fields": {}}
    text = drift_text([d], "c.yaml")
    assert text.splitlines() == [
        "DRIFT AGAINST c.yaml:",
        "",
        "eth0 [skb]: drift",
        "  differs  prio                 id 12      priority: kernel 20, file 25, "
        "chain_call_actions: kernel XDP_PASS, file XDP_DROP,XDP_PASS",
        "  differs  obj                  id 13      the object file changed since this program "
        "was loaded",
        "  missing  new                             in the file, not on the interface",
        "  differs  glob                 id 16      globals differ from what was loaded",
        "  extra    gone                 id 14      loaded by xdp-dispatch for this interface, "
        "not in the file",
        "  foreign  xdp_other            id 15      not managed by this file",
        "Drift: 5 difference(s) on 1 interface(s).",
    ]


def test_no_drift_with_foreign_programs_only() -> None:
    st = _state("skb", (11, "f", 10), (15, "xdp_other", 50))
    p = plan_interface("eth0", None, "skb", [_d("same", 10)], st, {11: _owner(11, "same", 10)})
    d = interface_drift(p)
    assert not d.drifted and [i.kind for i in d.items] == ["foreign"]
    assert drift_text([d], "c.yaml").splitlines()[-1] == "No drift."


def test_mode_drift_and_errors_and_filter() -> None:
    st = _state("native", (11, "f", 10))
    p = plan_interface("eth0", None, "skb", [_d("same", 10)], st, {11: _owner(11, "same", 10)})
    d = interface_drift(p)
    assert d.drifted and [(i.kind, i.detail) for i in d.items] == [
        ("mode", "attached in native mode, the file says skb")]
    assert d.items[0].fields == {"mode": {"kernel": "native", "file": "skb"}}
    err = InterfacePlan("eth9", None, "skb", error="no interface named eth9")
    ds = drift([p, err])
    assert [x.iface for x in ds] == ["eth0", "eth9"] and ds[1].error and not ds[1].drifted
    assert [x.iface for x in drift([p, err], "eth9")] == ["eth9"]
    assert "eth9: error: no interface named eth9" in drift_text(ds, "c.yaml")
    # an empty interface has no mode to differ
    empty = plan_interface("eth0", None, "skb", [_d("a", 1)], InterfaceState("eth0", 2, None, "none"), {})
    assert [i.kind for i in interface_drift(empty).items] == ["missing"]


def test_settings_json_is_canonical_and_upgrade_names_the_key() -> None:
    assert settings_json(None, None, None) == ""
    assert settings_json({"b": 1, "a": [1, 2]}, "/sys/fs/bpf/x", True) == \
        '{"frags":true,"globals":{"a":[1,2],"b":1},"pin_maps":"/sys/fs/bpf/x"}'
    st = _state("skb", (11, "f", 10))
    o = {11: _owner(11, "a", 10, settings=settings_json(None, "/sys/fs/bpf/x", None))}
    p = plan_interface("eth0", None, "skb", [_d("a", 10, settings=settings_json(None, "/sys/fs/bpf/y", True))],
                       st, o)
    assert [(i.action, i.detail) for i in p.items] == [("upgrade", "frags, pin_maps changed")]
    # old ownership records (no "settings" key) read as no overrides: nothing to upgrade
    rec = _owner(11, "a", 10).to_json()
    del rec["settings"]
    p = plan_interface("eth0", None, "skb", [_d("a", 10)], st, {11: Owner.from_json(rec)})
    assert [i.action for i in p.items] == ["keep"]


def test_api_exposes_config_operations() -> None:
    """The package-level names stay functions even once the submodules ``dispatcher.plan``
    and ``dispatcher.drift`` are imported (hence ``plan_config``, not ``plan``)."""
    import inspect
    from pathlib import Path

    import dispatcher
    import dispatcher.config.drift
    import dispatcher.config.plan

    for name in ("check_config", "plan_config", "apply_config", "config_drift", "status_report",
                 "managed_by"):
        obj = getattr(dispatcher, name)
        assert inspect.isfunction(obj), name
    cfg = dispatcher.check_config(str(Path(__file__).resolve().parents[2] / "configs" /
                                      "settings.yaml"))
    assert cfg.interfaces[0].programs[0].globals == {
        "enabled": True, "ports": [53, 5353, 0, 0], "min_payload": 12, "prefix": "",
        "verdict": "XDP_DROP"}


def test_version_drift() -> None:
    st = _state("skb", (11, "f", 10))
    p = plan_interface("eth0", None, "skb", [_d("same", 10)], st, {11: _owner(11, "same", 10)},
                       dispatcher_version=3)
    d = interface_drift(p)
    assert d.drifted and [(i.kind, i.name, i.prog_id, i.detail) for i in d.items] == [
        ("version", "dispatcher", 1, "dispatcher version 2, the file says 3")]
    assert d.items[0].fields == {"dispatcher_version": {"kernel": 2, "file": 3}}
    assert "dispatcher version 2, the file says 3" in drift_text([d], "c.yaml")
    same = plan_interface("eth0", None, "skb", [_d("same", 10)], st,
                          {11: _owner(11, "same", 10)}, dispatcher_version=2)
    assert not interface_drift(same).drifted
