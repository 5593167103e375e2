"""``OwnedFd``: the single owner of a kernel file descriptor.

Every bpf object fd (program, map, link, BTF) that this package creates is
wrapped in an ``OwnedFd``. It closes exactly once, works as a context manager,
can give up ownership (``detach``) and duplicates with ``F_DUPFD_CLOEXEC``.
A ``weakref.finalize`` safety net closes an fd that was forgotten and emits a
``ResourceWarning`` (tests turn that warning into an error).

The wrapper never holds fds 0..2: bpf(2) treats fd 0 as "absent" in several
attributes, and a stray ``close(0)`` elsewhere must not hit a BPF object.
"""

from __future__ import annotations

import fcntl
import os
import warnings
import weakref
from types import TracebackType

__all__ = ["OwnedFd", "MIN_FD"]

#: Lowest fd number an ``OwnedFd`` will hold.
MIN_FD = 3


def _close_forgotten(fd: int, origin: str) -> None:
    """Finalizer: close an fd whose owner was garbage-collected unclosed."""
    try:
        os.close(fd)
    except OSError:
        return
    warnings.warn(f"unclosed {origin} fd {fd}", ResourceWarning, stacklevel=2)


def _raise_fd(fd: int) -> int:
    """Return ``fd`` if it is >= MIN_FD, else a CLOEXEC dup >= MIN_FD (closing ``fd``)."""
    if fd >= MIN_FD:
        return fd
    try:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, MIN_FD)
    finally:
        os.close(fd)
    return new


class OwnedFd:
    """Owns one open file descriptor until ``close()`` or ``detach()``."""

    __slots__ = ("_fd", "_origin", "_finalizer", "__weakref__")

    def __init__(self, fd: int, origin: str = "bpf") -> None:
        """Take ownership of ``fd``. ``origin`` names the object in warnings.

        Raises ``ValueError`` for a negative fd. An fd in 0..2 is moved to >= 3.
        """
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            raise ValueError(f"invalid file descriptor: {fd!r}")
        fd = _raise_fd(fd)
        self._fd: int = fd
        self._origin = origin
        self._finalizer = weakref.finalize(self, _close_forgotten, fd, origin)

    @property
    def fd(self) -> int:
        """The borrowed int fd; raises ``ValueError`` once closed or detached."""
        if self._fd < 0:
            raise ValueError(f"{self._origin} fd is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Close the fd; calling it again is a no-op."""
        fd = self._fd
        if fd < 0:
            return
        self._fd = -1
        self._finalizer.detach()
        os.close(fd)

    def detach(self) -> int:
        """Give up ownership and return the int fd (the caller must close it)."""
        fd = self.fd
        self._fd = -1
        self._finalizer.detach()
        return fd

    def dup(self) -> OwnedFd:
        """A new independently owned CLOEXEC duplicate (fd >= 3)."""
        new = fcntl.fcntl(self.fd, fcntl.F_DUPFD_CLOEXEC, MIN_FD)
        return OwnedFd(new, self._origin)

    def fileno(self) -> int:
        return self.fd

    def __enter__(self) -> OwnedFd:
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<OwnedFd {self._origin} {state}>"
