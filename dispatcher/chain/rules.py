"""The rules of a chain change (pure): which back-end serves a request, what each refuses,
and the order of a chain's members. Every refusal the freplace and linked back-ends make
is here, once, so it is unit-tested without a kernel (tests/unit/test_chain_rules.py).

A rule reads an ``InterfaceState`` (what ``observe`` saw) and a ``ChangeRequest``; it
returns a value or raises the user's error (message, hint and exit code as the CLI
prints them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dispatcher.chain import protocol
from dispatcher.chain.model import DISPATCH_MODES, MODES, STATS_MODES, ChangeRequest
from dispatcher.chain.state import InterfaceState
from dispatcher.chain.versions import libxdp_compat
from dispatcher.errors import ForeignStateError, UsageError
from dispatcher.record import replace

FREPLACE = "freplace"
LINKED = "linked"


class Race(Exception):
    """The interface changed between our observation and our swap: start over."""


def check_request(req: ChangeRequest) -> None:
    if req.mode not in MODES:
        raise UsageError(f"unknown mode '{req.mode}' (expected native, skb or hw)")
    if req.dispatch not in DISPATCH_MODES:
        raise UsageError(f"unknown dispatch mode '{req.dispatch}' (expected "
                         f"{', '.join(DISPATCH_MODES)})")
    if req.stats is not None and req.stats not in STATS_MODES:
        raise UsageError(f"unknown stats setting '{req.stats}' (expected "
                         f"{', '.join(STATS_MODES)})")
    check_version(req.dispatcher_version)


def check_version(version: int | None) -> None:
    """A dispatcher version this tool writes (None: not asked for)."""
    if version is None or version in protocol.WRITABLE_VERSIONS:
        return
    writes = " and ".join(map(str, protocol.WRITABLE_VERSIONS))
    why = (" (v1 is what libxdp 1.0 to 1.2 wrote; it is read, not written)"
           if version in protocol.READABLE_VERSIONS else "")
    raise UsageError(f"dispatcher version {version} cannot be written: this tool writes "
                     f"{writes}{why}", hint="pass --dispatcher-version 2 (read by libxdp 1.3 "
                     "and later) or 3 (libxdp 1.6 and later)")


def resolve_names(st: InterfaceState, req: ChangeRequest) -> ChangeRequest:
    """Components named for removal (``unload -n``), as the chain at hand knows them: a
    freplace chain's by their program ids (a name two components share is refused: say
    which by id), a program attached directly by its own name (it goes); a linked chain
    keeps names (its components have no ids)."""
    if not req.remove_names or req.remove_all or st.kind in ("linked", "none"):
        return req
    iface = req.iface
    if st.kind == "legacy":
        main = st.main
        assert main is not None
        other = sorted(req.remove_names - {main.full_name, main.name})
        if other:
            raise UsageError(f"{iface}: no program named '{other[0]}' is attached (attached "
                             f"directly: {main.full_name}, id {main.id})")
        return replace(req, remove_names=frozenset(), remove_all=True)
    ids = set(req.remove_ids)
    for name in sorted(req.remove_names):
        hits = [c for c in st.programs if c.name == name]
        if not hits:
            raise UsageError(f"{iface}: no component named '{name}' in the chain (components: "
                             f"{', '.join(c.name for c in st.programs) or 'none'})")
        if len(hits) > 1:
            raise UsageError(f"{iface}: {len(hits)} components are named '{name}' (ids "
                             f"{', '.join(str(c.id) for c in hits)}); say which",
                             hint=f"xdp-dispatch unload {iface} -i ID")
        ids.add(hits[0].id)
    return replace(req, remove_names=frozenset(), remove_ids=frozenset(ids))


def choose_backend(st: InterfaceState, req: ChangeRequest,
                   freplace_supported: Callable[[], bool]) -> str:
    """``linked`` when the attached program is a linked chain, when components are named
    for removal (only linked ones have names without ids), when linked dispatch is asked
    for, or for ``auto`` with several programs to chain on a kernel that refuses freplace;
    ``freplace`` otherwise. ``freplace_supported`` is asked only when it decides."""
    if st.kind == "linked":
        if req.dispatch == FREPLACE and req.add:
            raise ForeignStateError(
                f"{req.iface} has a linked chain attached; --dispatch freplace cannot add to it",
                hint=f"unload it first (xdp-dispatch unload {req.iface} --all), or use "
                     "--dispatch auto|linked")
        return LINKED
    if req.remove_names and not req.remove_all:
        return LINKED                # the linked rules explain that names need a linked chain
    if req.dispatch == LINKED:
        return LINKED if req.add else FREPLACE
    if req.dispatch == "auto" and len(req.add) >= 2:
        return FREPLACE if freplace_supported() else LINKED
    return FREPLACE


def _not_a_dispatcher(st: InterfaceState, iface: str,
                      no_freplace: bool = False) -> ForeignStateError:
    main = st.main
    hint = f"remove it first (xdp-dispatch unload {iface} --all), or pass --force to replace it"
    if no_freplace:      # the programs can only run together linked into one program
        hint = (f"this kernel refuses freplace, so a chain here is one linked program: unload "
                f"it (xdp-dispatch unload {iface} --all) and load the programs together "
                f"(xdp-dispatch load {iface} A.o B.o), or pass --force to replace it")
    return ForeignStateError(
        f"{iface} has a program that is not a dispatcher attached "
        f"({main.full_name if main else '?'}, id {main.id if main else '?'})", hint=hint)


def check_freplace(st: InterfaceState, req: ChangeRequest,
                   freplace: Callable[[], tuple[bool, str]] | None = None) -> None:
    """What the freplace back-end refuses to change. ``freplace()`` (supported, detail)
    is asked only to word a refusal's hint."""
    iface = req.iface
    if st.kind == "legacy":
        if req.remove_all or (st.main and st.main.id in req.remove_ids):
            return
        if not req.force:
            raise _not_a_dispatcher(st, iface, bool(req.add and freplace and not freplace()[0]))
    if st.kind == "dispatcher":
        assert st.dispatcher is not None
        if req.remove_all:
            return
        check_version_change(st, req)
        missing = [p for p in st.problems if "missing" in p]
        if missing:
            raise ForeignStateError(f"{iface}: dispatcher {st.dispatcher.id} cannot be changed: "
                                    + "; ".join(missing),
                                    hint=f"remove it with xdp-dispatch unload {iface} --all")
        for pid in sorted(req.remove_ids):
            if pid not in {c.id for c in st.programs}:
                raise UsageError(f"{iface}: no program with id {pid} in the chain "
                                 f"(ids: {', '.join(str(c.id) for c in st.programs) or 'none'})")
        if st.mode and st.mode != req.mode and st.programs:
            raise UsageError(f"{iface}: the chain is attached in {st.mode} mode, not {req.mode}",
                             hint=f"pass -m {st.mode}")
    if st.kind == "none" and req.remove_ids:
        raise UsageError(f"{iface}: no XDP program is attached")
    if st.kind == "linked" and not req.remove_all:
        raise Race("a linked chain was attached meanwhile")


