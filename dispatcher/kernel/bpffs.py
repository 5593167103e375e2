"""The BPF filesystem: detection, mounting and the directory lock.

Pinning itself (BPF_OBJ_PIN / BPF_OBJ_GET) lives in ``bpf.py`` with the other
bpf(2) commands; this module deals with the filesystem around the pins.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterable
from types import TracebackType

from dispatcher.errors import ConflictError, KernelError, PrivilegeError
from dispatcher.kernel.fd import OwnedFd
from dispatcher.uapi import BPF_FS_MAGIC as BPF_FS_MAGIC  # in __all__

__all__ = ["BPF_FS_MAGIC", "DEFAULT_BPFFS", "DirLock", "bpffs_root", "ensure_bpffs",
           "is_bpffs", "lands_on_bpffs", "remove_created"]

DEFAULT_BPFFS = "/sys/fs/bpf"
#: Environment variable libxdp uses to move the bpffs root.
BPFFS_ENV = "LIBXDP_BPFFS"

_libc = ctypes.CDLL(None, use_errno=True)
_statfs = _libc.statfs
_statfs.restype = ctypes.c_int
_statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
_mount = _libc.mount
_mount.restype = ctypes.c_int
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                   ctypes.c_char_p]

# struct statfs is at most 120 bytes on 64-bit Linux; f_type is its first field,
# a C long (``__fsword_t``) on every Linux ABI.
_STATFS_BUF = 256


def lands_on_bpffs(path: str) -> bool:
    """Whether ``path``, or its nearest existing parent (where it would be created), is on
    a mounted BPF filesystem."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return is_bpffs(path)


def remove_created(paths: Iterable[str]) -> None:
    """Undo what a failed change created on bpffs: unlink the pins, then remove the
    directories (deepest first) if they are empty. Best effort: what is gone is gone."""
    dirs = []
    for path in paths:
        try:
            os.unlink(path)
        except IsADirectoryError:
            dirs.append(path)
        except OSError:
            pass
    for d in sorted(dirs, key=lambda p: p.rstrip("/").count("/"), reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass


def bpffs_root() -> str:
    """The bpffs root: ``$LIBXDP_BPFFS`` if set (as libxdp does), else /sys/fs/bpf."""
    return os.environ.get(BPFFS_ENV) or DEFAULT_BPFFS


def fs_type(path: str) -> int:
    """statfs(2) ``f_type`` of ``path``; raises KernelError (op "statfs")."""
    buf = ctypes.create_string_buffer(_STATFS_BUF)
    if _statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise KernelError("statfs", err, subject=path)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def is_bpffs(path: str) -> bool:
    """True if ``path`` is on a mounted BPF filesystem (False if it does not exist)."""
    try:
        return fs_type(path) == BPF_FS_MAGIC
    except KernelError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise


def ensure_bpffs(path: str = DEFAULT_BPFFS, *, mount: bool = True,
                 notice: Callable[[str], None] | None = None) -> str:
    """Make sure ``path`` is a bpffs mount and return it.

    If it is not one and ``mount`` is true, mount a bpffs there (root only) and
    report it through ``notice``. Otherwise raise PrivilegeError explaining why.
    """
    if is_bpffs(path):
        return path
    how = f"mount -t bpf bpf {path}"
    if not mount:
        raise PrivilegeError(f"{path} is not a BPF filesystem (bpffs)",
                             hint=f"mount it first: {how}")
    if os.geteuid() != 0:
        raise PrivilegeError(f"{path} is not a BPF filesystem and only root can mount one",
                             hint=f"run as root, or mount it first: {how}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise PrivilegeError(f"cannot create bpffs mount point {path}: {exc.strerror}",
                             hint=how) from exc
    rc = _mount(b"bpf", os.fsencode(path), b"bpf", 0, b"mode=0700")
    if rc != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(
            f"cannot mount a BPF filesystem at {path}: {os.strerror(err)} "
            f"({errno.errorcode.get(err, err)})",
            hint="the kernel needs CONFIG_BPF_SYSCALL and the process CAP_SYS_ADMIN in its "
                 f"mount namespace; or mount it yourself: {how}")
    if not is_bpffs(path):
        raise PrivilegeError(f"mounted a BPF filesystem at {path} but it is not visible there")
    if notice is not None:
        msg = f"mounted bpffs at {path}"
        if private_mount_namespace():
            msg += (": this command runs in a mount namespace of its own (as under `ip netns "
                    "exec`), so this bpffs and every pin made in it vanish when it exits")
        notice(msg)
    return path


def private_mount_namespace() -> bool:
    """Whether this process runs in a mount namespace other than the one it was started
    from (``ip netns exec``, ``unshare -m``): a bpffs mounted here dies with the namespace.
    Compares with each ancestor process whose namespace can be read, up to init; False
    when none can be read."""
    try:
        mine = os.stat("/proc/self/ns/mnt").st_ino
    except OSError:
        return False
    pid = os.getppid()
    for _ in range(64):
        if pid <= 0:
            break
        try:
            if os.stat(f"/proc/{pid}/ns/mnt").st_ino != mine:
                return True
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])   # field 4: ppid
        except (OSError, ValueError, IndexError):
            break
    return False


class DirLock:
    """Exclusive ``flock`` on a directory (created 0700 if missing).

    ``timeout=None`` waits forever; otherwise ConflictError after ``timeout`` s.
    """

    def __init__(self, path: str, *, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: OwnedFd | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"lock on {self.path} already held by this object")
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            raw = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise KernelError("open", exc.errno or errno.EIO, subject=self.path,
                              detail="cannot open the lock directory") from exc
        owned = OwnedFd(raw, "lock")
        try:
            self._flock(owned.fd)
        except BaseException:
            owned.close()
            raise
        self._fd = owned

    def _flock(self, fd: int) -> None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                if deadline is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise KernelError("flock", exc.errno or errno.EIO,
                                      subject=self.path) from exc
            assert deadline is not None
            if time.monotonic() >= deadline:
                raise ConflictError(f"{self.path} is locked by another process",
                                    hint="another xdp-dispatch or libxdp user is working on "
                                         "this interface; try again")
            time.sleep(0.05)

    def release(self) -> None:
        owned, self._fd = self._fd, None
        if owned is None:
            return
        try:
            fcntl.flock(owned.fd, fcntl.LOCK_UN)
        finally:
            owned.close()

    def __enter__(self) -> DirLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
