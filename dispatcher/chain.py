"""Change an interface's chain by the multi-dispatch protocol's sequence.

observe -> sort -> load a fresh dispatcher -> load new components / re-attach kept
ones -> pin under the bpffs lock -> atomic netlink swap (NOEXIST or REPLACE with
the expected fd) -> unpin the old dispatcher. A lost race starts over from
observation (bounded); any other failure unwinds everything this attempt created,
so the interface keeps exactly the programs it had.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from . import dispatch, features, netlink, observe, protocol
from .errors import (
    ConflictError,
    ForeignStateError,
    KernelError,
    NetlinkOpError,
    NotSupportedError,
    UsageError,
    XdpDispatchError,
)
from .obj.spec import ObjectSpec, ProgramSpec, names_to_actions
from .state import InterfaceState
from .syscalls import bpf
from .syscalls.bpffs import DirLock
from .syscalls.fd import OwnedFd

MODE_FLAGS = {k: v for k, v in netlink.MODES.items() if k != "unspecified"}
MAX_RETRIES = 10
FAULT_ENV = "XDP_DISPATCH_FAULT"     # test hook: fail (or pause) at a named step


@dataclass(frozen=True)
class NewProgram:
    obj: ObjectSpec
    prog: ProgramSpec
    priority: int
    actions: int            # chain-call bitmap (bits 0..4)

    @property
    def frags(self) -> bool:
        return self.prog.frags


@dataclass
class _Member:
    name: str
    priority: int
    actions: int
    frags: bool
    key: tuple[object, ...]
    fd: int = -1                     # existing component fd (borrowed from the observation)
    new: NewProgram | None = None
    new_index: int = -1              # position in ``add``


@dataclass(frozen=True)
class ChangeResult:
    iface: str
    ifindex: int
    kind: str                         # dispatcher | legacy | none
    dispatcher_id: int
    programs: tuple[tuple[int, str, int], ...]   # (slot, name, prog id)
    attempts: int = 1
    new_ids: tuple[int, ...] = ()     # program ids of ``add``, in the order given


def _fault(step: str) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, action = spec.partition(":")
    if name != step:
        return
    if action.startswith("pause"):
        ready = os.environ.get(FAULT_ENV + "_READY")
        if ready:
            with open(ready, "w") as f:
                f.write(step)
        time.sleep(float(action[5:] or 30))
        return
    raise XdpDispatchError(f"injected failure at step '{step}' ({FAULT_ENV})")


def remove_pin_dir(path: str) -> None:
    """Unpin every entry of a dispatcher pin directory, then remove it (missing is fine)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for n in names:
        try:
            os.unlink(os.path.join(path, n))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def state_dir(root: str) -> str:
    return os.path.join(root, "xdp")


def _sort_members(members: list[_Member]) -> list[_Member]:
    return sorted(members, key=lambda m: m.key)


def change(iface: str, *, mode: str, add: list[NewProgram] | None = None,
           remove_ids: set[int] | None = None, remove_all: bool = False,
           update: dict[int, tuple[int, int]] | None = None,
           netns: str | None = None, root: str, force: bool = False,
           notice: Callable[[str], None] | None = None,
           verifier_log: list[str] | None = None) -> ChangeResult:
    """Add ``add``, remove ``remove_ids`` (or everything) and give kept components new
    (priority, actions) from ``update`` on ``iface``, in one swap."""
    if mode not in MODE_FLAGS:
        raise UsageError(f"unknown mode '{mode}' (expected native, skb or hw)")
    add = add or []
    remove_ids = remove_ids or set()
    ifindex = netlink.ifindex_of(iface, netns=netns)
    last: Exception | None = None
    for attempt in range(1, MAX_RETRIES + 1):
        try:
            res = _attempt(iface, ifindex, mode, add, remove_ids, remove_all, update or {}, netns,
                           root, force, notice, verifier_log)
            return ChangeResult(res.iface, res.ifindex, res.kind, res.dispatcher_id, res.programs,
                                attempt, res.new_ids)
        except _Race as r:
            last = r
            time.sleep((1 << attempt) / 1e6)
    raise ConflictError(f"{iface}: the XDP program changed under us {MAX_RETRIES} times; giving up"
                        f" ({last})")


