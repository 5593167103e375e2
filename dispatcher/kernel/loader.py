"""Turn an ``ObjectSpec`` into live kernel objects (maps, BTF, programs).

Thin I/O layer over ``syscalls.bpf``: all decisions about *what* to load were
made by the pure object reader and linker. Every fd created here is owned by a
``LoadedObject`` (or a ``Program``) and closed deterministically.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field

from dispatcher import uapi
from dispatcher.errors import KernelError, ObjectFileError, VerifierError
from dispatcher.kernel import bpf
from dispatcher.kernel.bpffs import check_pin_entry, check_trusted_dir, remove_created
from dispatcher.kernel.fd import OwnedFd
from dispatcher.obj.btf_ext import encode_core_relos, encode_func_info, encode_line_info
from dispatcher.obj.link import LinkedProgram, link_program, referenced_maps
from dispatcher.obj.spec import MapSpec, ObjectSpec, ProgramSpec, bad_pin_names
from dispatcher.uapi import BPF_PROG_TYPE_EXT

DEFAULT_PIN_ROOT = "/sys/fs/bpf"

# Map types whose key/value BTF ids the kernel refuses (libbpf forces them to 0).
_NO_BTF_TYPES = {uapi.BPF_MAP_TYPE_PERF_EVENT_ARRAY, uapi.BPF_MAP_TYPE_CGROUP_ARRAY,
                 uapi.BPF_MAP_TYPE_STACK_TRACE, uapi.BPF_MAP_TYPE_ARRAY_OF_MAPS,
                 uapi.BPF_MAP_TYPE_HASH_OF_MAPS, uapi.BPF_MAP_TYPE_DEVMAP,
                 uapi.BPF_MAP_TYPE_SOCKMAP, uapi.BPF_MAP_TYPE_CPUMAP, uapi.BPF_MAP_TYPE_XSKMAP,
                 uapi.BPF_MAP_TYPE_SOCKHASH, uapi.BPF_MAP_TYPE_QUEUE, uapi.BPF_MAP_TYPE_STACK,
                 uapi.BPF_MAP_TYPE_DEVMAP_HASH, uapi.BPF_MAP_TYPE_ARENA}
_PERF_EVENT_ARRAY = uapi.BPF_MAP_TYPE_PERF_EVENT_ARRAY
# Flags the kernel adds by itself when it creates a map of a type: map_info reports them
# although the object never asked for them. Devmaps (and devmap_hash) get
# BPF_F_RDONLY_PROG (their lookup returns a pointer to the ifindex). libbpf's
# map_is_reuse_compat ignores that bit for these types; so do we.
_KERNEL_ADDED_FLAGS = {uapi.BPF_MAP_TYPE_DEVMAP: uapi.BPF_F_RDONLY_PROG,
                       uapi.BPF_MAP_TYPE_DEVMAP_HASH: uapi.BPF_F_RDONLY_PROG}


@dataclass
class Program:
    """A loaded program: owns its fd."""

    name: str
    fd: OwnedFd
    linked: LinkedProgram
    spec: ProgramSpec

    def info(self) -> bpf.ProgInfo:
        return bpf.prog_info(self.fd.fd)

    def close(self) -> None:
        self.fd.close()


@dataclass
class LoadedObject:
    """Live maps (and BTF) of one object; programs are loaded on demand."""

    spec: ObjectSpec
    btf_fd: OwnedFd | None
    maps: dict[str, OwnedFd]
    reused_pins: dict[str, str] = field(default_factory=dict)   # map name -> pin path reused
    new_pins: dict[str, str] = field(default_factory=dict)      # map name -> pin path we created
    new_dirs: list[str] = field(default_factory=list)          # pin directories we created
    _stack: ExitStack = field(default_factory=ExitStack)

    def map_fd(self, name: str) -> int:
        return self.maps[name].fd

    def created(self) -> list[str]:
        """What this load created on bpffs: map pins, then the directories made for them."""
        return [*self.new_pins.values(), *self.new_dirs]

    def unpin_new(self) -> None:
        """Remove the map pins (and their new directories) this load created (rollback)."""
        remove_created(self.created())

    def close(self) -> None:
        self._stack.close()
        for m in self.maps.values():
            m.close()
        if self.btf_fd is not None:
            self.btf_fd.close()

    def __enter__(self) -> LoadedObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kernel_version() -> tuple[int, int]:
    rel = os.uname().release
    parts = rel.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (ValueError, IndexError):
        return (0, 0)


def open_object(spec: ObjectSpec, *, pin_root: str = DEFAULT_PIN_ROOT,
                only_maps: list[str] | None = None,
                data_overrides: Mapping[str, bytes] | None = None) -> LoadedObject:
    """Load the object's BTF and create its maps (all, or only those named)."""
    chosen = [m for m in spec.maps if only_maps is None or m.name in only_maps]
    check_pin_names(spec, chosen)
    btf_fd = load_btf(spec)
    lo = LoadedObject(spec=spec, btf_fd=btf_fd, maps={})
    try:
        for m in spec.maps:
            if only_maps is not None and m.name not in only_maps:
                continue
            data = data_overrides.get(m.name) if data_overrides else None
            lo.maps[m.name] = create_or_reuse(spec, m, btf_fd, pin_root, lo, data)
    except BaseException:
        lo.unpin_new()
        lo.close()
        raise
    return lo


