"""The seam between the router and the two ways of running a chain (sans-I/O style).

A back-end has a pure half, ``plan(state, request)``, which applies the rules
(``rules.py``) to what was observed and decides what to load, keep, link and swap; and an
effectful half, ``execute(plan, attempt)``, which does it up to the swap and returns a
``PendingChange``. The router (``router.py``) runs one retry loop around
observe -> choose a back-end -> plan -> execute, for both. ``freplace/`` (libxdp's
dispatcher) and ``linked/`` (one XDP program) implement it and never import each other.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Protocol

from dispatcher.chain import pending
from dispatcher.record import record

if TYPE_CHECKING:
    from collections.abc import Callable

    from dispatcher.chain.model import ChangeRequest, ChangeResult, Notice
    from dispatcher.chain.observe import OpenChain
    from dispatcher.chain.pending import PendingChange
    from dispatcher.chain.state import InterfaceState
    from dispatcher.kernel.fd import OwnedFd


@record
class Attempt:
    """One try at a change: the request, and what this try observed and holds."""

    req: ChangeRequest
    ifindex: int
    observed: OpenChain          # the old chain, fds open (owned by ``held``)
    held: ExitStack              # what a pending change keeps until commit/rollback
    old_mode_flags: int          # the mode the old program is attached in
    new_mode_flags: int          # the mode the request attaches in
    notice: Notice | None = None
    verifier_log: list[str] | None = None
    before_swap: Callable[[ChangeResult], None] | None = None

    def swap(self, new_fd: int | None, old_fd: OwnedFd | None, mode_flags: int) -> None:
        """``pending.swap`` on this attempt's interface."""
        pending.swap(self.ifindex, new_fd, old_fd, mode_flags, self.req.netns, self.req.iface)

    def about_to_swap(self, preview: ChangeResult) -> None:
        """Called with what the interface will run, right before the swap: the caller
        records its intent (ownership) so that a crash after the swap leaves nothing the
        next run cannot recognise."""
        if self.before_swap is not None:
            self.before_swap(preview)


class ChainBackend(Protocol):
    kind: str

    def plan(self, st: InterfaceState, req: ChangeRequest) -> Any:
        """Pure: refuse what this back-end cannot do, decide the new chain."""

    def execute(self, plan: Any, at: Attempt) -> PendingChange:
        """Load, link, pin and swap ``plan``; raise ``rules.Race`` when the swap loses."""