def check_version_change(st: InterfaceState, req: ChangeRequest) -> None:
    """What a change of an attached dispatcher refuses about versions: a version this tool
    does not write is changed only by an explicit ``--dispatcher-version`` (``upgrade``),
    and a device-bound v3 chain cannot become v2 (its components are bound to the device
    and only re-link to a device-bound dispatcher)."""
    assert st.dispatcher is not None
    iface, v, want = req.iface, st.dispatcher.version, req.dispatcher_version
    newest = max(protocol.WRITABLE_VERSIONS)
    if v not in protocol.WRITABLE_VERSIONS and want in (None, v):
        compat = libxdp_compat(v, st.config.size if st.config else 0)
        if v < newest:
            raise ForeignStateError(
                f"{iface}: the attached dispatcher uses protocol version {v}, older than ours "
                f"({protocol.VERSION}); refusing a transparent upgrade "
                f"({compat.describe(v)})",
                hint=f"upgrade it explicitly (xdp-dispatch upgrade {iface} "
                     f"--dispatcher-version {protocol.VERSION}), or unload it first: "
                     f"xdp-dispatch unload {iface} --all")
        raise ForeignStateError(
            f"{iface}: the attached dispatcher uses protocol version {v}; this tool writes "
            f"versions {' and '.join(map(str, protocol.WRITABLE_VERSIONS))} and will not "
            "change it",
            hint=f"unload it first (xdp-dispatch unload {iface} --all), or use the libxdp "
                 "that wrote it")
    if want is not None and want < 3 and st.dispatcher.devbound:
        raise ForeignStateError(
            f"{iface}: the dispatcher is device-bound (v3, bound to {iface}) and so are its "
            f"components; a v{want} dispatcher cannot be device-bound, so they cannot be "
            "re-linked to it",
            hint=f"unload the chain (xdp-dispatch unload {iface} --all) and load its "
                 f"programs again with --dispatcher-version {want}")


