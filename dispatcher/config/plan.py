"""What ``apply`` would change on each interface (pure: desired state + observed state +
ownership records in, a plan out).

Matching: a component we loaded is known by its program id in the ownership records,
which name the config entry it came from. A desired entry whose owned component has
the same object (content hash) and program is kept (or only re-prioritised / given new
chain-call actions, which needs no reload); a changed object or program, or changed
load-time overrides (``globals``, ``pin_maps``, ``frags``, ``prog_type``: recorded as
``settings``), is an upgrade; a desired entry with no owned component is an add; an owned
component no longer desired is removed. Components nobody recorded are foreign (e.g. loaded by
xdp-loader): kept, and ordered by priority with ours, unless ``exclusive``.
"""

from __future__ import annotations

import json
from typing import Any

from dispatcher.chain.description import ChainDescription
from dispatcher.chain.state import InterfaceState
from dispatcher.obj.actions import actions_to_names, names_to_actions
from dispatcher.record import record

ADD, REMOVE, UPGRADE, UPDATE, KEEP, FOREIGN = "add", "remove", "upgrade", "update", "keep", "foreign"
VERSION = "version"      # the attached dispatcher is rewritten as another version
CHANGES = (ADD, REMOVE, UPGRADE, UPDATE, VERSION)


@record
class DesiredProgram:
    name: str            # config entry name (unique per interface)
    obj_path: str        # absolute path of the object file
    sha256: str          # of the object file's bytes
    program: str         # function name actually selected
    priority: int
    actions: int         # chain-call bitmap
    settings: str = ""   # load-time overrides (globals, pin_maps, frags): canonical JSON, or ""


def _settings_changed(old: str, new: str) -> str:
    a = json.loads(old) if old else {}
    b = json.loads(new) if new else {}
    keys = sorted(k for k in {*a, *b} if a.get(k) != b.get(k))
    return f"{', '.join(keys)} changed"


@record
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
    settings: str = ""

    @property
    def managed_by(self) -> str:
        """What ``status`` shows: the config file it came from, or the tool itself."""
        return self.config or "xdp-dispatch"

    def to_json(self) -> dict[str, object]:
        return {"prog_id": self.prog_id, "iface": self.iface, "netns": self.netns,
                "name": self.name, "object": self.obj_path, "sha256": self.sha256,
                "program": self.program, "priority": self.priority, "actions": self.actions,
                "config": self.config, "settings": self.settings}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Owner:
        return Owner(int(d["prog_id"]), str(d["iface"]),
                     None if d.get("netns") is None else str(d["netns"]), str(d["name"]),
                     str(d["object"]), str(d["sha256"]), str(d["program"]),
                     int(d["priority"]), int(d["actions"]), str(d.get("config", "")),
                     str(d.get("settings", "")))


@record
class PlanItem:
    action: str
    name: str
    prog_id: int | None = None
    priority: int | None = None
    actions: tuple[str, ...] = ()
    detail: str = ""
    desired: DesiredProgram | None = None
    kernel: tuple[int, tuple[str, ...]] | None = None   # observed (priority, actions) if matched

    def to_json(self) -> dict[str, object]:
        return {"action": self.action, "name": self.name, "id": self.prog_id,
                "priority": self.priority, "chain_call_actions": list(self.actions),
                "detail": self.detail}


