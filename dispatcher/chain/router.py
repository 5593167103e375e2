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
from typing import TYPE_CHECKING

from dispatcher.chain import observe, protocol
from dispatcher.chain.state import InterfaceState
from dispatcher.errors import (
    ConflictError,
    ForeignStateError,
    KernelError,
    NetlinkOpError,
    NotSupportedError,
    UsageError,
    XdpDispatchError,
)
from dispatcher.kernel import bpf, netlink, probes
from dispatcher.kernel.bpffs import DirLock, remove_created
from dispatcher.kernel.fd import OwnedFd
from dispatcher.obj.actions import names_to_actions
from dispatcher.record import record

if TYPE_CHECKING:  # the object layer is imported when a chain is built, not to empty one
    from dispatcher.obj.spec import ObjectSpec, ProgramSpec

MODE_FLAGS = {k: v for k, v in netlink.MODES.items() if k != "unspecified"}
MAX_RETRIES = 10
FAULT_ENV = "XDP_DISPATCH_FAULT"     # test hook: fail (or pause) at a named step


@record
class NewProgram:
    obj: ObjectSpec
    prog: ProgramSpec
    priority: int
    actions: int            # chain-call bitmap (bits 0..4)
    pin_dir: str | None = None   # where its pinned maps live (default: the bpffs root)
    label: str = ""              # linked chains: the slot's name (default: the program name)
    settings: str = ""           # linked chains: load-time overrides to redo on rebuilds
    source: str = ""             # linked chains: the config file that manages the slot

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


@record
class ChangeResult:
    iface: str
    ifindex: int
    kind: str                         # dispatcher | legacy | none
    dispatcher_id: int
    programs: tuple[tuple[int, str, int], ...]   # (slot, name, prog id)
    attempts: int = 1
    new_ids: tuple[int, ...] = ()     # program ids of ``add``, in the order given


