"""Planning a freplace chain (pure): which components the new dispatcher gets, in which
order (libxdp's sort), which dispatcher version it is written as (``choose_version``),
and whether a single program is attached without a dispatcher because the kernel
refuses freplace."""

from __future__ import annotations

import errno
from collections.abc import Callable

from dispatcher.chain import protocol, rules
from dispatcher.chain.model import ChangeRequest, NewProgram
from dispatcher.chain.state import InterfaceState
from dispatcher.errors import NotSupportedError
from dispatcher.obj.actions import names_to_actions
from dispatcher.record import record


@record
class Member:
    """One slot of the new dispatcher: a kept component (``existing``: its index in the
    observed chain) or a new program (``new``: its index in the request's ``add``)."""

    name: str
    priority: int
    actions: int
    frags: bool
    key: tuple[object, ...]
    existing: int = -1
    new: int = -1


@record
class FreplacePlan:
    members: tuple[Member, ...]      # in slot order
    old_pin_dir: str | None          # the replaced dispatcher's pins, removed on commit
    direct: bool = False             # no freplace: attach the one new program directly
    probe_detail: str = ""           # why freplace is refused (for the notice)
    version: int = protocol.VERSION  # the new dispatcher's protocol version
    devbound: bool = False           # v3 bound to the interface (kept from the old one)


def choose_version(st: InterfaceState, req: ChangeRequest,
                   host_version: Callable[[], int]) -> tuple[int, bool]:
    """(version, device-bound) of the dispatcher ``req`` builds on ``st``. An attached
    dispatcher keeps its version and device binding unless ``req`` names another version
    (``upgrade``; a v2 one cannot be bound). A fresh chain gets the version asked for, else
    the one the host's libxdp writes (``host_version()``, 0 when none is installed: asked
    only here), else ``protocol.VERSION``, which every libxdp >= 1.3 reads."""
    want = req.dispatcher_version
    if st.kind == "dispatcher" and st.dispatcher is not None and not req.remove_all:
        d = st.dispatcher
        v = d.version if want is None else want
        return v, d.devbound and v >= 3
    if want is not None:
        return want, False
    host = host_version()
    return (host if host in protocol.WRITABLE_VERSIONS else protocol.VERSION), False


def plan(st: InterfaceState, req: ChangeRequest,
         freplace: Callable[[], tuple[bool, str]],
         host_version: Callable[[], int] = lambda: 0) -> FreplacePlan:
    """The new chain for ``req`` on ``st``. ``freplace()`` answers (supported, detail) and
    is asked only when a dispatcher must be built and none with components is attached
    (one with components proves the kernel takes extensions). ``host_version()``: the
    dispatcher version the host's libxdp writes (see ``choose_version``)."""
    rules.check_freplace(st, req, freplace)
    members: list[Member] = []
    if st.kind == "dispatcher" and not req.remove_all:
        upd = req.updates
        for i, comp in enumerate(st.programs):
            if comp.id in req.remove_ids:
                continue
            prio, actions = upd.get(comp.id) or (
                comp.priority, names_to_actions(list(comp.chain_call_actions)))
            key = protocol.sort_key(protocol.SortKey(prio, comp.name, True, 0,
                                                     bytes.fromhex(comp.tag), comp.load_time))
            members.append(Member(comp.name, prio, actions, comp.frags, key, existing=i))
    for idx, n in enumerate(req.add):
        members.append(_new_member(n, idx))
    rules.check_slots(req.iface, len(members))
    members.sort(key=lambda m: m.key)
    old_pin_dir = st.dispatcher.pin_dir if st.kind == "dispatcher" and st.dispatcher else None
    if not members:
        return FreplacePlan((), old_pin_dir)
    supported, detail = (True, "") if st.kind == "dispatcher" and st.programs else freplace()
    if supported:
        version, devbound = choose_version(st, req, host_version)
        return FreplacePlan(tuple(members), old_pin_dir, version=version, devbound=devbound)
    if len(members) == 1 and members[0].new >= 0 and st.kind in ("none", "legacy"):
        return FreplacePlan(tuple(members), old_pin_dir, direct=True, probe_detail=detail)
    raise NotSupportedError(
        "probe freplace", errno.EOPNOTSUPP, subject=req.iface,
        detail=f"the running kernel refuses extension programs ({detail}); a chain of "
               f"{len(members)} programs needs freplace (Linux >= 5.10 with BPF "
               "trampolines)",
        hint="use --dispatch linked (or auto) to link the programs into one XDP "
             "program, load a single program, or use a kernel that allows "
             "BPF_PROG_TYPE_EXT")


def _new_member(n: NewProgram, idx: int) -> Member:
    key = protocol.sort_key(protocol.SortKey(n.priority, n.prog.name, False,
                                             n.prog.function.insn_count))
    return Member(n.prog.name, n.priority, n.actions, n.frags, key, new=idx)
