"""What ``apply`` would change on each interface (pure: desired state + observed state +
ownership records in, a plan out).

Matching: a component we loaded is known by its program id in the ownership records,
which name the config entry it came from. A desired entry whose owned component has
the same object (content hash) and program is kept (or only re-prioritised / given new
chain-call actions, which needs no reload); a changed object or program is an upgrade;
a desired entry with no owned component is an add; an owned component no longer
desired is removed. Components nobody recorded are foreign (e.g. loaded by
xdp-loader): kept, and ordered by priority with ours, unless ``exclusive``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .obj.spec import actions_to_names
from .state import InterfaceState

ADD, REMOVE, UPGRADE, UPDATE, KEEP, FOREIGN = "add", "remove", "upgrade", "update", "keep", "foreign"
CHANGES = (ADD, REMOVE, UPGRADE, UPDATE)


@dataclass(frozen=True, slots=True)
class DesiredProgram:
    name: str            # config entry name (unique per interface)
    obj_path: str        # absolute path of the object file
    sha256: str          # of the object file's bytes
    program: str         # function name actually selected
    priority: int
    actions: int         # chain-call bitmap


@dataclass(frozen=True, slots=True)
class Owner:
    """Ownership record of one component we loaded (persisted by ``ownership.py``)."""

    prog_id: int
    iface: str
    netns: str | None
    name: str
    obj_path: str
    sha256: str
    program: str
    priority: int
    actions: int
    config: str = ""

    def to_json(self) -> dict[str, object]:
        return {"prog_id": self.prog_id, "iface": self.iface, "netns": self.netns,
                "name": self.name, "object": self.obj_path, "sha256": self.sha256,
                "program": self.program, "priority": self.priority, "actions": self.actions,
                "config": self.config}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Owner:
        return Owner(int(d["prog_id"]), str(d["iface"]),
                     None if d.get("netns") is None else str(d["netns"]), str(d["name"]),
                     str(d["object"]), str(d["sha256"]), str(d["program"]),
                     int(d["priority"]), int(d["actions"]), str(d.get("config", "")))


@dataclass(frozen=True, slots=True)
class PlanItem:
    action: str
    name: str
    prog_id: int | None = None
    priority: int | None = None
    actions: tuple[str, ...] = ()
    detail: str = ""
    desired: DesiredProgram | None = None

    def to_json(self) -> dict[str, object]:
        return {"action": self.action, "name": self.name, "id": self.prog_id,
                "priority": self.priority, "chain_call_actions": list(self.actions),
                "detail": self.detail}


@dataclass(frozen=True)
class InterfacePlan:
    iface: str
    netns: str | None
    mode: str
    items: tuple[PlanItem, ...] = field(default=())
    error: str | None = None

    @property
    def changed(self) -> bool:
        return any(i.action in CHANGES for i in self.items)

    def to_json(self) -> dict[str, object]:
        return {"interface": self.iface, "netns": self.netns, "mode": self.mode,
                "changed": self.changed, "items": [i.to_json() for i in self.items],
                "error": self.error}


def plan_interface(iface: str, netns: str | None, mode: str, desired: list[DesiredProgram],
                   observed: InterfaceState, owners: dict[int, Owner],
                   exclusive: bool = False) -> InterfacePlan:
    """The difference between ``desired`` and what ``observed`` shows on one interface."""
    present: list[tuple[int, str, int, int]] = []    # (id, kernel name, prio, actions)
    if observed.kind == "dispatcher":
        from .obj.spec import names_to_actions

        present = [(c.id, c.name, c.priority, names_to_actions(list(c.chain_call_actions)))
                   for c in observed.programs]
    elif observed.kind == "legacy" and observed.main is not None:
        o = owners.get(observed.main.id)
        present = [(observed.main.id, observed.main.full_name,
                    o.priority if o else 0, o.actions if o else 0)]
    items: list[PlanItem] = []
    matched: set[int] = set()
    by_name = {owners[pid].name: pid for pid, *_ in present if pid in owners}
    for d in desired:
        acts = actions_to_names(d.actions)
        pid = by_name.get(d.name)
        if pid is None:
            items.append(PlanItem(ADD, d.name, None, d.priority, acts,
                                  f"{d.program} from {d.obj_path}", d))
            continue
        matched.add(pid)
        o = owners[pid]
        cur = next(p for p in present if p[0] == pid)
        if o.sha256 != d.sha256 or o.program != d.program or o.obj_path != d.obj_path:
            why = "object changed" if o.sha256 != d.sha256 else "program changed"
            items.append(PlanItem(UPGRADE, d.name, pid, d.priority, acts, why, d))
        elif (cur[2], cur[3]) != (d.priority, d.actions):
            items.append(PlanItem(UPDATE, d.name, pid, d.priority, acts,
                                  f"priority {cur[2]} -> {d.priority}, actions "
                                  f"{','.join(actions_to_names(cur[3])) or '-'} -> "
                                  f"{','.join(acts) or '-'}", d))
        else:
            items.append(PlanItem(KEEP, d.name, pid, d.priority, acts, "", d))
    for pid, kname, prio, actions in present:
        if pid in matched:
            continue
        if pid in owners and owners[pid].iface == iface:
            items.append(PlanItem(REMOVE, owners[pid].name, pid, prio, actions_to_names(actions),
                                  "no longer in the config"))
        elif exclusive:
            items.append(PlanItem(REMOVE, kname, pid, prio, actions_to_names(actions),
                                  "not managed by this config (--exclusive)"))
        else:
            items.append(PlanItem(FOREIGN, kname, pid, prio, actions_to_names(actions),
                                  "not managed by this config: kept"))
    return InterfacePlan(iface, netns, mode, tuple(items))


_SIGN = {ADD: "+", REMOVE: "-", UPGRADE: "~", UPDATE: "~", KEEP: " ", FOREIGN: " "}


def plan_text(plans: list[InterfacePlan]) -> str:
    out = []
    for p in plans:
        where = p.iface + (f" (netns {p.netns})" if p.netns else "")
        if p.error:
            out.append(f"{where}: error: {p.error}")
            continue
        out.append(f"{where} [{p.mode}]: {'changes' if p.changed else 'no changes'}")
        for i in p.items:
            ident = f"id {i.prog_id}" if i.prog_id else "new"
            acts = ",".join(i.actions) or "-"
            line = f"  {_SIGN[i.action]} {i.action:8s} {i.name:20s} {ident:10s} prio {i.priority}  {acts}"
            if i.detail:
                line += f"  ({i.detail})"
            out.append(line.rstrip())
    n = sum(1 for p in plans for i in p.items if i.action in CHANGES)
    out.append(f"Plan: {n} change(s) on {sum(1 for p in plans if p.changed)} interface(s).")
    return "\n".join(out) + "\n"