class _Race(Exception):
    pass


def _existing_members(st: InterfaceState, fds: list[OwnedFd], remove_ids: set[int],
                      remove_all: bool, update: dict[int, tuple[int, int]]) -> list[_Member]:
    out = []
    for comp, fd in zip(st.programs, fds, strict=True):
        if remove_all or comp.id in remove_ids:
            continue
        if comp.id in update:
            prio, actions = update[comp.id]
        else:
            prio, actions = comp.priority, names_to_actions(list(comp.chain_call_actions))
        tag = bytes.fromhex(comp.tag)
        key = protocol.sort_key(protocol.SortKey(prio, comp.name, True, 0, tag, comp.load_time))
        out.append(_Member(comp.name, prio, actions, comp.frags, key, fd=fd.fd))
    return out


def _check_target(st: InterfaceState, iface: str, mode: str, remove_ids: set[int],
                  remove_all: bool, force: bool) -> None:
    if st.kind == "legacy":
        if remove_all or (st.main and st.main.id in remove_ids):
            return
        if not force:
            raise ForeignStateError(
                f"{iface} has a program that is not a dispatcher attached "
                f"({st.main.full_name if st.main else '?'}, id {st.main.id if st.main else '?'})",
                hint=f"remove it first (xdp-dispatch unload {iface} --all), or pass --force to replace it")
    if st.kind == "dispatcher":
        assert st.dispatcher is not None
        if remove_all:
            return
        v = st.dispatcher.version
        if v < protocol.VERSION:
            raise ForeignStateError(
                f"{iface}: the attached dispatcher uses protocol version {v}, older than ours "
                f"({protocol.VERSION}); refusing a transparent upgrade",
                hint=f"unload it first: xdp-dispatch unload {iface} --all")
        if v > protocol.VERSION:
            raise ForeignStateError(
                f"{iface}: the attached dispatcher uses protocol version {v} (libxdp >= 1.6); "
                f"this tool writes version {protocol.VERSION} and will not change it",
                hint=f"unload it first (xdp-dispatch unload {iface} --all), or use that libxdp")
        missing = [p for p in st.problems if "missing" in p]
        if missing:
            raise ForeignStateError(f"{iface}: dispatcher {st.dispatcher.id} cannot be changed: "
                                    + "; ".join(missing),
                                    hint=f"remove it with xdp-dispatch unload {iface} --all")
        for pid in remove_ids:
            if pid not in {c.id for c in st.programs}:
                raise UsageError(f"{iface}: no program with id {pid} in the chain "
                                 f"(ids: {', '.join(str(c.id) for c in st.programs) or 'none'})")
        if st.mode and st.mode != mode and st.programs:
            raise UsageError(f"{iface}: the chain is attached in {st.mode} mode, not {mode}",
                             hint=f"pass -m {st.mode}")
    if st.kind == "none" and remove_ids:
        raise UsageError(f"{iface}: no XDP program is attached")