def check_pin_names(spec: ObjectSpec, maps: list[MapSpec]) -> None:
    """Refuse, before anything is created, a map pinned by name whose name is not one
    safe path component (a crafted symbol such as ``../../x`` must not pin elsewhere)."""
    for problem in bad_pin_names(maps):
        raise ObjectFileError(f"{spec.path}: {problem}")


def load_btf(spec: ObjectSpec) -> OwnedFd | None:
    if spec.btf is None:
        return None
    try:
        return bpf.btf_load(spec.btf.encode())
    except KernelError as e:
        raise KernelError("BPF_BTF_LOAD", e.errno, subject=f"{spec.path}: BTF", detail=e.detail,
                          hint=e.hint) from None


def _create_map(spec: ObjectSpec, m: MapSpec, btf_fd: OwnedFd | None) -> OwnedFd:
    inner_fd: OwnedFd | None = None
    try:
        if m.inner is not None:
            inner_fd = _create_map(spec, m.inner, btf_fd)
        max_entries = m.max_entries
        if m.map_type == _PERF_EVENT_ARRAY and max_entries == 0:
            max_entries = bpf.possible_cpus()
        use_btf = btf_fd is not None and m.map_type not in _NO_BTF_TYPES and (
            m.btf_key_type_id or m.btf_value_type_id)
        kwargs = dict(flags=m.flags, name=m.kernel_name, numa_node=m.numa_node,
                      map_extra=m.map_extra,
                      inner_map_fd=inner_fd.fd if inner_fd is not None else None)
        if use_btf and btf_fd is not None:
            try:
                return bpf.map_create(m.map_type, m.key_size, m.value_size, max_entries,
                                      btf_fd=btf_fd.fd, btf_key_type_id=m.btf_key_type_id,
                                      btf_value_type_id=m.btf_value_type_id, **kwargs)  # type: ignore[arg-type]
            except KernelError as e:
                if e.errno not in (errno.EINVAL, errno.ENOTSUPP if hasattr(errno, "ENOTSUPP") else 524):
                    raise KernelError("BPF_MAP_CREATE", e.errno, subject=f"{spec.path}: map {m.name}",
                                      hint=e.hint) from None
        try:
            return bpf.map_create(m.map_type, m.key_size, m.value_size, max_entries, **kwargs)  # type: ignore[arg-type]
        except KernelError as e:
            raise KernelError("BPF_MAP_CREATE", e.errno, subject=f"{spec.path}: map {m.name}",
                              detail=f"type {m.type_name}, key {m.key_size}, value {m.value_size}, "
                                     f"max_entries {max_entries}, flags 0x{m.flags:x}",
                              hint=e.hint) from None
    finally:
        if inner_fd is not None:
            inner_fd.close()


def compatibility_diffs(m: MapSpec, info: bpf.MapInfo) -> list[str]:
    """Differences between a map spec and an existing (pinned) map; empty = reusable.

    Compares what libbpf's ``map_is_reuse_compat`` compares (type, key and value size,
    max_entries, map_flags, map_extra); flags the kernel adds to every map of the type
    (``_KERNEL_ADDED_FLAGS``) are left out of the flags comparison."""
    diffs = []
    max_entries = m.max_entries
    if m.map_type == _PERF_EVENT_ARRAY and max_entries == 0:
        max_entries = bpf.possible_cpus()
    added = _KERNEL_ADDED_FLAGS.get(m.map_type, 0)
    for label, want, have in (("type", m.map_type, info.type), ("key_size", m.key_size, info.key_size),
                              ("value_size", m.value_size, info.value_size),
                              ("max_entries", max_entries, info.max_entries),
                              ("map_flags", m.flags & ~added, info.map_flags & ~added),
                              ("map_extra", m.map_extra, info.map_extra)):
        if want != have:
            if label == "map_flags":
                diffs.append(f"{label}: object 0x{want:x}, pinned 0x{have:x}")
            else:
                diffs.append(f"{label}: object {want}, pinned {have}")
    return diffs


def _make_dirs(path: str, created: list[str]) -> None:
    """``os.makedirs(path)``, adding each directory it creates to ``created``."""
    missing = []
    p = os.path.abspath(path)
    while not os.path.isdir(p) and os.path.dirname(p) != p:
        missing.append(p)
        p = os.path.dirname(p)
    os.makedirs(path, mode=0o755, exist_ok=True)   # umask may narrow it, never widen it
    created.extend(missing)        # deepest first


