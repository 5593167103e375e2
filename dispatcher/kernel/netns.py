"""Run a few calls inside another network namespace: setns(2) on the calling thread only.

Sockets keep the namespace they were created in, so ``entered(path)`` is used just
long enough to create one; the thread's own namespace is restored before returning.
A missing path raises FileNotFoundError; a path that is not a network namespace
raises OSError (EINVAL). The namespace is never created.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dispatcher.uapi import CLONE_NEWNET

_libc_setns: Callable[[int, int], int] | None = None


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2) for the calling thread (``os.setns`` from Python 3.12 on)."""
    global _libc_setns
    native = getattr(os, "setns", None)
    if native is not None:
        native(fd, nstype)
        return
    if _libc_setns is None:
        fn = ctypes.CDLL(None, use_errno=True).setns
        fn.argtypes = [ctypes.c_int, ctypes.c_int]
        fn.restype = ctypes.c_int
        _libc_setns = fn
    if _libc_setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def entered(path: str) -> Iterator[None]:
    """The calling thread is in the network namespace at ``path`` inside the block."""
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target)
            try:
                yield
            finally:
                setns(own)
        finally:
            os.close(own)
    finally:
        os.close(target)


def every_namespace(run_dir: str = "/var/run/netns") -> tuple[list[str], list[str]]:
    """A path to each network namespace this process can see, each namespace once: its
    own, the named ones (``ip netns``), and every process's. Returns (paths, problems):
    a namespace that could not be looked at is named in ``problems``."""
    paths: list[str] = []
    problems: list[str] = []
    seen: set[tuple[int, int]] = set()

    def add(path: str) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return                           # a process that exited meanwhile
        except OSError as e:
            problems.append(f"{path}: {e.strerror}")
            return
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            paths.append(path)

    add("/proc/self/ns/net")
    for d, sub in ((run_dir, ""), ("/proc", "ns/net")):
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            continue
        for n in names:
            if sub and not n.isdigit():
                continue
            add(os.path.join(d, n, sub) if sub else os.path.join(d, n))
    return paths, problems