def _fault(step: str, iface: str = "") -> None:
    """``XDP_DISPATCH_FAULT=STEP[@IFACE][:pause[SECONDS]]``: fail (or pause) at STEP (of
    IFACE's change only, if given). A pause writes the file ``XDP_DISPATCH_FAULT_READY``
    names and ends after SECONDS (30) or as soon as someone deletes that file."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, action = spec.partition(":")
    name, _, only = name.partition("@")
    if name != step or (only and only != iface):
        return
    if action.startswith("pause"):
        ready = os.environ.get(FAULT_ENV + "_READY")
        if ready:
            with open(ready, "w") as f:
                f.write(step)
        end = time.monotonic() + float(action[5:] or 30)
        while time.monotonic() < end and (not ready or os.path.exists(ready)):
            time.sleep(0.02)
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

    @property
    def changed(self) -> bool:
        return self.old_fd is not None or self.new_fd is not None

    def commit(self) -> None:
        """Keep the change: unpin the replaced dispatcher and release what was held."""
        if self.done:
            return
        self.done = True
        try:
            if self.old_pin_dir:
                with DirLock(state_dir(self.root)):
                    remove_pin_dir(self.old_pin_dir)
        finally:
            self._held.close()

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
                    with DirLock(state_dir(self.root)):
                        remove_pin_dir(self.old_pin_dir)
                raise
            if self.new_pin_dir:
                with DirLock(state_dir(self.root)):
                    remove_pin_dir(self.new_pin_dir)
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


def change(iface: str, *, mode: str, add: list[NewProgram] | None = None,
           remove_ids: set[int] | None = None, remove_all: bool = False,
           update: dict[int, tuple[int, int]] | None = None,
           netns: str | None = None, root: str, force: bool = False,
           notice: Callable[[str], None] | None = None,
           verifier_log: list[str] | None = None, dispatch: str = "auto",
           remove_names: set[str] | None = None) -> ChangeResult:
    """Add ``add``, remove ``remove_ids`` (or everything) and give kept components new
    (priority, actions) from ``update`` on ``iface``, in one swap. ``dispatch``: auto |
    freplace | linked (see ``linked_chain``); ``remove_names``: linked components by name."""
    pending = begin(iface, mode=mode, add=add, remove_ids=remove_ids, remove_all=remove_all,
                    update=update, netns=netns, root=root, force=force, notice=notice,
                    verifier_log=verifier_log, dispatch=dispatch, remove_names=remove_names)
    pending.commit()
    return pending.result


def begin(iface: str, *, mode: str, add: list[NewProgram] | None = None,
          remove_ids: set[int] | None = None, remove_all: bool = False,
          update: dict[int, tuple[int, int]] | None = None,
          netns: str | None = None, root: str, force: bool = False,
          notice: Callable[[str], None] | None = None,
          verifier_log: list[str] | None = None, dispatch: str = "auto",
          remove_names: set[str] | None = None) -> PendingChange:
    """``change`` up to the swap: the interface runs the new chain, and the returned
    ``PendingChange`` can still ``rollback()`` to exactly the old one, or ``commit()``."""
    from dispatcher.chain.description import DISPATCH_MODES

    if mode not in MODE_FLAGS:
        raise UsageError(f"unknown mode '{mode}' (expected native, skb or hw)")
    if dispatch not in DISPATCH_MODES:
        raise UsageError(f"unknown dispatch mode '{dispatch}' (expected "
                         f"{', '.join(DISPATCH_MODES)})")
    add = add or []
    remove_ids = remove_ids or set()
    ifindex = netlink.ifindex_of(iface, netns=netns)
    if _use_linked(iface, ifindex, netns, dispatch, add, remove_names or set(), remove_all):
        from dispatcher.chain.linked import (
            backend,  # the linker and its loader: only for linked chains
        )

        return backend.begin(iface, ifindex, mode=mode, add=add, remove_ids=remove_ids,
                                  remove_names=remove_names or set(), remove_all=remove_all,
                                  netns=netns, root=root, force=force, notice=notice,
                                  verifier_log=verifier_log, max_retries=MAX_RETRIES)
    last: Exception | None = None
    for attempt in range(1, MAX_RETRIES + 1):
        try:
            pending = _attempt(iface, ifindex, mode, add, remove_ids, remove_all, update or {},
                               netns, root, force, notice, verifier_log)
            r = pending.result
            pending.result = ChangeResult(r.iface, r.ifindex, r.kind, r.dispatcher_id, r.programs,
                                          attempt, r.new_ids)
            return pending
        except _Race as r:
            last = r
            time.sleep((1 << attempt) / 1e6)
    raise ConflictError(f"{iface}: the XDP program changed under us {MAX_RETRIES} times; giving up"
                        f" ({last})")


class _Race(Exception):
    pass


def _use_linked(iface: str, ifindex: int, netns: str | None, dispatch: str,
                add: list[NewProgram], remove_names: set[str], remove_all: bool) -> bool:
    """Whether this change goes to the linked-chain path: the attached program is a linked
    chain, or linked dispatch is asked for, or ``auto`` on a kernel that refuses freplace
    with several programs to chain."""
    from dispatcher.chain.description import attached_description

    if attached_description(ifindex, netns) is not None:
        if dispatch == "freplace" and add:
            raise ForeignStateError(
                f"{iface} has a linked chain attached; --dispatch freplace cannot add to it",
                hint=f"unload it first (xdp-dispatch unload {iface} --all), or use "
                     "--dispatch auto|linked")
        return True
    if remove_names and not remove_all:
        return True                  # the linked path explains that names need a linked chain
    if dispatch == "linked":
        return bool(add)
    if dispatch == "auto" and len(add) >= 2:
        return not probes.freplace().supported
    return False


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
    if st.kind == "linked" and not remove_all:
        raise _Race("a linked chain was attached meanwhile")   # begin() routes those


def _attempt(iface: str, ifindex: int, mode: str, add: list[NewProgram], remove_ids: set[int],
             remove_all: bool, update: dict[int, tuple[int, int]], netns: str | None, root: str,
             force: bool,
             notice: Callable[[str], None] | None,
             verifier_log: list[str] | None) -> PendingChange:
    xs = netlink.read_xdp(ifindex, netns=netns)
    # ``held``: what a pending change keeps until commit/rollback (the old chain's fds);
    # ``stack``: what this attempt creates and closes (or unwinds) in any case.
    with ExitStack() as held, ExitStack() as stack:
        old = observe.observe(xs, root, keep_open=True)
        held.callback(old.close)
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

        old_pin_dir = st.dispatcher.pin_dir if st.kind == "dispatcher" and st.dispatcher else None
        if not members:
            if old_fd is None:
                return PendingChange(ChangeResult(iface, ifindex, "none", 0, ()), netns=netns,
                                     root=root)
            _swap(ifindex, None, old_fd, old_mode_flags, netns, iface)
            return PendingChange(ChangeResult(iface, ifindex, "none", 0, ()), netns=netns,
                                 root=root, old_fd=old_fd, old_mode_flags=old_mode_flags,
                                 old_pin_dir=old_pin_dir, held=held.pop_all())

        # A dispatcher with components already attached proves the kernel takes extensions:
        # skip the probe (it loads two programs) for the common "change a chain" case.
        fr = probes.Probe("freplace", True, "a dispatcher is attached") \
            if st.kind == "dispatcher" and st.programs else probes.freplace()
        if not fr.supported:
            only_new = len(members) == 1 and members[0].new is not None and st.kind in ("none", "legacy")
            if only_new:
                return _plain_attach(iface, ifindex, mode, members[0], old_fd, old_mode_flags,
                                     netns, root, notice, verifier_log, fr, held)
            raise NotSupportedError(
                "probe freplace", errno.EOPNOTSUPP, subject=iface,
                detail=f"the running kernel refuses extension programs ({fr.detail}); a chain of "
                       f"{len(members)} programs needs freplace (Linux >= 5.10 with BPF "
                       "trampolines)",
                hint="use --dispatch linked (or auto) to link the programs into one XDP "
                     "program, load a single program, or use a kernel that allows "
                     "BPF_PROG_TYPE_EXT")

        from dispatcher.chain.freplace import program

        want_frags = all(m.frags for m in members) and _frags_ok()
        disp = program.load_dispatcher([m.priority for m in members],
                                        [m.actions for m in members],
                                        [protocol.BPF_F_XDP_HAS_FRAGS if m.frags else 0
                                         for m in members], frags=want_frags)
        stack.callback(disp.close)
        _fault("dispatcher_loaded", iface)
        new_map_pins: list[str] = []
        committed = False

        def cleanup_map_pins() -> None:
            if not committed:
                remove_created(new_map_pins)
        stack.callback(cleanup_map_pins)

        slots: list[tuple[int, OwnedFd, str]] = []
        for i, m in enumerate(members):
            if m.new is not None:
                p, pins = program.load_component(m.new.obj, m.new.prog, disp, i,
                                                  pin_root=m.new.pin_dir or root,
                                                  verifier_log=verifier_log)
                new_map_pins.extend(pins)
                stack.callback(p.close)
                prog_fd = p.fd.fd
            else:
                prog_fd = m.fd
            try:
                link = program.link_component(prog_fd, disp, i)
            except KernelError as e:
                if e.errno == errno.EINVAL and m.new is None:
                    raise NotSupportedError(
                        "BPF_LINK_CREATE", e.errno, subject=f"{iface}: {m.name}",
                        detail="the kernel cannot re-attach an extension to a new dispatcher "
                               "(needs Linux >= 5.10)") from None
                raise
            stack.callback(link.close)
            slots.append((prog_fd, link, m.name))
        _fault("components_linked", iface)

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
        _fault("pinned", iface)
        ids = []
        new_ids = [0] * len(add)
        for i, (prog_fd, _link, name) in enumerate(slots):
            pid = bpf.prog_info(prog_fd).id
            ids.append((i, name, pid))
            if members[i].new_index >= 0:
                new_ids[members[i].new_index] = pid
        new_fd = disp.prog.fd.dup()        # held: a rollback expects it to be the attached one
        held.callback(new_fd.close)

        try:
            _swap(ifindex, disp.fd, old_fd, MODE_FLAGS[mode], netns, iface)
        except NetlinkOpError as e:
            if e.errno in (errno.EEXIST, errno.EBUSY) and (old_fd is not None or e.errno == errno.EBUSY):
                raise _Race(e.message) from None
            raise
        committed = True
        pending = PendingChange(
            ChangeResult(iface, ifindex, "dispatcher", disp_id, tuple(ids), new_ids=tuple(new_ids)),
            netns=netns, root=root, old_fd=old_fd, old_mode_flags=old_mode_flags, new_fd=new_fd,
            new_mode_flags=MODE_FLAGS[mode], old_pin_dir=old_pin_dir, new_pin_dir=pdir,
            new_map_pins=new_map_pins, held=held.pop_all())
        try:
            _fault("attached", iface)
        except BaseException:
            pending.rollback()
            raise
        return pending


def _frags_ok() -> bool:
    try:
        return probes.frags().supported
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
                  old_mode_flags: int, netns: str | None, root: str,
                  notice: Callable[[str], None] | None, verifier_log: list[str] | None,
                  fr: probes.Probe, held: ExitStack) -> PendingChange:
    from dispatcher.kernel import loader

    assert m.new is not None
    lo, p = loader.load_object_program(m.new.obj, m.new.prog, pin_root=m.new.pin_dir or root,
                                       verifier_log=verifier_log,
                                       log_level=1 if verifier_log is not None else 0)
    held.callback(p.fd.close)
    with lo:
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
        pins = lo.created()
    if notice:
        notice(f"the running kernel refuses freplace ({fr.detail}); attached {m.name} directly, "
               "without a dispatcher (like libxdp)")
    return PendingChange(ChangeResult(iface, ifindex, "legacy", 0, ((0, m.name, pid),),
                                      new_ids=(pid,)),
                         netns=netns, root=root, old_fd=old_fd, old_mode_flags=old_mode_flags,
                         new_fd=p.fd, new_mode_flags=MODE_FLAGS[mode], new_map_pins=pins,
                         held=held.pop_all())


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
