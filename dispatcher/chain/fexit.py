"""Per-component counters of freplace chains: fexit programs (and fentry, for timing).

libxdp recognises a dispatcher only if it has exactly one map, so the dispatcher cannot
count. Instead each component (a ``BPF_PROG_TYPE_EXT`` program, ours or another tool's)
gets a fexit program on its entry function that counts its verdicts and bytes into a
per-CPU map of its own; with timing, a fentry program too (code and layout:
``dispatcher.chain.counting``). Components keep their program ids across chain changes
(kept ones are re-linked to the new dispatcher), and a tracing program stays attached
to its target whatever the target is linked to, so counts follow components.

What lives beyond the process, under our own bpffs directory ``<root>/xdp-dispatch/fexit``
(root's, mode 0700, checked before use; nothing in it is ever followed as a link):

- ``NSID-IFINDEX-counts`` or ``NSID-IFINDEX-timing``: an empty directory that says this
  interface's freplace chain is counted (NSID: the network namespace's inode number);
- ``NSID-IFINDEX-PROGID/``: component PROGID's counters, ``map`` (pinned) and its links
  ``fexit`` and, with timing, ``fentry`` (pinned: they live as long as the pins).

``reconcile`` makes that true for the chain attached now: components without counters get
them (a component another tool added, or a new one after an upgrade), the counters of
components that left the chain are unpinned (a link holds its target program, so a
removed component lives on until then), and a mode change swaps the programs but keeps
each component's map (its counts continue). It runs after every change we make, on
``stats enable|disable``, in the agent's reconcile, and ``clean`` sweeps what is left of
chains that are gone.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping, Sequence

from dispatcher import safeio
from dispatcher.chain import stats as chain_stats
from dispatcher.errors import KernelError
from dispatcher.kernel import bpf, bpffs, netlink
from dispatcher.kernel.fd import OwnedFd
from dispatcher.uapi import (
    BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_PROG_TYPE_TRACING,
    BPF_TRACE_FENTRY,
    BPF_TRACE_FEXIT,
)

SUBDIR = ("xdp-dispatch", "fexit")
MAP_PIN, FEXIT_PIN, FENTRY_PIN = "map", "fexit", "fentry"
ACTIVE_MODES = ("counts", "timing")


def stats_dir(root: str) -> str:
    return os.path.join(root, *SUBDIR)


def netns_id(netns: str | None) -> int:
    """The inode number that names ``netns`` (None: this thread's namespace)."""
    return os.stat(netlink.netns_path(netns) if netns else "/proc/thread-self/ns/net").st_ino


def entries(root: str) -> list[str]:
    """The names in the counters directory: real directories, in a directory (and its
    parent ``xdp-dispatch``) that only root can change; [] if there is none."""
    try:
        safeio.check_trusted_dir(os.path.join(root, SUBDIR[0]), what="counter directory")
    except FileNotFoundError:
        return []
    return bpffs.pin_subdirs(stats_dir(root))


def _make_base(root: str) -> str:
    top = os.path.join(root, SUBDIR[0])
    safeio.make_trusted_dir(top, what="counter directory")   # refuses a link, others' dirs
    safeio.make_trusted_dir(stats_dir(root), what="counter directory")
    return stats_dir(root)


def mode(root: str, nsid: int, ifindex: int) -> str:
    """This interface's setting: counts, timing or off."""
    names = set(entries(root))
    for m in ACTIVE_MODES:
        if chain_stats.interface_dir(nsid, ifindex, m) in names:
            return m
    return "off"


def _component_dirs(root: str, nsid: int, ifindex: int) -> dict[int, str]:
    out = {}
    for name in entries(root):
        parsed = chain_stats.parse_dir(name)
        if parsed and parsed[:2] == (nsid, ifindex) and isinstance(parsed[2], int):
            out[parsed[2]] = os.path.join(stats_dir(root), name)
    return out


def _pin(d: str, name: str) -> str | None:
    """The path of pin ``name`` in component directory ``d`` if it is there (refusing a
    symbolic link or another owner's entry), else None."""
    path = os.path.join(d, name)
    return path if bpffs.check_pin_entry(path) else None


def _entry_btf_id(prog_fd: int) -> int:
    """The BTF id of the program's entry function (its func_info at instruction 0)."""
    for off, type_id in bpf.prog_func_info(prog_fd):
        if off == 0:
            return type_id
    raise KernelError("BPF_OBJ_GET_INFO_BY_FD", errno.EINVAL, subject=f"program fd {prog_fd}",
                      hint="the component has no BTF function info: it cannot be counted")


def _attach(kind: int, code: bytes, name: str, target_fd: int, btf_id: int) -> OwnedFd:
    from dispatcher.chain.counting import LICENSE

    with bpf.prog_load(BPF_PROG_TYPE_TRACING, code, LICENSE, name=name,
                       expected_attach_type=kind, attach_btf_id=btf_id,
                       attach_prog_fd=target_fd) as prog:
        return bpf.raw_tracepoint_open(prog.fd, subject=name)


def _unpin(path: str | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _ensure_component(root: str, nsid: int, ifindex: int, prog_id: int, prog_fd: int,
                      timing: bool, d: str | None) -> None:
    if d is None:
        d = os.path.join(stats_dir(root), chain_stats.component_dir(nsid, ifindex, prog_id))
        os.mkdir(d, 0o700)
    safeio.check_trusted_dir(d, what="counter directory")
    map_pin = _pin(d, MAP_PIN)
    fexit_pin = _pin(d, FEXIT_PIN)
    fentry_pin = _pin(d, FENTRY_PIN)
    if map_pin and fexit_pin and bool(fentry_pin) == timing:
        return                                    # counted as asked
    from dispatcher.chain import counting  # the instruction codec: only to attach

    btf_id = _entry_btf_id(prog_fd)
    if map_pin:
        mfd = bpf.obj_get(map_pin)
    else:
        mfd = bpf.map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, chain_stats.VALUE_SIZE,
                             chain_stats.FEXIT_ENTRIES, name=chain_stats.FEXIT_MAP_NAME)
    with mfd:
        # a mode change: the old programs go first (a packet is never counted twice)
        _unpin(fentry_pin)
        _unpin(fexit_pin)
        if timing:
            with _attach(BPF_TRACE_FENTRY, counting.fentry_program(mfd.fd),
                         counting.FENTRY_PROG_NAME, prog_fd, btf_id) as link:
                bpf.obj_pin(link.fd, os.path.join(d, FENTRY_PIN))
        with _attach(BPF_TRACE_FEXIT, counting.fexit_program(mfd.fd, timing),
                     counting.FEXIT_PROG_NAME, prog_fd, btf_id) as link:
            bpf.obj_pin(link.fd, os.path.join(d, FEXIT_PIN))
        if not map_pin:
            bpf.obj_pin(mfd.fd, os.path.join(d, MAP_PIN))


def reconcile(root: str, netns: str | None, ifindex: int, setting: str,
              components: Sequence[tuple[int, int]]) -> None:
    """Make the counters of interface ``ifindex`` match ``setting`` (counts | timing |
    off) for ``components``, the chain's (program id, open fd) pairs."""
    nsid = netns_id(netns)
    if setting == "off" and not os.path.isdir(stats_dir(root)):
        return
    base = _make_base(root)
    dirs = _component_dirs(root, nsid, ifindex)
    want = {pid for pid, _fd in components} if setting != "off" else set()
    for pid, d in dirs.items():
        if pid not in want:
            bpffs.remove_pin_dir(d)
    for m in ACTIVE_MODES:
        marker = os.path.join(base, chain_stats.interface_dir(nsid, ifindex, m))
        if m == setting:
            try:
                os.mkdir(marker, 0o700)
            except FileExistsError:
                safeio.check_trusted_dir(marker, what="counter directory")
        else:
            bpffs.remove_pin_dir(marker)
    if setting == "off":
        return
    for pid, fd in components:
        _ensure_component(root, nsid, ifindex, pid, fd, setting == "timing", dirs.get(pid))


def reconcile_attached(root: str, netns: str | None, ifindex: int, setting: str,
                       prog_ids: Iterable[int]) -> None:
    """``reconcile`` for components known by program id (opened here)."""
    fds: list[OwnedFd] = []
    try:
        comps = []
        for pid in prog_ids:
            try:
                fd = bpf.prog_get_fd_by_id(pid)
            except KernelError:
                continue                      # gone meanwhile: nothing to count
            fds.append(fd)
            comps.append((pid, fd.fd))
        reconcile(root, netns, ifindex, setting, comps)
    finally:
        for fd in fds:
            fd.close()


def read(root: str, netns: str | None, ifindex: int, prog_ids: Sequence[int]
         ) -> tuple[str, dict[int, tuple[tuple[tuple[int, int], ...], int | None]]]:
    """(setting, {prog id: (per-action (packets, bytes), run time ns or None)}) of the
    counted components among ``prog_ids``."""
    if not os.path.isdir(stats_dir(root)):
        return "off", {}
    nsid = netns_id(netns)
    setting = mode(root, nsid, ifindex)
    dirs = _component_dirs(root, nsid, ifindex)
    out = {}
    size = bpf.percpu_value_size(chain_stats.VALUE_SIZE)
    for pid in prog_ids:
        d = dirs.get(pid)
        path = _pin(d, MAP_PIN) if d else None
        if path is None:
            continue
        try:
            with bpf.obj_get(path) as mfd:
                keys, values, n = bpf.map_lookup_batch(mfd.fd, 4, size,
                                                       chain_stats.FEXIT_ENTRIES)
        except KernelError:
            continue
        cells = {int.from_bytes(keys[4 * i:4 * i + 4], "little"):
                 chain_stats.sum_percpu(values[size * i:size * (i + 1)]) for i in range(n)}
        counts = tuple(cells.get(a, (0, 0)) for a in range(chain_stats.NUM_ACTIONS))
        timed = _pin(d, FENTRY_PIN) if d else None
        out[pid] = (counts, cells.get(chain_stats.TIME_KEY, (0, 0))[0] if timed else None)
    return setting, out


def sweep(root: str, attached: Mapping[int, Mapping[int, Sequence[int]]]) -> list[str]:
    """Remove counters of chains that are gone: ``attached`` maps each network namespace
    we can see (by inode number) to {ifindex: the component program ids of the freplace
    chain attached there}. What belongs to a namespace not in ``attached`` is removed
    too (the namespace is gone, or we cannot see it: its counters cannot be read)."""
    base = stats_dir(root)
    removed = []
    for name in entries(root):
        parsed = chain_stats.parse_dir(name)
        if parsed is None:
            continue
        nsid, ifindex, last = parsed
        comps = attached.get(nsid, {}).get(ifindex)
        stale = comps is None if isinstance(last, str) else (comps is None or last not in comps)
        if stale:
            path = os.path.join(base, name)
            if _is_real_dir(path) and bpffs.remove_pin_dir(path):
                removed.append(path)
    return removed


def _is_real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False