def create_or_reuse(spec: ObjectSpec, m: MapSpec, btf_fd: OwnedFd | None, pin_root: str,
                     lo: LoadedObject, data: bytes | None) -> OwnedFd:
    if m.pinning:
        path = os.path.join(pin_root, m.name)
        if os.path.isdir(pin_root):
            check_trusted_dir(pin_root, what="pin_maps directory")
        if check_pin_entry(path):
            fd = bpf.obj_get(path)
            try:
                diffs = compatibility_diffs(m, bpf.map_info(fd.fd))
            except BaseException:
                fd.close()
                raise
            if diffs:
                fd.close()
                raise ObjectFileError(
                    f"{spec.path}: map {m.name}: the map pinned at {path} is incompatible: "
                    + "; ".join(diffs),
                    hint=f"remove the pin (rm {path}) if its contents may be discarded")
            lo.reused_pins[m.name] = path
            return fd
    fd = _create_map(spec, m, btf_fd)
    try:
        if m.data is not None:
            value = data if data is not None else m.data
            bpf.map_update(fd.fd, b"\0\0\0\0", value)
            if m.freeze:
                bpf.map_freeze(fd.fd)
        if m.pinning:
            path = os.path.join(pin_root, m.name)
            _make_dirs(pin_root, lo.new_dirs)
            check_trusted_dir(pin_root, what="pin_maps directory")
            bpf.obj_pin(fd.fd, path)
            lo.new_pins[m.name] = path
    except BaseException:
        fd.close()
        raise
    return fd


def load_program(lo: LoadedObject, prog: ProgramSpec, *, prog_type: int | None = None,
                 prog_flags: int | None = None, attach_prog_fd: int | None = None,
                 attach_btf_id: int = 0, verifier_log: list[str] | None = None,
                 log_level: int = 0, name: str | None = None, prog_ifindex: int = 0) -> Program:
    """Link and load one program of an opened object. ``prog_ifindex`` with
    BPF_F_XDP_DEV_BOUND_ONLY in ``prog_flags`` binds an XDP program to that device."""
    spec = lo.spec
    missing = [n for n in referenced_maps(spec, prog) if n not in lo.maps]
    if missing:
        raise ObjectFileError(f"{spec.path}: program {prog.name}: maps not created: {', '.join(missing)}")
    linked = link_program(spec, prog, {n: fd.fd for n, fd in lo.maps.items()})
    ptype = prog.prog_type if prog_type is None else prog_type
    flags = prog.prog_flags if prog_flags is None else prog_flags
    expected = 0 if ptype == BPF_PROG_TYPE_EXT else prog.expected_attach_type
    use_btf = lo.btf_fd is not None and bool(linked.func_info)
    core = b""
    if linked.core_relos:
        if not use_btf:
            raise ObjectFileError(f"{spec.path}: program {prog.name}: has CO-RE relocations but no usable BTF")
        if kernel_version() < (5, 17):
            raise ObjectFileError(
                f"{spec.path}: program {prog.name}: uses CO-RE relocations, which xdp-dispatch hands "
                f"to the kernel; this needs Linux >= 5.17 (running {os.uname().release})")
        core = encode_core_relos(linked.core_relos)
    license = spec.license or ""
    try:
        fd = bpf.prog_load(
            ptype, linked.insns, license, name=(name or prog.name)[:15], prog_flags=flags,
            expected_attach_type=expected, prog_ifindex=prog_ifindex,
            btf_fd=lo.btf_fd.fd if use_btf and lo.btf_fd is not None else None,
            func_info=encode_func_info(linked.func_info) if use_btf else b"",
            line_info=encode_line_info(linked.line_info) if use_btf else b"",
            attach_btf_id=attach_btf_id, attach_prog_fd=attach_prog_fd,
            core_relos=core, log_level=log_level, verifier_log=verifier_log)
    except KernelError as e:
        raise _resubject(e, f"{spec.path}: program {prog.name}") from None
    return Program(prog.name, fd, linked, prog)


def _resubject(e: KernelError, subject: str) -> KernelError:
    """Rebuild the message so it names the program (errno, op, log and hint kept)."""

    if isinstance(e, VerifierError):
        return VerifierError(e.op, e.errno, subject, e.log, hint=e.hint)
    return KernelError(e.op, e.errno, subject=subject, detail=e.detail, hint=e.hint)


def load_object_program(spec: ObjectSpec, prog: ProgramSpec, *, pin_root: str = DEFAULT_PIN_ROOT,
                        verifier_log: list[str] | None = None, log_level: int = 0,
                        on_notice: Callable[[str], None] | None = None,
                        **kw: object) -> tuple[LoadedObject, Program]:
    """Create the maps one program needs and load it. Caller owns both results."""
    lo = open_object(spec, pin_root=pin_root, only_maps=referenced_maps(spec, prog))
    try:
        p = load_program(lo, prog, verifier_log=verifier_log, log_level=log_level, **kw)  # type: ignore[arg-type]
    except BaseException:
        lo.unpin_new()
        lo.close()
        raise
    return lo, p