def _attempt(iface: str, ifindex: int, mode: str, add: list[NewProgram], remove_ids: set[int],
             remove_all: bool, update: dict[int, tuple[int, int]], netns: str | None, root: str,
             force: bool,
             notice: Callable[[str], None] | None,
             verifier_log: list[str] | None) -> ChangeResult:
    xs = netlink.read_xdp(ifindex, netns=netns)
    with observe.observe(xs, root, keep_open=True) as old, ExitStack() as stack:
        st = old.state
        _check_target(st, iface, mode, remove_ids, remove_all, force)
        old_fd = old.main_fd
        old_mode_flags = MODE_FLAGS.get(st.mode or mode, MODE_FLAGS[mode])

        members: list[_Member] = []
        if st.kind == "dispatcher":
            members = _existing_members(st, old.component_fds, remove_ids, remove_all, update)
        for idx, n in enumerate(add):
            key = protocol.sort_key(protocol.SortKey(n.priority, n.prog.name, False,
                                                     n.prog.function.insn_count))
            members.append(_Member(n.prog.name, n.priority, n.actions, n.frags, key, new=n,
                                   new_index=idx))
        if len(members) > protocol.MAX_SLOTS:
            raise UsageError(f"{iface}: {len(members)} programs requested; a dispatcher has "
                             f"{protocol.MAX_SLOTS} slots")
        members = _sort_members(members)

        if not members:
            if old_fd is None:
                return ChangeResult(iface, ifindex, "none", 0, ())
            _swap(ifindex, None, old_fd, old_mode_flags, netns, iface)
            if st.kind == "dispatcher" and st.dispatcher:
                with DirLock(state_dir(root)):
                    remove_pin_dir(st.dispatcher.pin_dir)
            return ChangeResult(iface, ifindex, "none", 0, ())

        # A dispatcher with components already attached proves the kernel takes extensions:
        # skip the probe (it loads two programs) for the common "change a chain" case.
        fr = features.Probe("freplace", True, "a dispatcher is attached") \
            if st.kind == "dispatcher" and st.programs else features.freplace()
        if not fr.supported:
            only_new = len(members) == 1 and members[0].new is not None and st.kind in ("none", "legacy")
            if only_new:
                return _plain_attach(iface, ifindex, mode, members[0], old_fd, netns, root, notice,
                                     verifier_log, fr)
            raise NotSupportedError(
                "probe freplace", errno.EOPNOTSUPP, subject=iface,
                detail=f"the running kernel refuses extension programs ({fr.detail}); a chain of "
                       f"{len(members)} programs needs freplace (Linux >= 5.10 with BPF "
                       "trampolines)",
                hint="load a single program, or use a kernel that allows BPF_PROG_TYPE_EXT "
                     "(a 'linked' mode that serves such kernels is planned, not built yet)")

        want_frags = all(m.frags for m in members) and _frags_ok()
        disp = dispatch.load_dispatcher([m.priority for m in members],
                                        [m.actions for m in members],
                                        [protocol.BPF_F_XDP_HAS_FRAGS if m.frags else 0
                                         for m in members], frags=want_frags)
        stack.callback(disp.close)
        _fault("dispatcher_loaded")
        new_map_pins: list[str] = []
        committed = False

        def cleanup_map_pins() -> None:
            if not committed:
                for p in new_map_pins:
                    try:
                        os.unlink(p)
                    except OSError:
                        pass
        stack.callback(cleanup_map_pins)

        slots: list[tuple[int, OwnedFd, str]] = []
        for i, m in enumerate(members):
            if m.new is not None:
                p, pins = dispatch.load_component(m.new.obj, m.new.prog, disp, i, pin_root=root,
                                                  verifier_log=verifier_log)
                new_map_pins.extend(pins)
                stack.callback(p.close)
                prog_fd = p.fd.fd
            else:
                prog_fd = m.fd
            try:
                link = dispatch.link_component(prog_fd, disp, i)
            except KernelError as e:
                if e.errno == errno.EINVAL and m.new is None:
                    raise NotSupportedError(
                        "BPF_LINK_CREATE", e.errno, subject=f"{iface}: {m.name}",
                        detail="the kernel cannot re-attach an extension to a new dispatcher "
                               "(needs Linux >= 5.10)") from None
                raise
            stack.callback(link.close)
            slots.append((prog_fd, link, m.name))
        _fault("components_linked")

        disp_id = disp.id()
        pdir = protocol.pin_dir(root, ifindex, disp_id)
        with DirLock(state_dir(root)):
            os.mkdir(pdir, 0o700)
            try:
                for i, (prog_fd, link, _name) in enumerate(slots):
                    bpf.obj_pin(link.fd, f"{pdir}/prog{i}-link")
                    bpf.obj_pin(prog_fd, f"{pdir}/prog{i}-prog")
            except BaseException:
                remove_pin_dir(pdir)
                raise

        def unpin_new() -> None:
            if not committed:
                with DirLock(state_dir(root)):
                    remove_pin_dir(pdir)
        stack.callback(unpin_new)
        _fault("pinned")

        try:
            _swap(ifindex, disp.fd, old_fd, MODE_FLAGS[mode], netns, iface)
        except NetlinkOpError as e:
            if e.errno in (errno.EEXIST, errno.EBUSY) and (old_fd is not None or e.errno == errno.EBUSY):
                raise _Race(e.message) from None
            raise
        committed = True
        _fault("attached")
        if st.kind == "dispatcher" and st.dispatcher:
            with DirLock(state_dir(root)):
                remove_pin_dir(st.dispatcher.pin_dir)
        ids = []
        new_ids = [0] * len(add)
        for i, (prog_fd, _link, name) in enumerate(slots):
            pid = bpf.prog_info(prog_fd).id
            ids.append((i, name, pid))
            if members[i].new_index >= 0:
                new_ids[members[i].new_index] = pid
        return ChangeResult(iface, ifindex, "dispatcher", disp_id, tuple(ids), new_ids=tuple(new_ids))


