"""Careful file access for a tool that runs as root: the one implementation of every rule
about which files and directories are trusted and how they are read and written.

* Inputs (objects, configs, state files) are opened with ``O_NONBLOCK`` (a FIFO must not
  block), checked with ``fstat`` to be regular files, and read up to a size cap.
* Directories the tool keeps state in (the state directory, bpffs ``xdp/`` and pin
  directories) are trusted only when owned by root (or by the user running the tool) and
  not writable by group or others; a parent may be world-writable only with the sticky
  bit (as /tmp and the bpffs root are). ``check_trusted_dir`` refuses anything else in
  one line saying what to fix.
* Directories are opened with ``O_DIRECTORY | O_NOFOLLOW`` and entries are handled
  relative to the directory fd, so a symbolic link is never followed.
* Files are written through an ``O_CREAT | O_EXCL | O_NOFOLLOW`` temporary, fsynced and
  renamed into place.
* Input files writable by others while we run as root are reported (a warning, or an
  error in strict mode: ``--strict`` / ``strict: true``), as sshd's StrictModes does.

Base layer: no import of any other dispatcher module but ``errors``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from dispatcher.errors import ForeignStateError, XdpDispatchError

#: Largest object file read (real BPF objects are kilobytes to a few megabytes).
MAX_OBJECT_BYTES = 256 << 20
#: Largest config file read.
MAX_CONFIG_BYTES = 1 << 20
#: Largest state file (ownership records, applied records) read.
MAX_STATE_BYTES = 16 << 20

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(ForeignStateError):
    """A file or directory we would trust is not safe to trust (owner, mode, symlink)."""


class NotRegularError(Exception):
    """``read_regular``: the path is not a regular file, or is too big; ``reason`` says
    which (callers turn it into their own error, naming the file)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def _size_text(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


def read_regular(path: str, limit: int, *, nofollow: bool = False,
                 dir_fd: int | None = None) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file ``path`` (and its fstat), at most ``limit`` bytes.

    OSError as ``open`` raises it (IsADirectoryError for a directory, as ``open`` does);
    NotRegularError for a device, FIFO, socket or a file larger than ``limit``. Never
    blocks on a FIFO, never reads more than ``limit + 1`` bytes.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularError(f"is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise NotRegularError(f"is {_size_text(st.st_size)}, larger than the "
                                  f"{_size_text(limit)} limit")
        os.set_blocking(fd, True)
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:       # grew while we read
            raise NotRegularError(f"is larger than the {_size_text(limit)} limit")
        return data, st
    finally:
        os.close(fd)


def file_sha256(path: str, limit: int = MAX_OBJECT_BYTES) -> str:
    """Hex sha256 of a regular file's bytes. OSError (EINVAL, naming the reason) for a
    device, FIFO or a file over ``limit``: never reads those."""
    import hashlib

    try:
        data, _st = read_regular(path, limit)
    except NotRegularError as e:
        raise OSError(errno.EINVAL, f"{path}: {e.reason}") from None
    return hashlib.sha256(data).hexdigest()


# -- strict mode: input files others can write -------------------------------------------

_STRICT: ContextVar[bool] = ContextVar("xdp_dispatch_strict", default=False)
_WARNED: set[str] = set()


def _stderr_warning(msg: str) -> None:
    print(f"xdp-dispatch: warning: {msg}", file=sys.stderr)


#: Where warnings about input files go (the CLI prints them on stderr).
warn: Callable[[str], None] = _stderr_warning


def strict() -> bool:
    return _STRICT.get()


def set_strict(on: bool) -> None:
    """Refuse (True) or only warn about (False) input files others can write."""
    _STRICT.set(on)


@contextlib.contextmanager
def strict_mode(on: bool = True) -> Iterator[None]:
    """Strict mode for the duration of the block (``strict: true`` in a config); never
    turns off a strict mode already in force."""
    token = _STRICT.set(on or _STRICT.get())
    try:
        yield
    finally:
        _STRICT.reset(token)


def writable_by_others(path: str, st: os.stat_result) -> str | None:
    """Why a file with fstat ``st`` at ``path`` could be changed by anyone, or None: it is
    writable by others, or its directory is, without the sticky bit (the cases issue 11
    names, as sshd's StrictModes does). ``check_input`` asks only when running as root."""
    if st.st_mode & stat.S_IWOTH:
        return f"it is writable by others (mode {stat.S_IMODE(st.st_mode):04o}); chmod o-w {path}"
    parent = os.path.dirname(os.path.abspath(path))
    try:
        pst = os.stat(parent)
    except OSError:
        return None
    if pst.st_mode & stat.S_IWOTH and not pst.st_mode & stat.S_ISVTX:
        return f"its directory {parent} is writable by others without the sticky bit " \
               f"(mode {stat.S_IMODE(pst.st_mode):04o}); chmod o-w {parent}"
    return None


def check_input(path: str, st: os.stat_result,
                error: Callable[[str], XdpDispatchError]) -> None:
    """Warn (or, in strict mode, raise ``error(message)``) when root reads a file others
    can change. Each path is warned about once per process."""
    if os.geteuid() != 0:
        return
    why = writable_by_others(path, st)
    if why is None:
        return
    if strict():
        raise error(f"{path}: refusing a file others can change (strict mode): {why}")
    if path not in _WARNED:
        _WARNED.add(path)
        warn(f"{path}: others can change this file, which root is about to use: {why} "
             "(--strict or 'strict: true' refuses such files)")


# -- trusted directories -------------------------------------------------------------------

def _trusted_uids() -> set[int]:
    return {0, os.geteuid()}


def _owner_text(uid: int) -> str:
    return f"owned by uid {uid}, not root"


def _dir_problem(path: str, st: os.stat_result, *, allow_sticky: bool
                 ) -> tuple[str, str] | None:
    """What makes directory ``path`` (lstat ``st``) untrustworthy and how to fix it, or
    None."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link", f"remove it (rm {path})"
    if not stat.S_ISDIR(st.st_mode):
        return f"is {_kind(st.st_mode)}, not a directory", f"remove it (rm {path})"
    if st.st_uid not in _trusted_uids():
        return _owner_text(st.st_uid), f"remove it (rm -r {path}) or chown root {path} " \
                                       f"and chmod go-w {path}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        if allow_sticky and st.st_mode & stat.S_ISVTX:
            return None
        return f"writable by group/others (mode {stat.S_IMODE(st.st_mode):04o})", \
            f"chmod go-w {path}"
    return None


def _is_mount_root(path: str, st: os.stat_result) -> bool:
    parent = os.path.dirname(path.rstrip("/")) or "/"
    try:
        return os.stat(parent).st_dev != st.st_dev or parent == path
    except OSError:
        return False


def check_trusted_dir(path: str, *, what: str = "") -> os.stat_result:
    """Raise UnsafePathError unless ``path`` is a directory we may trust: not a symbolic
    link, owned by root (or the user running us), not writable by group/others, and every
    parent owned by root (or us) and writable by others only with the sticky bit. A
    filesystem's root directory (such as the bpffs mount, world-writable with the sticky
    bit by default) is trusted like a parent. Returns ``path``'s lstat."""
    path = os.path.abspath(path)
    st = os.lstat(path)
    found = _dir_problem(path, st, allow_sticky=_is_mount_root(path, st))
    problem = None if found is None else f"{found[0]}; {found[1]}"
    if found is None:
        # the parents, resolved (a root-owned /var/run -> /run link is fine)
        parent = os.path.realpath(os.path.dirname(path))
        while True:
            bad = _dir_problem(parent, os.stat(parent), allow_sticky=True)
            if bad is not None:
                what_is = bad[0] if bad[0].startswith("is ") else "is " + bad[0]
                fix = bad[1].removeprefix(f"remove it (rm -r {parent}) or ")   # not a parent
                problem = f"its parent {parent} {what_is}, so others could replace it; " \
                          f"use a directory whose parents only root can change, or {fix}"
                break
            if parent == "/":
                break
            parent = os.path.dirname(parent)
    if problem is not None:
        label = f"{what} {path}" if what else path
        raise UnsafePathError(f"refusing {label}: {problem}")
    return st


