"""Change an interface's chain: the one entry point for every change, and ``clean``.

``begin(request)`` runs one retry loop (``pending.with_retries``) around: observe the
interface -> choose the back-end once (``rules.choose_backend``: the attached chain's
kind, the dispatch mode asked for, and for ``auto`` whether the kernel takes freplace)
-> its pure ``plan`` -> its ``execute`` up to the swap. The result is a
``PendingChange``: the interface runs the new chain, and the old one can still be put
back exactly (``rollback()``) until ``commit()``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack

from dispatcher.chain import observe, protocol, rules
from dispatcher.chain.backend import Attempt, ChainBackend
from dispatcher.chain.model import ChangeRequest, ChangeResult, Notice
from dispatcher.chain.pending import (
    MODE_FLAGS,
    PendingChange,
    lock_dir,
    protocol_lock,
    with_retries,
)
from dispatcher.errors import XdpDispatchError
from dispatcher.kernel import bpffs, netlink
from dispatcher.kernel import netns as netns_mod
from dispatcher.kernel.bpffs import remove_pin_dir


def _backend(kind: str) -> ChainBackend:
    # each back-end (and the object layer it brings) is imported only when chosen
    if kind == rules.LINKED:
        from dispatcher.chain.linked.backend import LinkedBackend
        return LinkedBackend()
    from dispatcher.chain.freplace.backend import FreplaceBackend
    return FreplaceBackend()


def _freplace_supported() -> bool:
    from dispatcher.chain.freplace import program  # the probe loads our dispatcher
    return program.freplace().supported


def begin(req: ChangeRequest, *, notice: Notice | None = None,
          verifier_log: list[str] | None = None,
          before_swap: Callable[[ChangeResult], None] | None = None) -> PendingChange:
    """The change up to the swap; ``commit()`` or ``rollback()`` the result.
    ``before_swap(preview)`` runs right before the swap, with the ids the interface is
    about to run (see ``backend.Attempt.about_to_swap``)."""
    rules.check_request(req)
    ifindex = netlink.ifindex_of(req.iface, netns=req.netns)

    def attempt() -> PendingChange:
        xs = netlink.read_xdp(ifindex, netns=req.netns)
        # ``held``: what a pending change keeps until commit/rollback (the old chain's fds)
        with ExitStack() as held:
            old = observe.observe(xs, req.root, keep_open=True)
            held.callback(old.close)
            st = old.state
            this = rules.resolve_names(st, req)
            backend = _backend(rules.choose_backend(st, this, _freplace_supported))
            plan = backend.plan(st, this)
            at = Attempt(this, ifindex, old, held,
                         MODE_FLAGS.get(st.mode or req.mode, MODE_FLAGS[req.mode]),
                         MODE_FLAGS[req.mode], notice, verifier_log, before_swap)
            return backend.execute(plan, at)

    return with_retries(req.iface, attempt)


def change(req: ChangeRequest, *, notice: Notice | None = None,
           verifier_log: list[str] | None = None,
           before_swap: Callable[[ChangeResult], None] | None = None) -> ChangeResult:
    """``begin`` and ``commit``: the whole change in one swap."""
    pending = begin(req, notice=notice, verifier_log=verifier_log, before_swap=before_swap)
    pending.commit()
    return pending.result


def attached_everywhere() -> tuple[set[int], list[str]]:
    """The ids of every XDP program attached to an interface in any network namespace we
    can see (bpffs is shared by all of them), and the namespaces we could not read."""
    paths, problems = netns_mod.every_namespace()
    ids: set[int] = set()
    for path in paths:
        try:
            links = netlink.list_links(netns=path)
        except XdpDispatchError as e:
            if os.path.exists(path):
                problems.append(f"{path}: {e.message}")
            continue
        for xs in links:
            ids |= {xs.drv_prog_id, xs.skb_prog_id, xs.hw_prog_id} - {0}
    return ids, problems


def clean(root: str, iface: str | None = None, netns: str | None = None) -> list[str]:
    """Remove the pin directories of dispatchers that are attached nowhere (and nothing
    else). A dispatcher still attached in another network namespace keeps its pins; when
    some namespace cannot be read, nothing is removed but what is provably stale."""
    sdir = lock_dir(root)
    if not os.path.isdir(sdir):
        return []
    only = netlink.ifindex_of(iface, netns=netns) if iface else None
    removed = []
    with protocol_lock(root):            # a change pins and swaps under it: no gap to see
        attached, problems = attached_everywhere()
        for name in bpffs.pin_subdirs(sdir):     # real directories only, in a trusted dir
            parsed = protocol.parse_pin_dir_name(name)
            if parsed is None:
                continue
            ifindex, did = parsed
            if only is not None and ifindex != only:
                continue
            if did in attached or (problems and _maybe_attached(ifindex, did, netns)):
                continue
            if remove_pin_dir(os.path.join(sdir, name)):   # never follows a symlink
                removed.append(os.path.join(sdir, name))
        if iface is None:
            removed += _sweep_counters(root)
    return removed


def _sweep_counters(root: str) -> list[str]:
    """Remove the fexit counters (``chain.fexit``) of components and chains that are
    attached nowhere any more: each namespace's freplace chains are read, and what the
    counters directory holds for anything else goes."""
    from dispatcher.chain import fexit

    if not fexit.entries(root):       # (checks the directory before anything is read)
        return []
    paths, problems = netns_mod.every_namespace()
    if problems:
        return []                     # a namespace we cannot read: nothing is provably stale
    attached: dict[int, dict[int, list[int]]] = {}
    for path in paths:
        per = attached.setdefault(os.stat(path).st_ino, {})
        for st in observe.status(netns=path, root=root, packets=False):
            if st.kind == "dispatcher":
                per[st.ifindex] = [c.id for c in st.programs]
    return fexit.sweep(root, attached)


def _maybe_attached(ifindex: int, did: int, netns: str | None) -> bool:
    """Where a namespace could not be read: libxdp's own test (the interface of that
    index, in the namespace asked about, runs that dispatcher) decides only if it says
    'stale' for sure: the interface exists there and runs something else."""
    try:
        xs = netlink.read_xdp(ifindex, netns=netns)
    except XdpDispatchError:
        return True
    return did in {xs.drv_prog_id, xs.skb_prog_id}


def refresh_counters(root: str, netns: str | None, iface: str) -> None:
    """Where ``iface`` runs a counted freplace chain, give counters to its components
    that have none (a program another tool added) and drop those of programs gone: what
    ``apply`` (and so the agent) does after each run."""
    from dispatcher.chain import fexit

    if not os.path.isdir(fexit.stats_dir(root)):
        return
    ifindex = netlink.ifindex_of(iface, netns=netns)
    setting = fexit.mode(root, fexit.netns_id(netns), ifindex)
    if setting == "off":
        return
    with protocol_lock(root):         # the chain cannot change while it is read
        xs = netlink.read_xdp(ifindex, netns=netns)
        with observe.observe(xs, root) as ch:
            st = ch.state
        fexit.reconcile_attached(root, netns, ifindex,
                                 setting if st.kind == "dispatcher" else "off",
                                 [c.id for c in st.programs if c.id])
