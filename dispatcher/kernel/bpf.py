"""The bpf(2) system call: the only module of the package that issues it.

Thin, typed wrappers, one per command, over a ctypes ``syscall()``. Every
``union bpf_attr`` is a zero-filled 144-byte buffer in which only the fields
of the command are set (numbers from ``dispatcher.uapi``, offsets hard-coded from the UAPI; see
``loader.md`` section 1). Every failure raises ``KernelError`` (or
``VerifierError`` for a rejected program) that keeps the command name and the
errno. Every fd the kernel returns comes back wrapped in an ``OwnedFd``.

Pointer rule: anything whose address goes into an attr lives in a bytearray
that the ``_Attr`` object references until the call has returned.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable
from functools import cache

from dispatcher import caches
from dispatcher.errors import KernelError, VerifierError
from dispatcher.kernel.fd import OwnedFd
from dispatcher.record import record
from dispatcher.uapi import (
    BPF_BTF_GET_FD_BY_ID,
    BPF_BTF_GET_NEXT_ID,
    BPF_BTF_LOAD,
    BPF_CMD_NAMES,
    BPF_ENABLE_STATS,
    BPF_F_REPLACE,
    BPF_LINK_CREATE,
    BPF_LINK_DETACH,
    BPF_LINK_GET_FD_BY_ID,
    BPF_LINK_GET_NEXT_ID,
    BPF_LINK_UPDATE,
    BPF_MAP_CREATE,
    BPF_MAP_DELETE_ELEM,
    BPF_MAP_FREEZE,
    BPF_MAP_GET_FD_BY_ID,
    BPF_MAP_GET_NEXT_ID,
    BPF_MAP_GET_NEXT_KEY,
    BPF_MAP_LOOKUP_BATCH,
    BPF_MAP_LOOKUP_ELEM,
    BPF_MAP_UPDATE_ELEM,
    BPF_OBJ_GET,
    BPF_OBJ_GET_INFO_BY_FD,
    BPF_OBJ_NAME_LEN,
    BPF_OBJ_PIN,
    BPF_PROG_GET_FD_BY_ID,
    BPF_PROG_GET_NEXT_ID,
    BPF_PROG_LOAD,
    BPF_PROG_TEST_RUN,
    BPF_RAW_TRACEPOINT_OPEN,
    BPF_STATS_RUN_TIME,
)

# Re-exported for dispatcher/chain (``bpf.BPF_MAP_TYPE_ARRAY``) until it imports
# dispatcher.uapi itself; new code imports numbers from dispatcher.uapi.
from dispatcher.uapi import BPF_MAP_TYPE_ARRAY as BPF_MAP_TYPE_ARRAY

#: Size of the attr buffer passed for every command (``union bpf_attr`` of 6.1 UAPI).
ATTR_SIZE = 144
#: Sizes of the info structs we pass (zero tails are accepted by every kernel).
PROG_INFO_SIZE = 232
MAP_INFO_SIZE = 88
LINK_INFO_SIZE = 64
BTF_INFO_SIZE = 32

#: Verifier log buffer policy.
LOG_SIZE_INITIAL = 1 << 20
LOG_SIZE_MAX = 64 << 20
#: BPF_PROG_LOAD attempts on EAGAIN (libbpf uses the same number).
PROG_LOAD_ATTEMPTS = 5

# --------------------------------------------------------------------------
# The system call
# --------------------------------------------------------------------------

_NR_BPF_BY_MACHINE = {
    "x86_64": 321, "aarch64": 280, "i386": 357, "i686": 357, "armv7l": 386,
    "s390x": 351, "ppc64le": 361, "riscv64": 280, "loongarch64": 280,
}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]

_memlock_bumped = False

#: One load attempt: (log_level, log buffer or None) -> (fd or -1, errno, log_true_size).
_Attempt = Callable[[int, bytearray | None], tuple[int, int, int]]


@cache
def _nr_bpf() -> int:
    machine = os.uname().machine
    nr = _NR_BPF_BY_MACHINE.get(machine)
    if nr is None:
        raise KernelError("bpf", errno.ENOSYS, subject=f"machine {machine}",
                          detail="no known bpf(2) syscall number for this architecture")
    return nr


def _bump_memlock() -> None:
    """Raise RLIMIT_MEMLOCK once (kernels < 5.11 charge BPF memory to it)."""
    global _memlock_bumped
    if _memlock_bumped:
        return
    _memlock_bumped = True
    import resource  # only when creating BPF objects

    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK,
                           (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass


def _forget_memlock() -> None:
    global _memlock_bumped
    _memlock_bumped = False


caches.register("kernel.bpf.memlock_bumped", _forget_memlock)
caches.register("kernel.bpf.nr_bpf", _nr_bpf.cache_clear)


class _Attr:
    """A zero-filled attr buffer that keeps every buffer it points at alive."""

    __slots__ = ("buf", "_keep")

    def __init__(self, size: int = ATTR_SIZE) -> None:
        self.buf = bytearray(size)
        self._keep: list[object] = []

    def ptr(self, data: bytes | bytearray | None) -> int:
        """Address of ``data`` (copied to a private bytearray unless it is one)."""
        if not data:
            return 0
        buf = data if isinstance(data, bytearray) else bytearray(data)
        # a c_char over the buffer's first byte: its address is the buffer's, and it keeps
        # the buffer alive (and unresizable) like an array would, without creating a
        # ctypes array type per length (slow, and most lengths are new)
        first = ctypes.c_char.from_buffer(buf)
        self._keep.append(first)
        return ctypes.addressof(first)

    def cstr(self, text: str | bytes) -> int:
        raw = os.fsencode(text) if isinstance(text, str) else text
        return self.ptr(raw + b"\0")

    def pack(self, fmt: str, offset: int, *values: int) -> None:
        struct.pack_into("<" + fmt, self.buf, offset, *values)

    def u32(self, offset: int) -> int:
        value: int = struct.unpack_from("<I", self.buf, offset)[0]
        return value


def _raw(cmd: int, attr: _Attr) -> tuple[int, int]:
    """One bpf(2) call: (result, 0) or (-1, errno). EINTR is retried."""
    address = attr.ptr(attr.buf)
    while True:
        ret = _syscall(_nr_bpf(), cmd, address, len(attr.buf))
        if ret >= 0:
            return int(ret), 0
        err = ctypes.get_errno()
        if err != errno.EINTR:
            return -1, err


def _call(cmd: int, attr: _Attr, subject: str = "", hint: str | None = None) -> int:
    ret, err = _raw(cmd, attr)
    if ret < 0:
        raise KernelError(BPF_CMD_NAMES[cmd], err, subject=subject,
                          hint=hint or _generic_hint(cmd, err))
    return ret


def _call_fd(cmd: int, attr: _Attr, subject: str = "", origin: str = "bpf") -> OwnedFd:
    return OwnedFd(_call(cmd, attr, subject), origin)


def _privilege_hint() -> str:
    who = "" if os.geteuid() == 0 else "not running as root; "
    return (who + "needs CAP_BPF and CAP_NET_ADMIN (CAP_SYS_ADMIN before 5.8, CAP_PERFMON "
            "for tracing-style programs); kernels before 5.11 also need a large "
            "RLIMIT_MEMLOCK (ulimit -l unlimited); a lockdown/LSM policy or "
            "kernel.unprivileged_bpf_disabled can refuse it as well")


def _generic_hint(cmd: int, err: int) -> str | None:
    if err == errno.E2BIG:
        return "the kernel does not know a field this request uses (kernel too old?)"
    if err == errno.ENOSYS:
        return "the kernel was built without CONFIG_BPF_SYSCALL"
    if err == errno.EPERM and cmd in (BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_BTF_LOAD):
        return _privilege_hint()
    if err == errno.EINVAL and cmd in (BPF_PROG_LOAD, BPF_MAP_CREATE, BPF_BTF_LOAD):
        return ("the kernel rejected the request's attributes (unsupported type or flag, "
                "or a name with characters outside [A-Za-z0-9_.])")
    return None


def _name16(name: str) -> bytes:
    """Object name as the kernel wants it: <= 15 bytes plus NUL (truncated)."""
    return name.encode("utf-8", "replace")[: BPF_OBJ_NAME_LEN - 1]


def _opt_fd(fd: int | None) -> int:
    return 0 if fd is None else fd


# --------------------------------------------------------------------------
# Maps
# --------------------------------------------------------------------------


@cache
def possible_cpus() -> int:
    """Number of possible CPUs (``/sys/devices/system/cpu/possible``)."""
    try:
        with open("/sys/devices/system/cpu/possible", encoding="ascii") as f:
            text = f.read().strip()
    except OSError as exc:
        raise KernelError("read /sys/devices/system/cpu/possible", exc.errno or errno.EIO,
                          detail="cannot size per-CPU map values") from exc
    count = 0
    for part in text.split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        count += (int(hi) if hi else int(lo)) - int(lo) + 1
    return count


caches.register("kernel.bpf.possible_cpus", possible_cpus.cache_clear)


def percpu_value_size(value_size: int) -> int:
    """User-space buffer size of one per-CPU map value: round_up(size, 8) * CPUs."""
    return ((value_size + 7) & ~7) * possible_cpus()


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, *,
               flags: int = 0, name: str = "", btf_fd: int | None = None,
               btf_key_type_id: int = 0, btf_value_type_id: int = 0,
               inner_map_fd: int | None = None, map_extra: int = 0,
               numa_node: int = 0) -> OwnedFd:
    """BPF_MAP_CREATE."""
    _bump_memlock()
    attr = _Attr()
    attr.pack("IIIIIII", 0, map_type, key_size, value_size, max_entries, flags,
              _opt_fd(inner_map_fd), numa_node)
    struct.pack_into("16s", attr.buf, 28, _name16(name))
    if btf_fd is not None:
        attr.pack("III", 48, btf_fd, btf_key_type_id, btf_value_type_id)
    attr.pack("Q", 64, map_extra)
    return _call_fd(BPF_MAP_CREATE, attr, subject=name or "map", origin="map")


def _elem_attr(fd: int, key: bytes | None, value: int = 0, flags: int = 0) -> _Attr:
    attr = _Attr()
    attr.pack("I", 0, fd)
    attr.pack("QQQ", 8, attr.ptr(key), value, flags)
    return attr


def map_lookup(fd: int, key: bytes, value_size: int, *, flags: int = 0,
               subject: str = "") -> bytes | None:
    """BPF_MAP_LOOKUP_ELEM; None if the key is absent. Per-CPU maps: pass
    ``percpu_value_size(value_size)``."""
    out = bytearray(value_size)
    attr = _Attr()
    attr.pack("I", 0, fd)
    attr.pack("QQQ", 8, attr.ptr(key), attr.ptr(out), flags)
    ret, err = _raw(BPF_MAP_LOOKUP_ELEM, attr)
    if ret < 0:
        if err == errno.ENOENT:
            return None
        raise KernelError("BPF_MAP_LOOKUP_ELEM", err, subject=subject)
    return bytes(out)


def map_lookup_batch(fd: int, key_size: int, value_size: int, count: int, *,
                     subject: str = "") -> tuple[bytes, bytes, int]:
    """BPF_MAP_LOOKUP_BATCH from the first key: up to ``count`` (keys, values, number
    read) in one call. Per-CPU maps: pass ``percpu_value_size(value_size)``."""
    keys = bytearray(key_size * count)
    values = bytearray(value_size * count)
    token = bytearray(max(key_size, 8))
    attr = _Attr()
    attr.pack("QQQQII", 0, 0, attr.ptr(token), attr.ptr(keys), attr.ptr(values), count, fd)
    ret, err = _raw(BPF_MAP_LOOKUP_BATCH, attr)
    if ret < 0 and err != errno.ENOENT:          # ENOENT: the end was reached
        raise KernelError("BPF_MAP_LOOKUP_BATCH", err, subject=subject)
    n = attr.u32(32)
    return bytes(keys[:n * key_size]), bytes(values[:n * value_size]), n


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0, *,
               subject: str = "") -> None:
    """BPF_MAP_UPDATE_ELEM (flags: BPF_ANY / BPF_NOEXIST / BPF_EXIST / BPF_F_LOCK)."""
    attr = _Attr()
    attr.pack("I", 0, fd)
    attr.pack("QQQ", 8, attr.ptr(key), attr.ptr(value), flags)
    _call(BPF_MAP_UPDATE_ELEM, attr, subject)


def map_delete(fd: int, key: bytes, *, subject: str = "") -> bool:
    """BPF_MAP_DELETE_ELEM; False if the key was absent."""
    attr = _elem_attr(fd, key)
    ret, err = _raw(BPF_MAP_DELETE_ELEM, attr)
    if ret < 0:
        if err == errno.ENOENT:
            return False
        raise KernelError("BPF_MAP_DELETE_ELEM", err, subject=subject)
    return True


def map_next_key(fd: int, key: bytes | None, key_size: int, *,
                 subject: str = "") -> bytes | None:
    """BPF_MAP_GET_NEXT_KEY; ``key=None`` gives the first key, None at the end."""
    out = bytearray(key_size)
    attr = _Attr()
    attr.pack("I", 0, fd)
    attr.pack("QQ", 8, attr.ptr(key), attr.ptr(out))
    ret, err = _raw(BPF_MAP_GET_NEXT_KEY, attr)
    if ret < 0:
        if err == errno.ENOENT:
            return None
        raise KernelError("BPF_MAP_GET_NEXT_KEY", err, subject=subject)
    return bytes(out)


def map_freeze(fd: int, *, subject: str = "") -> None:
    """BPF_MAP_FREEZE: no more writes from user space."""
    attr = _Attr()
    attr.pack("I", 0, fd)
    _call(BPF_MAP_FREEZE, attr, subject)


# --------------------------------------------------------------------------
# Programs and BTF
# --------------------------------------------------------------------------


def _log_text(buf: bytearray) -> str:
    end = buf.find(b"\0")
    raw = bytes(buf if end < 0 else buf[:end])
    return raw.decode("utf-8", "replace")


def _next_log_size(size: int, true_size: int) -> int:
    wanted = true_size if true_size > size else size * 4
    return min(wanted, LOG_SIZE_MAX)


def _prog_attr(prog_type: int, insns: bytes, license: str, name: str, prog_flags: int,
               expected_attach_type: int, prog_ifindex: int, btf_fd: int | None,
               func_info: bytes, func_info_rec_size: int, line_info: bytes,
               line_info_rec_size: int, attach_btf_id: int, attach_prog_fd: int | None,
               core_relos: bytes, core_relo_rec_size: int,
               log_level: int, log_buf: bytearray | None) -> _Attr:
    attr = _Attr()
    log_ptr = attr.ptr(log_buf) if log_buf is not None else 0
    log_size = len(log_buf) if log_buf is not None else 0
    attr.pack("IIQQIIQII", 0, prog_type, len(insns) // 8, attr.ptr(insns),
              attr.cstr(license.encode("ascii", "replace")), log_level if log_buf else 0,
              log_size, log_ptr, 0, prog_flags)
    struct.pack_into("16s", attr.buf, 48, _name16(name))
    attr.pack("II", 64, prog_ifindex, expected_attach_type)
    if btf_fd is not None:
        attr.pack("I", 72, btf_fd)
    if func_info:
        attr.pack("IQI", 76, func_info_rec_size, attr.ptr(func_info),
                  len(func_info) // func_info_rec_size)
    if line_info:
        attr.pack("IQI", 92, line_info_rec_size, attr.ptr(line_info),
                  len(line_info) // line_info_rec_size)
    attr.pack("II", 108, attach_btf_id, _opt_fd(attach_prog_fd))
    if core_relos:
        attr.pack("I", 116, len(core_relos) // core_relo_rec_size)
        attr.pack("QI", 128, attr.ptr(core_relos), core_relo_rec_size)
    return attr


def prog_load(prog_type: int, insns: bytes, license: str, *, name: str = "",
              prog_flags: int = 0, expected_attach_type: int = 0, prog_ifindex: int = 0,
              btf_fd: int | None = None, func_info: bytes = b"",
              func_info_rec_size: int = 8, line_info: bytes = b"",
              line_info_rec_size: int = 16, attach_btf_id: int = 0,
              attach_prog_fd: int | None = None, core_relos: bytes = b"",
              core_relo_rec_size: int = 16, log_level: int = 0,
              verifier_log: list[str] | None = None) -> OwnedFd:
    """BPF_PROG_LOAD with libbpf's log policy.

    ``log_level == 0``: load without a log; on failure load again with log level 1
    to explain it. ``log_level > 0``: load with that log from the start and, if
    ``verifier_log`` is a list, append the log text to it (success or failure).
    The log buffer starts at 1 MiB and grows on ENOSPC up to 64 MiB.
    A failure with a log raises ``VerifierError``; without one, ``KernelError``.
    """
    if len(insns) == 0 or len(insns) % 8:
        raise ValueError(f"program {name!r}: instruction bytes not a multiple of 8")
    _bump_memlock()
    op = "BPF_PROG_LOAD"
    subject = name or "program"

    def attempt(level: int, log_buf: bytearray | None) -> tuple[int, int, int]:
        attr = _prog_attr(prog_type, insns, license, name, prog_flags,
                          expected_attach_type, prog_ifindex, btf_fd, func_info,
                          func_info_rec_size, line_info, line_info_rec_size,
                          attach_btf_id, attach_prog_fd, core_relos,
                          core_relo_rec_size, level, log_buf)
        for _ in range(PROG_LOAD_ATTEMPTS):
            fd, err = _raw(BPF_PROG_LOAD, attr)
            if fd >= 0 or err != errno.EAGAIN:
                break
        return fd, err, attr.u32(140)

    first_err = 0
    if log_level == 0:
        fd, first_err, _ = attempt(0, None)
        if fd >= 0:
            return OwnedFd(fd, "prog")
    fd, err, log = _with_log(attempt, log_level or 1)
    if verifier_log is not None and (log_level > 0 or fd < 0) and log:
        verifier_log.append(log)
    if fd >= 0:
        return OwnedFd(fd, "prog")
    if err == errno.ENOSPC and first_err:
        err = first_err   # the log did not fit; report why the load failed
    if log.strip():
        hint = None
        if err == errno.ENOSPC:
            hint = f"the verifier log exceeded {LOG_SIZE_MAX >> 20} MiB; only its tail is shown"
        raise VerifierError(op, err, subject, log, hint=hint)
    raise KernelError(op, err, subject=subject, hint=_generic_hint(BPF_PROG_LOAD, err))


def _with_log(attempt: _Attempt, level: int) -> tuple[int, int, str]:
    """Run ``attempt`` with a log buffer, growing it on ENOSPC."""
    size = LOG_SIZE_INITIAL
    while True:
        buf = bytearray(size)
        fd, err, true_size = attempt(level, buf)
        log = _log_text(buf)
        if fd >= 0 or err != errno.ENOSPC or size >= LOG_SIZE_MAX:
            return fd, err, log
        size = _next_log_size(size, true_size)


def btf_load(data: bytes, *, subject: str = "BTF",
             verifier_log: list[str] | None = None) -> OwnedFd:
    """BPF_BTF_LOAD. On failure it loads again with a log; the last log lines go
    into the error's detail (the full log is appended to ``verifier_log``)."""
    _bump_memlock()

    def attempt(level: int, log_buf: bytearray | None) -> tuple[int, int, int]:
        attr = _Attr()
        attr.pack("QQIII", 0, attr.ptr(data), attr.ptr(log_buf) if log_buf else 0,
                  len(data), len(log_buf) if log_buf else 0, level if log_buf else 0)
        fd, err = _raw(BPF_BTF_LOAD, attr)
        return fd, err, attr.u32(28)

    fd, first_err, _ = attempt(0, None)
    if fd >= 0:
        return OwnedFd(fd, "btf")
    fd, err, log = _with_log(attempt, 1)
    if fd >= 0:            # succeeded the second time: keep it
        return OwnedFd(fd, "btf")
    if verifier_log is not None and log:
        verifier_log.append(log)
    if err == errno.ENOSPC:
        err = first_err
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    detail = " | ".join(lines[-3:])
    hint = None if detail else _generic_hint(BPF_BTF_LOAD, err)
    raise KernelError("BPF_BTF_LOAD", err, subject=subject, detail=detail, hint=hint)


