"""The values a chain change is made of (pure): what to load, the request, the result.

A ``ChangeRequest`` is one value for everything a caller asks of an interface; the router
(``router.py``) hands it to a back-end. ``settings`` are a config entry's load-time
overrides (globals, pinned maps, frags) in their canonical JSON form: written by the
config layer, redone here whenever a linked chain relinks a kept component.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dispatcher.record import record, replace
from dispatcher.uapi import BPF_F_XDP_HAS_FRAGS

if TYPE_CHECKING:  # the object layer is imported when a chain is built, not to empty one
    from dispatcher.obj.spec import ObjectSpec, ProgramSpec

MODES = ("native", "skb", "hw")
DISPATCH_MODES = ("auto", "freplace", "linked")
STATS_MODES = ("off", "counts", "timing")   # per-component counters (chain/stats.py);
                                            # timing: also run time per component
MAX_RETRIES = 10            # a lost race starts over from observation this many times
SHA_PREFIX = 16             # hex digits of an object's sha256 that identify it in a chain


@record
class NewProgram:
    obj: ObjectSpec
    prog: ProgramSpec
    priority: int
    actions: int            # chain-call bitmap (bits 0..4)
    pin_dir: str | None = None   # where its pinned maps live (default: the bpffs root)
    label: str = ""              # linked chains: the slot's name (default: the program name)
    settings: str = ""           # linked chains: load-time overrides to redo on rebuilds
    source: str = ""             # linked chains: the config file that manages the slot
    sha256: str = ""             # hex prefix of the object file's sha256, when known

    @property
    def frags(self) -> bool:
        return self.prog.frags


@record
class ChangeRequest:
    """Add ``add``, remove ``remove_ids`` / ``remove_names`` (or everything) and give kept
    components new (priority, actions) from ``update`` on ``iface``, in one swap."""

    iface: str
    mode: str
    root: str                                   # the bpffs the chain's pins live on
    add: tuple[NewProgram, ...] = ()
    remove_ids: frozenset[int] = frozenset()
    remove_names: frozenset[str] = frozenset()  # linked components, by name
    remove_all: bool = False
    update: tuple[tuple[int, int, int], ...] = ()   # (prog id, priority, actions)
    netns: str | None = None
    force: bool = False                         # replace a program that is not a chain
    dispatch: str = "auto"                      # auto | freplace | linked
    stats: str | None = None                    # off | counts; None: keep the chain's
    inline: bool | None = None                  # linked: inline entries; None: keep the chain's
    dispatcher_version: int | None = None       # freplace: 2 | 3; None: keep the chain's
                                                # (a fresh one: the host libxdp's, else 2)

    @property
    def updates(self) -> dict[int, tuple[int, int]]:
        return {pid: (prio, acts) for pid, prio, acts in self.update}


def request(iface: str, *, mode: str, root: str, add: list[NewProgram] | None = None,
            remove_ids: set[int] | None = None, remove_names: set[str] | None = None,
            remove_all: bool = False, update: Mapping[int, tuple[int, int]] | None = None,
            netns: str | None = None, force: bool = False,
            dispatch: str = "auto", stats: str | None = None,
            inline: bool | None = None,
            dispatcher_version: int | None = None) -> ChangeRequest:
    """A ``ChangeRequest`` from the usual Python collections."""
    return ChangeRequest(
        iface, mode, root, tuple(add or ()), frozenset(remove_ids or ()),
        frozenset(remove_names or ()), remove_all,
        tuple((pid, p, a) for pid, (p, a) in (update or {}).items()), netns, force, dispatch,
        stats, inline, dispatcher_version)


@record
class ChangeResult:
    iface: str
    ifindex: int
    kind: str                         # dispatcher | linked | legacy | none
    dispatcher_id: int
    programs: tuple[tuple[int, str, int], ...]   # (slot, name, prog id)
    attempts: int = 1
    new_ids: tuple[int, ...] = ()     # program ids of ``add``, in the order given


Notice = Callable[[str], None]


# ------------------------------------------------------------------ load-time settings

def settings_json(globals_: dict[str, Any] | None, pin_maps: str | None,
                  frags: bool | None, prog_type: str | None = None) -> str:
    """Canonical form of an entry's load-time overrides ("" when there are none)."""
    d: dict[str, Any] = {}
    if prog_type:
        d["prog_type"] = prog_type
    if globals_:
        d["globals"] = globals_
    if pin_maps:
        d["pin_maps"] = pin_maps
    if frags is not None:
        d["frags"] = frags
    return json.dumps(d, sort_keys=True, separators=(",", ":")) if d else ""


def with_settings(obj: ObjectSpec, program: str, settings: str
                  ) -> tuple[ObjectSpec, ProgramSpec, str | None]:
    """``obj``'s program ``program`` with the load-time overrides ``settings`` applied:
    ``prog_type`` chosen for a program whose section names none, ``globals`` written into
    the global-data maps' initial values (before ``.rodata`` is frozen), every map but
    global data pinned by name under ``pin_maps`` (an existing compatible pin is reused, so
    contents survive upgrades), and the frags flag as overridden. Returns (object,
    program, pin_maps directory or None)."""
    from dispatcher.obj.variables import with_overrides  # BTF: only for a config's settings

    s = json.loads(settings) if settings else {}
    obj = with_overrides(obj, s.get("globals") or {}).with_prog_type(s.get("prog_type"))
    pin_dir = s.get("pin_maps")
    if pin_dir:
        obj = replace(obj, maps=tuple(m if m.kind == "data" else replace(m, pinning=1)
                                      for m in obj.maps))
    prog = obj.program(name=program)
    if "frags" in s:
        flags = prog.prog_flags & ~BPF_F_XDP_HAS_FRAGS
        prog = replace(prog, prog_flags=flags | (BPF_F_XDP_HAS_FRAGS if s["frags"] else 0))
    return obj, prog, pin_dir
