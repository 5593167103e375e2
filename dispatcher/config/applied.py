"""Records of the last apply of each config file, so that applying (or planning) an
unchanged file against an unchanged system answers "nothing to change" without parsing
the config, the objects or the chains again.

A record is written only after an apply (or a plan found nothing to change) and only when
a fresh plan of the result is empty. It holds that plan and a fingerprint of everything a
plan reads:

* inputs: the config file's bytes (sha256), every object file it names (sha256), whether
  each ``pin_maps`` directory is on bpffs, ``--exclusive``, the bpffs root, and the
  package's own files (name, size, mtime), so that an upgrade of the tool re-plans;
* the system: per network namespace used, its identity and the RTM_GETLINK dump (every
  interface's index, name and attached XDP program ids; a new interface matching a glob,
  or any program attached or swapped anywhere in that namespace, shows here), the
  dispatcher pin directories of the chains on the config's interfaces (entry names and
  inodes), and the ownership records' bytes.

The system part is read before and after the plan that goes into the record and the
record is dropped if the two differ, so a change made by another tool meanwhile cannot
be hidden. Reusing a record reads the same fingerprint again and compares: any
difference, or any error on the way, falls back to the full plan. Program ids are never
reused while the program exists, and a chain changes only by attaching a new program
(a new id in the dump), so equal fingerprints mean equal plans.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

from dispatcher import caches, safeio
from dispatcher.chain import protocol
from dispatcher.config import ownership
from dispatcher.errors import XdpDispatchError
from dispatcher.kernel import bpffs, netlink
from dispatcher.version import __version__

if TYPE_CHECKING:
    from dispatcher.config.plan import InterfacePlan

RECORD_VERSION = 1
#: The package's root directory (this module is dispatcher/config/applied.py).
_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record_path(config: str) -> str:
    key = hashlib.sha256(os.fsencode(os.path.abspath(config))).hexdigest()[:32]
    return os.path.join(ownership.state_dir(), "applied", f"{key}.json")


#: sha256 of a regular file (OSError for a device, a FIFO or a file over the object cap).
file_sha = safeio.file_sha256


_STAMP: list[str] = []
caches.register("config.applied.code_stamp", _STAMP.clear)


def _code_stamp() -> str:
    """The installed package's files (name, size, mtime): a changed tool re-plans. Read
    once per process."""
    if _STAMP:
        return _STAMP[0]
    h = hashlib.sha256(__version__.encode())
    for top, dirs, files in os.walk(_PKG):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            st = os.stat(os.path.join(top, name))
            h.update(f"{os.path.relpath(top, _PKG)}/{name}:{st.st_size}:{st.st_mtime_ns}\n"
                     .encode())
    _STAMP.append(h.hexdigest())
    return _STAMP[0]


def inputs(config: str, config_sha: str, objects: list[str], pin_maps: list[str],
           exclusive: bool, known: dict[str, str] | None = None) -> dict[str, Any]:
    """The inputs part of a record; ``known`` gives objects' hashes already computed from
    the very bytes that were parsed (the others are read and hashed here)."""
    known = known or {}
    return {"config": os.path.abspath(config), "config_sha256": config_sha,
            "objects": {p: known.get(p) or file_sha(p) for p in sorted(set(objects))},
            "pin_maps": {p: bpffs.lands_on_bpffs(p) for p in sorted(set(pin_maps))},
            "exclusive": exclusive, "root": bpffs.bpffs_root(), "code": _code_stamp()}


def _netns_identity(netns: str | None) -> list[int]:
    path = "/proc/self/ns/net" if netns is None else netlink.netns_path(netns)
    st = os.stat(path)
    return [st.st_dev, st.st_ino]


def _pins(pdir: str) -> list[list[Any]] | None:
    try:
        return sorted([e.name, e.inode()] for e in os.scandir(pdir))
    except FileNotFoundError:
        return None


def system(targets: list[tuple[str | None, str]],
           links: dict[str | None, list[netlink.XdpState]] | None = None) -> dict[str, Any]:
    """The fingerprint of the system a plan of ``targets`` ((netns, interface) pairs) reads.
    Namespaces missing from ``links`` are dumped, and their dumps added to it."""
    links = {} if links is None else links
    root = bpffs.bpffs_root()
    out: dict[str, Any] = {"root_is_bpffs": bpffs.is_bpffs(root), "netns": {}, "pins": {}}
    for ns in sorted({ns for ns, _ in targets}, key=lambda n: n or ""):
        if ns not in links:
            links[ns] = netlink.list_links(netns=ns)
        out["netns"][ns or ""] = {
            "id": _netns_identity(ns),
            "links": [[x.ifindex, x.ifname, x.attached, x.prog_id, x.drv_prog_id,
                       x.skb_prog_id, x.hw_prog_id] for x in links[ns]]}
        by_name = {x.ifname: x for x in links[ns]}
        for n in sorted(i for s, i in targets if s == ns):
            x = by_name.get(n)
            main = (x.drv_prog_id or x.skb_prog_id) if x else 0
            if x and main:
                pdir = protocol.pin_dir(root, x.ifindex, main)
                out["pins"][pdir] = _pins(pdir)
    owned = ownership.read_state(ownership.records_path())
    out["owned"] = "" if owned is None else hashlib.sha256(owned).hexdigest()
    return out


def remember(config: str, ins: dict[str, Any], sys_before: dict[str, Any],
             plans: list[InterfacePlan]) -> bool:
    """Record ``plans`` (all unchanged) as the answer for ``ins`` if the system still
    matches ``sys_before`` (read before those plans were made). Best effort: False when
    not recorded."""
    if any(p.changed or p.error for p in plans):
        return False
    try:
        sys_after = system([(p.netns, p.iface) for p in plans])
        if sys_after != sys_before:
            return False
        rec = {"version": RECORD_VERSION, "inputs": ins, "system": sys_after,
               "plans": [plan_record(p) for p in plans]}
        ownership.write_state(_record_path(config),
                              json.dumps(rec, separators=(",", ":")).encode())
        return True
    except (OSError, XdpDispatchError):
        return False


def forget(config: str) -> None:
    """Drop the record of ``config`` (best effort; an untrusted state directory is
    reported by whatever reads or writes it next)."""
    try:
        ownership.remove_state(_record_path(config))
    except (OSError, XdpDispatchError):
        pass


def reuse(config: str, *, exclusive: bool = False) -> list[InterfacePlan] | None:
    """The recorded plans for ``config`` if nothing they depend on changed since, else None.
    A damaged record (any shape, any depth) is None: the full plan. A state directory
    others could write to is refused (UnsafePathError): its records could be forged."""
    ownership.check_state_dir()
    try:
        data = ownership.read_state(_record_path(config))
        if data is None:
            return None
        rec = json.loads(data)
        if not isinstance(rec, dict) or rec.get("version") != RECORD_VERSION:
            return None
        old = rec["inputs"]
        if old["config"] != os.path.abspath(config) or old["exclusive"] != exclusive or \
                old["config_sha256"] != file_sha(config):
            return None
        plans = [plan_from_record(d) for d in rec["plans"]]
        # the system first: after a change by any tool, that is where the record fails
        if system([(p.netns, p.iface) for p in plans]) != rec["system"]:
            return None
        now = inputs(config, old["config_sha256"], list(old["objects"]),
                     list(old["pin_maps"]), exclusive)
        return plans if now == old else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, XdpDispatchError):
        return None


def plan_record(p: InterfacePlan) -> dict[str, Any]:
    """Every field of ``p`` as JSON (``plan_from_record`` reverses it)."""
    return {"iface": p.iface, "netns": p.netns, "mode": p.mode, "error": p.error,
            "observed_mode": p.observed_mode, "linked": p.linked, "dispatch": p.dispatch,
            "stats": p.stats, "observed_stats": p.observed_stats,
            "inline": p.inline, "observed_inline": p.observed_inline,
            "dispatcher_version": p.dispatcher_version,
            "items": [{"action": i.action, "name": i.name, "prog_id": i.prog_id,
                       "priority": i.priority, "actions": list(i.actions), "detail": i.detail,
                       "desired": None if i.desired is None else [
                           i.desired.name, i.desired.obj_path, i.desired.sha256,
                           i.desired.program, i.desired.priority, i.desired.actions,
                           i.desired.settings],
                       "kernel": None if i.kernel is None else [i.kernel[0],
                                                                list(i.kernel[1])]}
                      for i in p.items]}


def plan_from_record(d: dict[str, Any]) -> InterfacePlan:
    # the plan's values only when a record is used (fingerprinting needs none)
    from dispatcher.config.plan import DesiredProgram, InterfacePlan, PlanItem

    items = []
    for i in d["items"]:
        des = i["desired"]
        ker = i["kernel"]
        items.append(PlanItem(
            str(i["action"]), str(i["name"]), i["prog_id"], i["priority"],
            tuple(str(a) for a in i["actions"]), str(i["detail"]),
            None if des is None else DesiredProgram(str(des[0]), str(des[1]), str(des[2]),
                                                    str(des[3]), int(des[4]), int(des[5]),
                                                    str(des[6])),
            None if ker is None else (int(ker[0]), tuple(str(a) for a in ker[1]))))
    return InterfacePlan(str(d["iface"]), d["netns"], str(d["mode"]), tuple(items),
                         d["error"], d["observed_mode"], bool(d["linked"]), str(d["dispatch"]),
                         d.get("stats"), d.get("observed_stats"), d.get("inline"),
                         d.get("observed_inline"), d.get("dispatcher_version"))
