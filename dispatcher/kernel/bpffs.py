"""The BPF filesystem: detection, mounting and the directory lock.

Pinning itself (BPF_OBJ_PIN / BPF_OBJ_GET) lives in ``bpf.py`` with the other
bpf(2) commands; this module deals with the filesystem around the pins.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterable
from types import TracebackType

from dispatcher import safeio
from dispatcher.errors import ConflictError, KernelError, PrivilegeError
from dispatcher.kernel.fd import OwnedFd
from dispatcher.uapi import BPF_FS_MAGIC as BPF_FS_MAGIC  # in __all__

__all__ = ["BPF_FS_MAGIC", "DEFAULT_BPFFS", "DirLock", "bpffs_root", "check_pin_entry",
           "check_trusted_dir", "ensure_bpffs", "is_bpffs", "lands_on_bpffs", "lock_holders",
           "lock_timeout", "pin_subdirs", "remove_created", "remove_pin_dir"]

DEFAULT_BPFFS = "/sys/fs/bpf"
#: Environment variable libxdp uses to move the bpffs root.
BPFFS_ENV = "LIBXDP_BPFFS"
#: Seconds a DirLock waits for another holder by default (``LOCK_TIMEOUT_ENV`` overrides).
DEFAULT_LOCK_TIMEOUT = 10.0
LOCK_TIMEOUT_ENV = "XDP_DISPATCH_LOCK_TIMEOUT"

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


def lock_timeout() -> float:
    """Seconds a ``DirLock`` waits by default: ``$XDP_DISPATCH_LOCK_TIMEOUT`` or 10."""
    try:
        value = float(os.environ.get(LOCK_TIMEOUT_ENV, ""))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT
    return value if value >= 0 else DEFAULT_LOCK_TIMEOUT


def lock_holders(st: os.stat_result) -> list[str]:
    """Who holds a lock on the file with stat ``st``, from /proc/locks: "pid N (comm)"
    for each holder visible in our pid namespace (empty when unknown)."""
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    out = []
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->" or parts[5] != dev:
            continue
        pid = parts[4]
        try:
            with open(f"/proc/{int(pid)}/comm") as f:
                comm = f.read().strip()
        except (OSError, ValueError):
            comm = ""
        who = f"pid {pid} ({comm})" if comm else f"pid {pid}"
        if who not in out:
            out.append(who)
    return out


class DirLock:
    """Exclusive ``flock`` on a trusted directory (created 0700 if missing; refused with
    UnsafePathError if it is a symbolic link, not owned by root or writable by others).

    Waits at most ``timeout`` seconds (default: ``lock_timeout()``, 10 s unless
    ``$XDP_DISPATCH_LOCK_TIMEOUT`` says otherwise; ``math.inf`` waits forever), then
    raises ConflictError naming the lock and, when /proc/locks tells, its holder.
    """

    def __init__(self, path: str, *, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = lock_timeout() if timeout is None else timeout
        self._fd: OwnedFd | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"lock on {self.path} already held by this object")
        try:
            safeio.make_trusted_dir(self.path, what="lock directory")
            raw = safeio.open_dir(self.path)
        except OSError as exc:
            raise KernelError("open", exc.errno or errno.EIO, subject=self.path,
                              detail="cannot open the lock directory") from exc
        owned = OwnedFd(raw, "lock")
        try:
            safeio.check_trusted_fd(owned.fd, self.path, what="lock directory")
            self._flock(owned.fd)
        except BaseException:
            owned.close()
            raise
        self._fd = owned

    def _flock(self, fd: int) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise KernelError("flock", exc.errno or errno.EIO,
                                      subject=self.path) from exc
            if time.monotonic() >= deadline:
                holders = lock_holders(os.fstat(fd))
                who = f" ({', '.join(holders)})" if holders else ""
                raise ConflictError(
                    f"{self.path} is locked by another process{who}; gave up after "
                    f"{self.timeout:g} s",
                    hint="another xdp-dispatch or libxdp user is working on this interface; "
                         f"try again (${LOCK_TIMEOUT_ENV} sets how many seconds to wait)")
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


# -- pin directories, without following symbolic links ----------------------------------

check_trusted_dir = safeio.check_trusted_dir


def pin_subdirs(dirpath: str) -> list[str]:
    """Names of the real directories (never symbolic links) in the trusted directory
    ``dirpath``, sorted; [] if it does not exist. UnsafePathError if it is not trusted."""
    try:
        fd = safeio.open_dir(dirpath)
    except FileNotFoundError:
        return []
    except OSError as exc:
        safeio.check_trusted_dir(dirpath)       # names a symlink or a file in one line
        raise KernelError("open", exc.errno or errno.EIO, subject=dirpath) from exc
    try:
        safeio.check_trusted_fd(fd, dirpath)
        out = []
        for name in os.listdir(fd):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                out.append(name)
        return sorted(out)
    finally:
        os.close(fd)


def remove_pin_dir(dirpath: str) -> bool:
    """Unpin every entry of the pin directory ``dirpath`` and remove it, never following
    a symbolic link: the directory is opened with O_NOFOLLOW relative to its (trusted)
    parent and each entry is unlinked relative to that fd (a symbolic link entry is
    removed, not followed). True if removed; False if missing, or if ``dirpath`` is not a
    real directory (a symbolic link or a file there is left alone). UnsafePathError if
    the parent or the directory is not trusted (not root's, or writable by others)."""
    dirpath = os.path.abspath(dirpath)
    parent, name = os.path.split(dirpath)
    try:
        pfd = safeio.open_dir(parent)
    except FileNotFoundError:
        return False
    try:
        safeio.check_trusted_fd(pfd, parent)
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
        try:
            fd = safeio.open_dir(name, dir_fd=pfd)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return False
            raise
        try:
            safeio.check_trusted_fd(fd, dirpath, what="pin directory")
            for entry in os.listdir(fd):
                try:
                    safeio.unlink_in(fd, entry)
                except IsADirectoryError:
                    pass    # not a pin: left, and the directory with it (rmdir fails)
        finally:
            os.close(fd)
        try:
            os.rmdir(name, dir_fd=pfd)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                return False
            raise
        return True
    finally:
        os.close(pfd)


def check_pin_entry(path: str) -> bool:
    """Whether a pin exists at ``path`` (a map pinned by name, about to be reused); raise
    UnsafePathError if it is a symbolic link or not owned by root (someone else put it
    there for us to trust). Its directory must be trusted (``check_trusted_dir``)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise safeio.UnsafePathError(f"refusing {path}: is a symbolic link, not a pinned "
                                     f"map; remove it (rm {path})")
    if st.st_uid != 0 and st.st_uid != os.geteuid():
        raise safeio.UnsafePathError(f"refusing {path}: owned by uid {st.st_uid}, not root; "
                                     f"remove it (rm {path}) if its contents may be discarded")
    return True