@record
class InterfacePlan:
    iface: str
    netns: str | None
    mode: str
    items: tuple[PlanItem, ...] = ()
    error: str | None = None
    observed_mode: str | None = None    # mode of the chain found on the interface, if any
    linked: bool = False                # the interface runs a linked chain (items by name)
    dispatch: str = "auto"              # auto | freplace | linked (from the config)
    stats: str | None = None            # off | counts | timing (from the config; None: keep)
    observed_stats: str | None = None   # the chain's current setting (a linked chain's
                                        # description; a freplace chain's counters)
    inline: bool | None = None          # inline entries (from the config; None: keep)
    observed_inline: bool | None = None  # a linked chain's current setting
    dispatcher_version: int | None = None   # from the config (None: keep the chain's)

    @property
    def inline_change(self) -> bool:
        """The config turns a linked chain's inlining on or off."""
        return (self.linked and self.inline is not None and self.observed_inline is not None
                and self.inline != self.observed_inline)

    @property
    def stats_change(self) -> bool:
        """The config turns a chain's counters on or off (or timing on or off)."""
        return (self.stats is not None and self.observed_stats is not None
                and self.stats != self.observed_stats)

    @property
    def changed(self) -> bool:
        return any(i.action in CHANGES for i in self.items) or self.stats_change or \
            self.inline_change

    def to_json(self) -> dict[str, object]:
        return {"interface": self.iface, "netns": self.netns, "mode": self.mode,
                "changed": self.changed, "items": [i.to_json() for i in self.items],
                "error": self.error, **({"stats": self.stats} if self.stats else {}),
                **({"inline": self.inline} if self.inline is not None else {}),
                **({"dispatcher_version": self.dispatcher_version}
                   if self.dispatcher_version else {})}


def version_item(observed: InterfaceState, version: int | None) -> PlanItem | None:
    """The ``version`` change when the config asks an attached dispatcher for another
    dispatcher version (an upgrade or downgrade done in the same swap)."""
    d = observed.dispatcher
    if version is None or observed.kind != "dispatcher" or d is None or d.version == version:
        return None
    return PlanItem(VERSION, "dispatcher", d.id, detail=f"v{d.version} -> v{version}",
                    kernel=(d.version, ()))        # (the observed version, no actions)


def plan_interface(iface: str, netns: str | None, mode: str, desired: list[DesiredProgram],
                   observed: InterfaceState, owners: dict[int, Owner],
                   exclusive: bool = False, source: str = "",
                   dispatcher_version: int | None = None) -> InterfacePlan:
    """The difference between ``desired`` and what ``observed`` shows on one interface
    (``dispatcher_version``: the config's, compared with an attached dispatcher's)."""
    if observed.kind == "linked" and observed.description is not None:
        return plan_linked(iface, netns, mode, desired, observed.description, observed.mode,
                           exclusive, source)
    present: list[tuple[int, str, int, int]] = []    # (id, kernel name, prio, actions)
    if observed.kind == "dispatcher":

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
        seen = (cur[2], actions_to_names(cur[3]))
        if (o.sha256 != d.sha256 or o.program != d.program or o.obj_path != d.obj_path
                or o.settings != d.settings):
            why = "object changed" if o.sha256 != d.sha256 else "program changed" \
                if (o.program, o.obj_path) != (d.program, d.obj_path) \
                else _settings_changed(o.settings, d.settings)
            items.append(PlanItem(UPGRADE, d.name, pid, d.priority, acts, why, d, seen))
        elif (cur[2], cur[3]) != (d.priority, d.actions):
            items.append(PlanItem(UPDATE, d.name, pid, d.priority, acts,
                                  f"priority {cur[2]} -> {d.priority}, actions "
                                  f"{','.join(actions_to_names(cur[3])) or '-'} -> "
                                  f"{','.join(acts) or '-'}", d, seen))
        else:
            items.append(PlanItem(KEEP, d.name, pid, d.priority, acts, "", d, seen))
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
    vi = version_item(observed, dispatcher_version)
    return InterfacePlan(iface, netns, mode, tuple(items) + ((vi,) if vi else ()),
                         observed_mode=observed.mode if present else None,
                         dispatcher_version=dispatcher_version)


