"""Drift: what differs between a config file and the kernel (pure: plans in, drift out).

``status --config FILE`` computes the plan of FILE against what is attached (exactly what
``plan`` shows) and reads it the other way round: not "what apply would do" but "what is
different now". Per interface:

- ``missing``: an enabled entry of the file is not on the interface;
- ``extra``: a program this tool loaded for that interface is no longer in the file;
- ``differs``: the program is there, but its priority / chain-call actions differ
  (``fields`` says which, kernel vs file), or it runs another object than the file names
  now (the object file changed on disk, or another object / program / globals / pin_maps /
  frags is configured: ``detail`` says which);
- ``mode``: the chain is attached in another mode than the file asks for;
- ``version``: the attached dispatcher is another version than the file's
  ``dispatcher_version``;
- ``foreign``: a program nobody recorded (e.g. loaded by xdp-loader): not drift, since
  ``apply`` keeps such programs, but listed.

An interface that cannot be read (e.g. it does not exist) carries ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatcher.config.plan import ADD, FOREIGN, REMOVE, UPDATE, UPGRADE, VERSION, InterfacePlan

MISSING, EXTRA, DIFFERS, MODE, FOREIGN_PROG = "missing", "extra", "differs", "mode", "foreign"
VERSION_DRIFT = "version"
DRIFT_KINDS = (MISSING, EXTRA, DIFFERS, MODE, VERSION_DRIFT)


@dataclass(frozen=True, slots=True)
class DriftItem:
    kind: str
    name: str
    prog_id: int | None = None
    detail: str = ""
    fields: dict[str, dict[str, object]] = field(default_factory=dict)   # {"priority": {...}}

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "id": self.prog_id, "detail": self.detail,
                "fields": self.fields}


@dataclass(frozen=True, slots=True)
class InterfaceDrift:
    iface: str
    netns: str | None
    mode: str
    items: tuple[DriftItem, ...] = ()
    error: str | None = None

    @property
    def drifted(self) -> bool:
        return any(i.kind in DRIFT_KINDS for i in self.items)

    def to_json(self) -> dict[str, object]:
        return {"interface": self.iface, "netns": self.netns, "mode": self.mode,
                "drifted": self.drifted, "items": [i.to_json() for i in self.items],
                "error": self.error}


_UPGRADE_WHY = {
    "object changed": "the object file changed since this program was loaded",
    "program changed": "the file names another object or program",
}


def _fields(kernel: tuple[int, tuple[str, ...]] | None, prio: int | None,
            actions: tuple[str, ...]) -> dict[str, dict[str, object]]:
    if kernel is None:
        return {}
    out: dict[str, dict[str, object]] = {}
    if kernel[0] != prio:
        out["priority"] = {"kernel": kernel[0], "file": prio}
    if tuple(kernel[1]) != tuple(actions):
        out["chain_call_actions"] = {"kernel": list(kernel[1]), "file": list(actions)}
    return out


def interface_drift(p: InterfacePlan) -> InterfaceDrift:
    """The drift one interface's plan shows."""
    if p.error:
        return InterfaceDrift(p.iface, p.netns, p.mode, error=p.error)
    items: list[DriftItem] = []
    if p.observed_mode and p.observed_mode != p.mode:
        items.append(DriftItem(MODE, "", None, f"attached in {p.observed_mode} mode, the file "
                                               f"says {p.mode}",
                               {"mode": {"kernel": p.observed_mode, "file": p.mode}}))
    for i in p.items:
        if i.action == ADD:
            items.append(DriftItem(MISSING, i.name, None, "in the file, not on the interface"))
        elif i.action == REMOVE:
            items.append(DriftItem(EXTRA, i.name, i.prog_id,
                                   "loaded by xdp-dispatch for this interface, not in the file"))
        elif i.action == UPGRADE:
            why = _UPGRADE_WHY.get(i.detail, i.detail.replace(" changed", " differ from what was loaded"))
            f = _fields(i.kernel, i.priority, i.actions)
            items.append(DriftItem(DIFFERS, i.name, i.prog_id, ", ".join([why, *_texts(f)]), f))
        elif i.action == UPDATE:
            f = _fields(i.kernel, i.priority, i.actions)
            items.append(DriftItem(DIFFERS, i.name, i.prog_id, ", ".join(_texts(f)), f))
        elif i.action == VERSION and i.kernel is not None:
            was = i.kernel[0]
            items.append(DriftItem(VERSION_DRIFT, i.name, i.prog_id,
                                   f"dispatcher version {was}, the file says "
                                   f"{p.dispatcher_version}",
                                   {"dispatcher_version": {"kernel": was,
                                                           "file": p.dispatcher_version}}))
        elif i.action == FOREIGN:
            items.append(DriftItem(FOREIGN_PROG, i.name, i.prog_id, "not managed by this file"))
    return InterfaceDrift(p.iface, p.netns, p.mode, tuple(items))


def _texts(f: dict[str, dict[str, object]]) -> list[str]:
    return [f"{k}: kernel {_fmt(v['kernel'])}, file {_fmt(v['file'])}" for k, v in f.items()]


def _fmt(v: object) -> str:
    if isinstance(v, list):
        return ",".join(str(x) for x in v) or "-"
    return str(v)


def drift(plans: list[InterfacePlan], iface: str | None = None) -> list[InterfaceDrift]:
    """Drift of every interface of the plans (or only ``iface``)."""
    return [interface_drift(p) for p in plans if iface is None or p.iface == iface]
