"""The effectful end of every chain change, shared by both back-ends: the swap, the race
it may lose, the retry loop, the protocol lock, and the change left pending until the
caller commits it or rolls it back.

Locking discipline (one for both back-ends): the bpffs ``xdp`` directory lock (libxdp's
protocol lock) is held from an attempt's first write to bpffs (pinning a dispatcher,
creating a linked chain's pinned maps) until its swap is done, so ``clean`` or another
tool that takes the lock never sees pins whose program is not yet attached.
``commit``/``rollback`` take it again to remove pin directories.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from contextlib import ExitStack

from dispatcher import failpoints
from dispatcher.chain.model import MAX_RETRIES, ChangeResult
from dispatcher.chain.rules import Race
from dispatcher.errors import ConflictError, NetlinkOpError, XdpDispatchError
from dispatcher.kernel import netlink
from dispatcher.kernel.bpffs import DirLock, remove_created, remove_pin_dir
from dispatcher.kernel.fd import OwnedFd

MODE_FLAGS = {k: v for k, v in netlink.MODES.items() if k != "unspecified"}


def lock_dir(root: str) -> str:
    """The protocol's lock directory (``<bpffs>/xdp``), which also holds dispatcher pins."""
    return os.path.join(root, "xdp")


def protocol_lock(root: str) -> DirLock:
    return DirLock(lock_dir(root))


def swap(ifindex: int, new_fd: int | None, old_fd: OwnedFd | None, mode_flags: int,
         netns: str | None, iface: str = "") -> None:
    """Attach ``new_fd`` in place of ``old_fd`` in one netlink request: REPLACE expecting
    the old program, NOEXIST when there was none, or a detach expecting it when there is
    no new one. A kernel answer that someone else changed the interface first (EEXIST,
    EBUSY) raises ``Race``: the caller starts over from observation."""
    failpoints.hit("swap", iface)
    if failpoints.lost_race("swap", iface):
        raise Race(f"injected lost race at the swap ({failpoints.ENV})")
    try:
        if new_fd is None:
            assert old_fd is not None
            netlink.detach_xdp(ifindex, mode_flags, expected_fd=old_fd.fd, netns=netns)
        elif old_fd is None:
            netlink.attach_xdp(ifindex, new_fd, mode_flags, no_exist=True, netns=netns)
        else:
            netlink.attach_xdp(ifindex, new_fd, mode_flags, expected_fd=old_fd.fd, netns=netns)
    except NetlinkOpError as e:
        if e.errno in (errno.EEXIST, errno.EBUSY):
            raise Race(e.message) from None
        raise


def with_retries(iface: str, attempt: Callable[[], PendingChange]) -> PendingChange:
    """Run ``attempt`` until it does not lose a race (``MAX_RETRIES`` tries, short backoff);
    then the change is at the "attached" point: a failure there rolls it back."""
    last: Exception | None = None
    for n in range(1, MAX_RETRIES + 1):
        try:
            pending = attempt()
        except Race as r:
            last = r
            time.sleep((1 << n) / 1e6)
            continue
        r0 = pending.result
        pending.result = ChangeResult(r0.iface, r0.ifindex, r0.kind, r0.dispatcher_id,
                                      r0.programs, n, r0.new_ids)
        if pending.changed:
            try:
                failpoints.hit("attached", iface)
            except BaseException:
                pending.rollback()
                raise
        return pending
    raise ConflictError(f"{iface}: the XDP program changed under us {MAX_RETRIES} times; "
                        f"giving up ({last})")


class PendingChange:
    """A change that is live on the interface while what it replaced is still held.

    Until ``commit()`` the previous attached program (dispatcher or plain program) stays
    open and the replaced dispatcher's pin directory stays in place, so its component
    links keep it running exactly as before: ``rollback()`` re-attaches it with
    XDP_FLAGS_REPLACE expecting our program (or detaches ours, if the interface had
    nothing), then removes what this change pinned. Same program ids, same pins.
    """

    def __init__(self, result: ChangeResult, *, netns: str | None, root: str,
                 old_fd: OwnedFd | None = None, old_mode_flags: int = 0,
                 new_fd: OwnedFd | None = None, new_mode_flags: int = 0,
                 old_pin_dir: str | None = None, new_pin_dir: str | None = None,
                 new_map_pins: list[str] | None = None, held: ExitStack | None = None) -> None:
        self.result = result
        self.netns = netns
        self.root = root
        self.old_fd = old_fd
        self.old_mode_flags = old_mode_flags
        self.new_fd = new_fd
        self.new_mode_flags = new_mode_flags
        self.old_pin_dir = old_pin_dir
        self.new_pin_dir = new_pin_dir
        self.new_map_pins = list(new_map_pins or [])
        self._held = held or ExitStack()       # owns old_fd, new_fd and the old observation
        self.done = False
        # run once the change is kept (after the old chain is released): what follows the
        # chain but is not part of the swap, such as a freplace chain's counters
        self.on_commit: list[Callable[[], None]] = []

    @property
    def changed(self) -> bool:
        return self.old_fd is not None or self.new_fd is not None

    def _unpin(self, path: str) -> None:
        with protocol_lock(self.root):
            remove_pin_dir(path)

    def commit(self) -> None:
        """Keep the change: unpin the replaced dispatcher and release what was held."""
        if self.done:
            return
        self.done = True
        try:
            if self.old_pin_dir:
                self._unpin(self.old_pin_dir)
        finally:
            self._held.close()
        for fn in self.on_commit:
            fn()

    def rollback(self) -> None:
        """Put the previous program back (atomically, only if ours is still the attached
        one), then remove what this change pinned. Raises if the interface changed since."""
        if self.done:
            return
        self.done = True
        try:
            if not self.changed:
                return
            try:
                self._reattach_old()
            except XdpDispatchError:
                # Someone changed the interface since our swap (and may have built on our
                # chain): theirs stays; the replaced dispatcher is gone for good.
                if self.old_pin_dir:
                    self._unpin(self.old_pin_dir)
                raise
            if self.new_pin_dir:
                self._unpin(self.new_pin_dir)
            remove_created(self.new_map_pins)
        finally:
            self._held.close()

    def _reattach_old(self) -> None:
        ifindex = self.result.ifindex
        if self.new_fd is None:
            assert self.old_fd is not None
            netlink.attach_xdp(ifindex, self.old_fd.fd, self.old_mode_flags, no_exist=True,
                               netns=self.netns)
        elif self.old_fd is None:
            netlink.detach_xdp(ifindex, self.new_mode_flags, expected_fd=self.new_fd.fd,
                               netns=self.netns)
        else:
            netlink.attach_xdp(ifindex, self.old_fd.fd, self.old_mode_flags,
                               expected_fd=self.new_fd.fd, netns=self.netns)