def plan_linked(iface: str, netns: str | None, mode: str, desired: list[DesiredProgram],
                desc: ChainDescription, observed_mode: str | None, exclusive: bool = False,
                source: str = "") -> InterfacePlan:
    """Like ``plan_interface`` for a linked chain: its slots have no program ids, so they
    are matched by name (the slot label is the config entry's name) and compared with the
    object, program, settings, priority and actions the description records. A slot is
    ours to remove when the description says this config file manages it."""
    slots = desc.slots
    items: list[PlanItem] = []
    matched: set[int] = set()
    for d in desired:
        acts = actions_to_names(d.actions)
        k = next((i for i, s in enumerate(slots) if i not in matched and s.label == d.name),
                 None)
        if k is None:
            items.append(PlanItem(ADD, d.name, None, d.priority, acts,
                                  f"{d.program} from {d.obj_path}", d))
            continue
        matched.add(k)
        s = slots[k]
        seen = (s.priority, s.actions)
        sha = s.sha256
        if (not d.sha256.startswith(sha) or not sha or s.program != d.program
                or s.path != d.obj_path or s.settings != d.settings):
            why = "object changed" if not (sha and d.sha256.startswith(sha)) else \
                "program changed" if (s.program, s.path) != (d.program, d.obj_path) \
                else "settings changed"
            items.append(PlanItem(UPGRADE, d.name, None, d.priority, acts, why, d, seen))
        elif seen != (d.priority, acts):
            items.append(PlanItem(UPDATE, d.name, None, d.priority, acts,
                                  f"priority {s.priority} -> {d.priority}, actions "
                                  f"{','.join(s.actions) or '-'} -> {','.join(acts) or '-'}",
                                  d, seen))
        else:
            items.append(PlanItem(KEEP, d.name, None, d.priority, acts,
                                  f"not inlined: {s.not_inlined}" if s.not_inlined else "",
                                  d, seen))
    for i, s in enumerate(slots):
        if i in matched:
            continue
        if source and s.source == source:
            items.append(PlanItem(REMOVE, s.label, None, s.priority, s.actions,
                                  "no longer in the config"))
        elif exclusive:
            items.append(PlanItem(REMOVE, s.label, None, s.priority, s.actions,
                                  "not managed by this config (--exclusive)"))
        else:
            items.append(PlanItem(FOREIGN, s.label, None, s.priority, s.actions,
                                  "not managed by this config: kept"))
    return InterfacePlan(iface, netns, mode, tuple(items), observed_mode=observed_mode,
                         linked=True, observed_stats=desc.stats, observed_inline=desc.inline)


def _on(flag: bool | None) -> str:
    return "on" if flag else "off"


_SIGN = {ADD: "+", REMOVE: "-", UPGRADE: "~", UPDATE: "~", KEEP: " ", FOREIGN: " ",
         VERSION: "~"}


def plan_text(plans: list[InterfacePlan]) -> str:
    out = []
    for p in plans:
        where = p.iface + (f" (netns {p.netns})" if p.netns else "")
        if p.error:
            out.append(f"{where}: error: {p.error}")
            continue
        out.append(f"{where} [{p.mode}]: {'changes' if p.changed else 'no changes'}")
        for i in p.items:
            if i.action == VERSION:
                out.append(f"  ~ version  dispatcher (id {i.prog_id}) {i.detail}")
                continue
            ident = (f"id {i.prog_id}" if i.prog_id
                     else "new" if i.action in (ADD, UPGRADE) else "linked")
            acts = ",".join(i.actions) or "-"
            line = f"  {_SIGN[i.action]} {i.action:8s} {i.name:20s} {ident:10s} prio {i.priority}  {acts}"
            if i.detail:
                line += f"  ({i.detail})"
            out.append(line.rstrip())
        if p.stats_change:
            out.append(f"  ~ stats    {p.observed_stats} -> {p.stats}")
        if p.inline_change:
            out.append(f"  ~ inline   {_on(p.observed_inline)} -> {_on(p.inline)}")
    n = sum(1 for p in plans for i in p.items if i.action in CHANGES) + sum(
        int(p.stats_change) + int(p.inline_change) for p in plans)
    out.append(f"Plan: {n} change(s) on {sum(1 for p in plans if p.changed)} interface(s).")
    return "\n".join(out) + "\n"