def check_trusted_fd(fd: int, path: str, *, what: str = "") -> os.stat_result:
    """``check_trusted_dir``'s rules for the directory open at ``fd`` (itself only)."""
    st = os.fstat(fd)
    found = _dir_problem(path, st, allow_sticky=_is_mount_root(path, st))
    if found is not None:
        label = f"{what} {path}" if what else path
        raise UnsafePathError(f"refusing {label}: {found[0]}; {found[1]}")
    return st


def open_dir(path: str, *, dir_fd: int | None = None) -> int:
    """``open(path, O_DIRECTORY | O_NOFOLLOW)`` (relative to ``dir_fd`` if given): a raw fd
    the caller closes. A symbolic link gives OSError ELOOP (or ENOTDIR), never its target."""
    return os.open(path, _DIR_FLAGS, dir_fd=dir_fd)


def make_trusted_dir(path: str, *, what: str = "") -> None:
    """Create ``path`` (and missing parents) mode 0700 if missing, then
    ``check_trusted_dir`` it."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:
        pass            # a dangling symlink or a file: check_trusted_dir names it
    check_trusted_dir(path, what=what)


# -- state files ----------------------------------------------------------------------------

def read_state_file(path: str, *, limit: int = MAX_STATE_BYTES) -> bytes:
    """A state file written by ``write_atomic``: opened without following a symbolic link,
    a regular file owned by root (or us) and not writable by group/others, at most
    ``limit`` bytes. FileNotFoundError if missing; UnsafePathError otherwise."""
    try:
        data, st = read_regular(path, limit, nofollow=True)
    except NotRegularError as e:
        raise UnsafePathError(f"refusing {path}: it {e.reason}; remove it (rm {path})") from None
    except OSError as e:
        if e.errno == errno.ELOOP:       # O_NOFOLLOW met a symbolic link
            raise UnsafePathError(f"refusing {path}: is a symbolic link; remove it (rm {path})") \
                from None
        raise
    if st.st_uid not in _trusted_uids():
        raise UnsafePathError(f"refusing {path}: {_owner_text(st.st_uid)}; remove it (rm {path})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePathError(f"refusing {path}: writable by group/others (mode "
                              f"{stat.S_IMODE(st.st_mode):04o}); remove it (rm {path})")
    return data


def write_atomic(path: str, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: a temporary created with O_CREAT | O_EXCL |
    O_NOFOLLOW next to it, written, fsynced, renamed over ``path``, and the directory
    fsynced. The directory must already be trusted (``make_trusted_dir``)."""
    d = os.path.dirname(path) or "."
    base = os.path.basename(path)
    dfd = open_dir(d)
    try:
        tmp = None
        for attempt in range(100):
            name = f".{base}.{os.getpid()}.{attempt}.tmp"
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, mode, dir_fd=dfd)
            except FileExistsError:
                continue
            tmp = name
            break
        if tmp is None:
            raise FileExistsError(errno.EEXIST, "no free temporary name", os.path.join(d, base))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, base, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        with contextlib.suppress(OSError):
            os.fsync(dfd)
    finally:
        os.close(dfd)


def unlink_in(dir_fd: int, name: str) -> bool:
    """unlinkat(dir_fd, name): removes the entry itself (a symbolic link is removed, not
    followed). False if it was already gone."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False