# --------------------------------------------------------------------------
# Pins
# --------------------------------------------------------------------------


def obj_pin(fd: int, path: str) -> None:
    """BPF_OBJ_PIN ``fd`` at ``path`` (which must be on a bpffs)."""
    attr = _Attr()
    attr.pack("QI", 0, attr.cstr(path), fd)
    hint = None
    _ret, err = _raw(BPF_OBJ_PIN, attr)
    if _ret < 0:
        if err == errno.EPERM:
            hint = "pins must live on a mounted bpffs (mount -t bpf bpf /sys/fs/bpf)"
        raise KernelError("BPF_OBJ_PIN", err, subject=path, hint=hint)


def obj_get(path: str, *, flags: int = 0) -> OwnedFd:
    """BPF_OBJ_GET: open the object pinned at ``path`` (flags: BPF_F_RDONLY/WRONLY)."""
    attr = _Attr()
    attr.pack("QII", 0, attr.cstr(path), 0, flags)
    return _call_fd(BPF_OBJ_GET, attr, subject=path, origin="pinned")


# --------------------------------------------------------------------------
# Ids
# --------------------------------------------------------------------------


def _next_id(cmd: int, start: int) -> int | None:
    attr = _Attr()
    attr.pack("I", 0, start)
    ret, err = _raw(cmd, attr)
    if ret < 0:
        if err == errno.ENOENT:
            return None
        raise KernelError(BPF_CMD_NAMES[cmd], err, subject=f"after id {start}")
    return attr.u32(4)


