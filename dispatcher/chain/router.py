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
from contextlib import ExitStack

from dispatcher.chain import observe, protocol, rules
from dispatcher.chain.backend import Attempt, ChainBackend
from dispatcher.chain.model import ChangeRequest, ChangeResult, Notice
from dispatcher.chain.pending import (
    MODE_FLAGS,
    PendingChange,
    lock_dir,
    protocol_lock,
    remove_pin_dir,
    with_retries,
)
from dispatcher.errors import XdpDispatchError
from dispatcher.kernel import netlink


def _backend(kind: str) -> ChainBackend:
    # each back-end (and the object layer it brings) is imported only when chosen
    if kind == rules.LINKED:
        from dispatcher.chain.linked.backend import LinkedBackend
        return LinkedBackend()
    from dispatcher.chain.freplace.backend import FreplaceBackend
    return FreplaceBackend()


def _freplace_supported() -> bool:
    from dispatcher.chain.freplace import program
    return program.freplace().supported


def begin(req: ChangeRequest, *, notice: Notice | None = None,
          verifier_log: list[str] | None = None) -> PendingChange:
    """The change up to the swap; ``commit()`` or ``rollback()`` the result."""
    rules.check_request(req)
    ifindex = netlink.ifindex_of(req.iface, netns=req.netns)

    def attempt() -> PendingChange:
        xs = netlink.read_xdp(ifindex, netns=req.netns)
        # ``held``: what a pending change keeps until commit/rollback (the old chain's fds)
        with ExitStack() as held:
            old = observe.observe(xs, req.root, keep_open=True)
            held.callback(old.close)
            st = old.state
            backend = _backend(rules.choose_backend(st, req, _freplace_supported))
            plan = backend.plan(st, req)
            at = Attempt(req, ifindex, old, held,
                         MODE_FLAGS.get(st.mode or req.mode, MODE_FLAGS[req.mode]),
                         MODE_FLAGS[req.mode], notice, verifier_log)
            return backend.execute(plan, at)

    return with_retries(req.iface, attempt)


def change(req: ChangeRequest, *, notice: Notice | None = None,
           verifier_log: list[str] | None = None) -> ChangeResult:
    """``begin`` and ``commit``: the whole change in one swap."""
    pending = begin(req, notice=notice, verifier_log=verifier_log)
    pending.commit()
    return pending.result


def clean(root: str, iface: str | None = None, netns: str | None = None) -> list[str]:
    """Remove pin directories whose dispatcher is no longer attached (and nothing else)."""
    sdir = lock_dir(root)
    if not os.path.isdir(sdir):
        return []
    only = netlink.ifindex_of(iface, netns=netns) if iface else None
    removed = []
    with protocol_lock(root):
        for name in sorted(os.listdir(sdir)):
            parsed = protocol.parse_pin_dir_name(name)
            if parsed is None or not os.path.isdir(os.path.join(sdir, name)):
                continue
            ifindex, did = parsed
            if only is not None and ifindex != only:
                continue
            try:
                xs = netlink.read_xdp(ifindex, netns=netns)
                current = {xs.drv_prog_id, xs.skb_prog_id}
            except XdpDispatchError:
                current = set()
            if did in current:
                continue
            remove_pin_dir(os.path.join(sdir, name))
            removed.append(os.path.join(sdir, name))
    return removed