def _frags_ok() -> bool:
    try:
        return features.frags().supported
    except XdpDispatchError:
        return False


def _swap(ifindex: int, new_fd: int | None, old_fd: OwnedFd | None, mode_flags: int,
          netns: str | None, iface: str) -> None:
    if new_fd is None:
        assert old_fd is not None
        netlink.detach_xdp(ifindex, mode_flags, expected_fd=old_fd.fd, netns=netns)
        return
    if old_fd is None:
        netlink.attach_xdp(ifindex, new_fd, mode_flags, no_exist=True, netns=netns)
    else:
        netlink.attach_xdp(ifindex, new_fd, mode_flags, expected_fd=old_fd.fd, netns=netns)


def _plain_attach(iface: str, ifindex: int, mode: str, m: _Member, old_fd: OwnedFd | None,
                  netns: str | None, root: str, notice: Callable[[str], None] | None,
                  verifier_log: list[str] | None, fr: features.Probe) -> ChangeResult:
    from . import loader

    assert m.new is not None
    lo, p = loader.load_object_program(m.new.obj, m.new.prog, pin_root=root,
                                       verifier_log=verifier_log,
                                       log_level=1 if verifier_log is not None else 0)
    with lo, p.fd:
        try:
            _swap(ifindex, p.fd.fd, old_fd, MODE_FLAGS[mode], netns, iface)
        except NetlinkOpError as e:
            lo.unpin_new()
            if e.errno in (errno.EEXIST, errno.EBUSY):
                raise _Race(e.message) from None
            raise
        except BaseException:
            lo.unpin_new()
            raise
        pid = p.info().id
    if notice:
        notice(f"the running kernel refuses freplace ({fr.detail}); attached {m.name} directly, "
               "without a dispatcher (like libxdp)")
    return ChangeResult(iface, ifindex, "legacy", 0, ((0, m.name, pid),), new_ids=(pid,))


def clean(root: str, iface: str | None = None, netns: str | None = None) -> list[str]:
    """Remove pin directories whose dispatcher is no longer attached (and nothing else)."""
    sdir = state_dir(root)
    if not os.path.isdir(sdir):
        return []
    only = netlink.ifindex_of(iface, netns=netns) if iface else None
    removed = []
    with DirLock(sdir):
        for name in sorted(os.listdir(sdir)):
            parsed = protocol.parse_pin_dir_name(name)
            if parsed is None or not os.path.isdir(os.path.join(sdir, name)):
                continue
            ifindex, did = parsed
            if only is not None and ifindex != only:
                continue
            try:
                xs = netlink.read_xdp(ifindex, netns=netns)
                current = {xs.drv_prog_id, xs.skb_prog_id}
            except XdpDispatchError:
                current = set()
            if did in current:
                continue
            remove_pin_dir(os.path.join(sdir, name))
            removed.append(os.path.join(sdir, name))
    return removed