def prog_get_next_id(start: int = 0) -> int | None:
    return _next_id(BPF_PROG_GET_NEXT_ID, start)


def map_get_next_id(start: int = 0) -> int | None:
    return _next_id(BPF_MAP_GET_NEXT_ID, start)


def link_get_next_id(start: int = 0) -> int | None:
    return _next_id(BPF_LINK_GET_NEXT_ID, start)


def btf_get_next_id(start: int = 0) -> int | None:
    return _next_id(BPF_BTF_GET_NEXT_ID, start)


def _fd_by_id(cmd: int, obj_id: int, flags: int, what: str) -> OwnedFd:
    attr = _Attr()
    attr.pack("III", 0, obj_id, 0, flags)
    return _call_fd(cmd, attr, subject=f"{what} id {obj_id}", origin=what)


def prog_get_fd_by_id(prog_id: int) -> OwnedFd:
    return _fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id, 0, "prog")


def prog_alive(prog_id: int) -> bool:
    """Whether program ``prog_id`` exists anywhere (in any network namespace: ids are
    global). Only ENOENT means gone; any other error (EPERM, ...) counts as alive, so a
    caller deciding whether to delete something keeps it when in doubt."""
    try:
        with prog_get_fd_by_id(prog_id):
            return True
    except KernelError as e:
        return e.errno != errno.ENOENT