def check_upgrade(st: InterfaceState, iface: str, version: int) -> bool:
    """What ``upgrade IFACE --dispatcher-version N`` refuses; False when the dispatcher
    already is version N (nothing to do)."""
    check_version(version)
    if st.kind == "linked":
        raise UsageError(f"{iface}: a linked chain is one XDP program, not libxdp's "
                         "dispatcher: it has no dispatcher version to change")
    if st.kind != "dispatcher" or st.dispatcher is None:
        what = "no XDP program" if st.kind == "none" else "a program that is not a dispatcher"
        raise UsageError(f"{iface}: has {what} attached; there is no dispatcher to upgrade",
                         hint=f"load programs with xdp-dispatch load {iface} "
                              f"--dispatcher-version {version} OBJ")
    return st.dispatcher.version != version


def check_slots(iface: str, n: int) -> None:
    if n > protocol.MAX_SLOTS:
        raise UsageError(f"{iface}: {n} programs requested; a dispatcher has "
                         f"{protocol.MAX_SLOTS} slots")


def check_linked(st: InterfaceState, req: ChangeRequest) -> bool:
    """What the linked back-end refuses; returns whether the whole chain goes (``remove_all``,
    or the chain's own program id named for removal)."""
    iface = req.iface
    main_id = st.main.id if st.main else 0
    remove_all = req.remove_all or bool(main_id and main_id in req.remove_ids)
    if req.dispatcher_version is not None and req.dispatch == LINKED and not remove_all:
        # (with auto, the version applies when a dispatcher is built, not to a linked chain)
        raise UsageError(f"{iface}: a linked chain is one XDP program, not libxdp's "
                         "dispatcher: --dispatcher-version applies to freplace chains",
                         hint="leave out --dispatcher-version (or dispatcher_version in a "
                              "config), or use --dispatch freplace")
    if st.kind == "linked":
        if st.mode and st.mode != req.mode and not remove_all:
            raise UsageError(f"{iface}: the linked chain is attached in {st.mode} mode, "
                             f"not {req.mode}", hint=f"pass -m {st.mode}")
    elif st.kind == "dispatcher" and not remove_all:
        raise ForeignStateError(
            f"{iface} has a freplace dispatcher chain (id {main_id}); it cannot be turned "
            "into a linked chain in place",
            hint=f"unload it first (xdp-dispatch unload {iface} --all), or use "
                 "--dispatch freplace")
    elif st.kind == "legacy" and not (remove_all or req.force):
        raise _not_a_dispatcher(st, iface)
    if st.kind == "none" and (req.remove_ids or req.remove_names):
        raise UsageError(f"{iface}: no XDP program is attached")
    if req.remove_ids - {main_id} and st.kind == "linked":
        raise UsageError(
            f"{iface}: the linked chain's components have no program ids of their own "
            f"(the chain is program {main_id})",
            hint=f"remove a component by name: xdp-dispatch unload {iface} -n NAME")
    if req.remove_names and st.kind != "linked":
        raise UsageError(f"{iface}: removing by name (-n) works on linked chains; "
                         f"this interface has kind {st.kind}")
    return remove_all


def slots_named(iface: str, labels: Sequence[str], names: frozenset[str]) -> set[int]:
    """The slots of a linked chain (by label) that ``names`` remove; every name must hit."""
    removed: set[int] = set()
    for rn in sorted(names):
        hit = {i for i, lab in enumerate(labels) if lab == rn}
        if not hit:
            raise UsageError(f"{iface}: no component named '{rn}' in the linked chain "
                             f"(components: {', '.join(labels) or 'none'})")
        removed |= hit
    return removed