def map_get_fd_by_id(map_id: int, flags: int = 0) -> OwnedFd:
    return _fd_by_id(BPF_MAP_GET_FD_BY_ID, map_id, flags, "map")


def link_get_fd_by_id(link_id: int) -> OwnedFd:
    return _fd_by_id(BPF_LINK_GET_FD_BY_ID, link_id, 0, "link")


def btf_get_fd_by_id(btf_id: int) -> OwnedFd:
    return _fd_by_id(BPF_BTF_GET_FD_BY_ID, btf_id, 0, "btf")


# --------------------------------------------------------------------------
# Info
# --------------------------------------------------------------------------


def _get_info(fd: int, info: bytearray, attr: _Attr | None = None,
              what: str = "object") -> int:
    """BPF_OBJ_GET_INFO_BY_FD into ``info``; returns the kernel's info_len.

    ``attr`` may already hold buffers that pointers inside ``info`` refer to.
    """
    attr = attr or _Attr()
    attr.pack("IIQ", 0, fd, len(info), attr.ptr(info))
    _call(BPF_OBJ_GET_INFO_BY_FD, attr, subject=f"{what} fd {fd}")
    return attr.u32(4)


def _cname(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@record
class ProgInfo:
    type: int
    id: int
    tag: bytes
    name: str
    map_ids: tuple[int, ...]
    btf_id: int
    load_time: int
    created_by_uid: int
    xlated_prog_len: int
    jited_prog_len: int
    nr_func_info: int
    nr_line_info: int
    verified_insns: int
    run_time_ns: int
    run_cnt: int
    recursion_misses: int
    gpl_compatible: bool
    ifindex: int
    attach_btf_obj_id: int
    attach_btf_id: int

    @property
    def tag_hex(self) -> str:
        return self.tag.hex()

    @property
    def xlated_insn_cnt(self) -> int:
        return self.xlated_prog_len // 8


def prog_info(fd: int) -> ProgInfo:
    """BPF_OBJ_GET_INFO_BY_FD for a program, including its map ids."""
    info = bytearray(PROG_INFO_SIZE)
    _get_info(fd, info, what="prog")
    nr_maps = struct.unpack_from("<I", info, 52)[0]
    map_ids: tuple[int, ...] = ()
    if nr_maps:
        ids = bytearray(4 * nr_maps)
        second = bytearray(PROG_INFO_SIZE)
        attr = _Attr()
        struct.pack_into("<IQ", second, 52, nr_maps, attr.ptr(ids))
        _get_info(fd, second, attr, what="prog")
        got = min(nr_maps, struct.unpack_from("<I", second, 52)[0])
        map_ids = struct.unpack_from(f"<{got}I", ids)

    def u32(off: int) -> int:
        return int(struct.unpack_from("<I", info, off)[0])

    def u64(off: int) -> int:
        return int(struct.unpack_from("<Q", info, off)[0])

    return ProgInfo(
        type=u32(0), id=u32(4), tag=bytes(info[8:16]), name=_cname(bytes(info[64:80])),
        map_ids=tuple(map_ids), btf_id=u32(128), load_time=u64(40),
        created_by_uid=u32(48), xlated_prog_len=u32(20), jited_prog_len=u32(16),
        nr_func_info=u32(144), nr_line_info=u32(148), verified_insns=u32(216),
        run_time_ns=u64(192), run_cnt=u64(200), recursion_misses=u64(208),
        gpl_compatible=bool(u32(84) & 1), ifindex=u32(80),
        attach_btf_obj_id=u32(220), attach_btf_id=u32(224),
    )


def prog_xlated_insns(fd: int) -> bytes:
    """The program's instructions as the kernel holds them (after rewrites)."""
    info = bytearray(PROG_INFO_SIZE)
    _get_info(fd, info, what="prog")
    length = struct.unpack_from("<I", info, 20)[0]
    if not length:
        return b""
    out = bytearray(length)
    second = bytearray(PROG_INFO_SIZE)
    attr = _Attr()
    struct.pack_into("<I", second, 20, length)
    struct.pack_into("<Q", second, 32, attr.ptr(out))
    _get_info(fd, second, attr, what="prog")
    got = min(length, struct.unpack_from("<I", second, 20)[0])
    return bytes(out[:got])


def prog_func_info(fd: int) -> list[tuple[int, int]]:
    """The program's ``bpf_func_info`` records as (insn_off, type_id) pairs."""
    info = bytearray(PROG_INFO_SIZE)
    _get_info(fd, info, what="prog")
    count = struct.unpack_from("<I", info, 144)[0]
    rec_size = 8
    if not count:
        return []
    out = bytearray(count * rec_size)
    second = bytearray(PROG_INFO_SIZE)
    attr = _Attr()
    struct.pack_into("<IQI", second, 132, rec_size, attr.ptr(out), count)
    _get_info(fd, second, attr, what="prog")
    got = min(count, struct.unpack_from("<I", second, 144)[0])
    return [(int(struct.unpack_from("<I", out, i * rec_size)[0]),
             int(struct.unpack_from("<I", out, i * rec_size + 4)[0])) for i in range(got)]


@record
class MapInfo:
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    name: str
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    map_extra: int
    ifindex: int


def map_info(fd: int) -> MapInfo:
    info = bytearray(MAP_INFO_SIZE)
    _get_info(fd, info, what="map")
    t, i, ks, vs, me, mf = struct.unpack_from("<6I", info, 0)
    btf_id, kid, vid = struct.unpack_from("<3I", info, 64)
    return MapInfo(type=t, id=i, key_size=ks, value_size=vs, max_entries=me, map_flags=mf,
                   name=_cname(bytes(info[24:40])), btf_id=btf_id, btf_key_type_id=kid,
                   btf_value_type_id=vid, map_extra=struct.unpack_from("<Q", info, 80)[0],
                   ifindex=struct.unpack_from("<I", info, 40)[0])


@record
class LinkInfo:
    type: int
    id: int
    prog_id: int
    xdp_ifindex: int
    tracing_attach_type: int
    tracing_target_obj_id: int
    tracing_target_btf_id: int


def link_info(fd: int) -> LinkInfo:
    info = bytearray(LINK_INFO_SIZE)
    _get_info(fd, info, what="link")
    t, i, p = struct.unpack_from("<3I", info, 0)
    u0, u1, u2 = struct.unpack_from("<3I", info, 16)     # the union is 8-aligned: 12..15 pad
    return LinkInfo(type=t, id=i, prog_id=p, xdp_ifindex=u0, tracing_attach_type=u0,
                    tracing_target_obj_id=u1, tracing_target_btf_id=u2)


@record
class BtfInfo:
    id: int
    size: int
    name: str
    kernel_btf: bool


def btf_info(fd: int) -> BtfInfo:
    info = bytearray(BTF_INFO_SIZE)
    info_len = _get_info(fd, info, what="btf")
    size, btf_id = struct.unpack_from("<II", info, 8)
    name_len, kernel_btf = struct.unpack_from("<II", info, 24)
    name = ""
    if info_len >= BTF_INFO_SIZE and name_len:   # 5.11+: the kernel knows name fields
        out = bytearray(name_len + 1)              # name_len excludes the NUL
        second = bytearray(BTF_INFO_SIZE)
        attr = _Attr()
        struct.pack_into("<QI", second, 16, attr.ptr(out), len(out))
        _get_info(fd, second, attr, what="btf")
        name = _cname(bytes(out))
    return BtfInfo(id=btf_id, size=size, name=name, kernel_btf=bool(kernel_btf))


def btf_data(fd: int) -> bytes:
    """The raw BTF blob behind a BTF fd."""
    info = bytearray(BTF_INFO_SIZE)
    _get_info(fd, info, what="btf")
    size = struct.unpack_from("<I", info, 8)[0]
    if not size:
        return b""
    out = bytearray(size)
    second = bytearray(BTF_INFO_SIZE)
    attr = _Attr()
    struct.pack_into("<QI", second, 0, attr.ptr(out), size)
    _get_info(fd, second, attr, what="btf")
    got = min(size, struct.unpack_from("<I", second, 8)[0])
    return bytes(out[:got])


# --------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------


def link_create(prog_fd: int, target_fd: int, attach_type: int, *, flags: int = 0,
                target_btf_id: int = 0, subject: str = "") -> OwnedFd:
    """BPF_LINK_CREATE. XDP: ``target_fd`` is the ifindex (in the calling thread's
    netns), ``attach_type`` BPF_XDP. freplace: target prog fd + ``target_btf_id``."""
    attr = _Attr()
    attr.pack("IIIII", 0, prog_fd, target_fd, attach_type, flags, target_btf_id)
    return _call_fd(BPF_LINK_CREATE, attr, subject=subject or f"target {target_fd}",
                    origin="link")


def link_update(link_fd: int, new_prog_fd: int, *, old_prog_fd: int | None = None,
                subject: str = "") -> None:
    """BPF_LINK_UPDATE; with ``old_prog_fd`` it only swaps if that is the current prog."""
    attr = _Attr()
    if old_prog_fd is None:
        attr.pack("III", 0, link_fd, new_prog_fd, 0)
    else:
        attr.pack("IIII", 0, link_fd, new_prog_fd, BPF_F_REPLACE, old_prog_fd)
    _call(BPF_LINK_UPDATE, attr, subject)


def link_detach(link_fd: int, *, subject: str = "") -> None:
    """BPF_LINK_DETACH: detach even a pinned link (the fd stays valid but defunct)."""
    attr = _Attr()
    attr.pack("I", 0, link_fd)
    _call(BPF_LINK_DETACH, attr, subject)


def raw_tracepoint_open(prog_fd: int, *, subject: str = "") -> OwnedFd:
    """BPF_RAW_TRACEPOINT_OPEN with name NULL: link an EXT/fentry prog to its load-time target."""
    attr = _Attr()
    attr.pack("QI", 0, 0, prog_fd)
    return _call_fd(BPF_RAW_TRACEPOINT_OPEN, attr, subject, origin="link")


# --------------------------------------------------------------------------
# Test runs and statistics
# --------------------------------------------------------------------------


@record
class TestRunResult:
    __test__ = False  # not a pytest test class

    retval: int
    data_out: bytes
    duration_ns: int
    ctx_out: bytes = b""


def prog_test_run(fd: int, data: bytes, *, repeat: int = 1, ctx: bytes | None = None,
                  data_out_size: int | None = None, subject: str = "") -> TestRunResult:
    """BPF_PROG_TEST_RUN. ``data_out_size`` defaults to len(data) + 4096 (room for
    XDP head/tail growth); a too-small buffer fails with ENOSPC."""
    out_size = len(data) + 4096 if data_out_size is None else data_out_size
    out = bytearray(out_size)
    ctx_out = bytearray(len(ctx)) if ctx else None
    attr = _Attr()
    attr.pack("IIIIQQI", 0, fd, 0, len(data), out_size, attr.ptr(data),
              attr.ptr(out) if out_size else 0, repeat)
    if ctx:
        assert ctx_out is not None
        attr.pack("IIQQ", 40, len(ctx), len(ctx_out), attr.ptr(ctx), attr.ptr(ctx_out))
    _call(BPF_PROG_TEST_RUN, attr, subject or f"prog fd {fd}")
    retval, _size_in, size_out = struct.unpack_from("<III", attr.buf, 4)
    duration = attr.u32(36)
    ctx_len = attr.u32(44) if ctx_out is not None else 0
    return TestRunResult(retval=retval, data_out=bytes(out[:min(size_out, out_size)]),
                         duration_ns=duration,
                         ctx_out=bytes(ctx_out[:ctx_len]) if ctx_out is not None else b"")


def enable_stats(stats_type: int = BPF_STATS_RUN_TIME) -> OwnedFd:
    """BPF_ENABLE_STATS: run_cnt/run_time_ns are collected while the fd is open."""
    attr = _Attr()
    attr.pack("I", 0, stats_type)
    return _call_fd(BPF_ENABLE_STATS, attr, "stats", origin="stats")
