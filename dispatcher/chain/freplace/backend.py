"""The freplace back-end: libxdp's multi-dispatch protocol.

Load a fresh dispatcher for the planned chain -> load new components / re-attach kept
ones as extensions -> (under the protocol lock) pin them -> swap -> the replaced
dispatcher's pins go on commit. Any failure unwinds everything this attempt created, so
the interface keeps exactly the programs it had. Where the kernel refuses freplace, a
single program is attached directly, as libxdp does.
"""

from __future__ import annotations

import errno
import os
from contextlib import AbstractContextManager, ExitStack, nullcontext

from dispatcher import failpoints
from dispatcher.chain import protocol
from dispatcher.chain.backend import Attempt
from dispatcher.chain.freplace import plan as planning
from dispatcher.chain.model import ChangeRequest, ChangeResult
from dispatcher.chain.pending import PendingChange, protocol_lock
from dispatcher.chain.state import InterfaceState
from dispatcher.errors import KernelError, NotSupportedError, XdpDispatchError
from dispatcher.kernel import bpf, netlink, probes
from dispatcher.kernel import netns as netns_mod
from dispatcher.kernel.bpffs import remove_created, remove_pin_dir
from dispatcher.kernel.fd import OwnedFd
from dispatcher.uapi import BPF_F_XDP_HAS_FRAGS


class FreplaceBackend:
    kind = "freplace"

    def plan(self, st: InterfaceState, req: ChangeRequest) -> planning.FreplacePlan:
        def probe() -> tuple[bool, str]:
            from dispatcher.chain.freplace import program  # loads our dispatcher: on demand

            fr = program.freplace()
            return fr.supported, fr.detail

        def host_version() -> int:
            from dispatcher.chain.freplace import program  # reads libxdp's object: on demand

            return program.host_dispatcher_version()
        return planning.plan(st, req, probe, host_version)

    def execute(self, plan: planning.FreplacePlan, at: Attempt) -> PendingChange:
        pending = self._execute(plan, at)
        _count_after(pending, at)
        return pending

    def _execute(self, plan: planning.FreplacePlan, at: Attempt) -> PendingChange:
        req = at.req
        old_fd = at.observed.main_fd
        if not plan.members:
            if old_fd is None:
                return _result(at, ChangeResult(req.iface, at.ifindex, "none", 0, ()))
            at.swap(None, old_fd, at.old_mode_flags)
            return _result(at, ChangeResult(req.iface, at.ifindex, "none", 0, ()),
                           old_fd=old_fd, old_pin_dir=plan.old_pin_dir)
        if plan.direct:
            return _direct(plan, at)
        return _dispatcher(plan, at)


def _count_after(pending: PendingChange, at: Attempt) -> None:
    """Once the change is kept, the chain's components are counted as asked (else as the
    interface was; a new freplace chain does not count), and the counters of components
    that left are removed (``counters.reconcile``)."""
    from dispatcher.chain import fexit as counters

    req, result = at.req, pending.result
    if req.stats is None and not os.path.isdir(counters.stats_dir(req.root)):
        return                       # never counted here: nothing to keep or remove
    setting = req.stats or counters.mode(req.root, counters.netns_id(req.netns), at.ifindex)
    if result.kind != "dispatcher":
        setting = "off"              # no chain (or one program attached directly)

    def run() -> None:
        with protocol_lock(req.root):
            counters.reconcile_attached(req.root, req.netns, at.ifindex, setting,
                                        [pid for _slot, _name, pid in result.programs])
    pending.on_commit.append(run)


def _result(at: Attempt, result: ChangeResult, **kw: object) -> PendingChange:
    held = at.held.pop_all() if kw else None
    return PendingChange(result, netns=at.req.netns, root=at.req.root,
                         old_mode_flags=at.old_mode_flags, new_mode_flags=at.new_mode_flags,
                         held=held, **kw)  # type: ignore[arg-type]


def _in_netns(netns: str | None) -> AbstractContextManager[None]:
    """The calling thread inside ``netns`` (None: where it is)."""
    if netns is None:
        return nullcontext()
    return netns_mod.entered(netlink.netns_path(netns))


def _frags_ok() -> bool:
    try:
        return probes.frags().supported
    except XdpDispatchError:
        return False


def _dispatcher(plan: planning.FreplacePlan, at: Attempt) -> PendingChange:
    # the loader and the ELF reader: only to build a dispatcher (not to empty a chain)
    from dispatcher.chain.freplace import program

    req, members = at.req, plan.members
    with ExitStack() as stack:            # what this attempt creates: closed or unwound
        want_frags = all(m.frags for m in members) and _frags_ok()
        with _in_netns(req.netns if plan.devbound else None):  # prog_ifindex is per netns
            disp = program.load_dispatcher([m.priority for m in members],
                                           [m.actions for m in members],
                                           [BPF_F_XDP_HAS_FRAGS if m.frags else 0
                                            for m in members], frags=want_frags,
                                           version=plan.version, devbound=plan.devbound,
                                           ifindex=at.ifindex)
        stack.callback(disp.close)
        failpoints.hit("dispatcher_loaded", req.iface)
        new_map_pins: list[str] = []
        swapped = False

        def cleanup_map_pins() -> None:
            if not swapped:
                remove_created(new_map_pins)
        stack.callback(cleanup_map_pins)

        slots: list[tuple[int, OwnedFd, str]] = []
        for i, m in enumerate(members):
            if m.new >= 0:
                n = req.add[m.new]
                p, pins = program.load_component(n.obj, n.prog, disp, i,
                                                 pin_root=n.pin_dir or req.root,
                                                 verifier_log=at.verifier_log)
                new_map_pins.extend(pins)
                stack.callback(p.close)
                prog_fd = p.fd.fd
            else:
                prog_fd = at.observed.component_fds[m.existing].fd
            try:
                link = program.link_component(prog_fd, disp, i)
            except KernelError as e:
                if e.errno == errno.EINVAL and m.new < 0:
                    raise NotSupportedError(
                        "BPF_LINK_CREATE", e.errno, subject=f"{req.iface}: {m.name}",
                        detail="the kernel cannot re-attach an extension to a new dispatcher "
                               "(needs Linux >= 5.10)") from None
                raise
            stack.callback(link.close)
            slots.append((prog_fd, link, m.name))
        failpoints.hit("components_linked", req.iface)

        disp_id = disp.id()
        pdir = protocol.pin_dir(req.root, at.ifindex, disp_id)
        ids = []
        new_ids = [0] * len(req.add)
        for i, (prog_fd, _link, name) in enumerate(slots):
            pid = bpf.prog_info(prog_fd).id
            ids.append((i, name, pid))
            if members[i].new >= 0:
                new_ids[members[i].new] = pid
        result = ChangeResult(req.iface, at.ifindex, "dispatcher", disp_id, tuple(ids),
                              new_ids=tuple(new_ids))
        new_fd = disp.prog.fd.dup()        # held: a rollback expects it to be the attached one
        at.held.callback(new_fd.close)
        with protocol_lock(req.root):      # from pinning to the swap (see pending.py)
            os.mkdir(pdir, 0o700)
            try:
                for i, (prog_fd, link, _name) in enumerate(slots):
                    bpf.obj_pin(link.fd, f"{pdir}/prog{i}-link")
                    bpf.obj_pin(prog_fd, f"{pdir}/prog{i}-prog")
                failpoints.hit("pinned", req.iface)
                at.about_to_swap(result)
                at.swap(disp.fd, at.observed.main_fd, at.new_mode_flags)
            except BaseException:
                remove_pin_dir(pdir)
                raise
        swapped = True
        return _result(at, result, old_fd=at.observed.main_fd, new_fd=new_fd,
                       old_pin_dir=plan.old_pin_dir, new_pin_dir=pdir,
                       new_map_pins=new_map_pins)


def _direct(plan: planning.FreplacePlan, at: Attempt) -> PendingChange:
    from dispatcher.kernel import loader  # the ELF program loader: only to attach one

    req = at.req
    n = req.add[plan.members[0].new]
    lo, p = loader.load_object_program(n.obj, n.prog, pin_root=n.pin_dir or req.root,
                                       verifier_log=at.verifier_log,
                                       log_level=1 if at.verifier_log is not None else 0)
    at.held.callback(p.fd.close)
    pid = p.info().id
    result = ChangeResult(req.iface, at.ifindex, "legacy", 0, ((0, n.prog.name, pid),),
                          new_ids=(pid,))
    with lo:
        try:
            at.about_to_swap(result)
            at.swap(p.fd.fd, at.observed.main_fd, at.new_mode_flags)
        except BaseException:
            lo.unpin_new()
            raise
        pins = lo.created()
    if at.notice:
        at.notice(f"the running kernel refuses freplace ({plan.probe_detail}); attached "
                  f"{n.prog.name} directly, without a dispatcher (like libxdp)")
    return _result(at, result, old_fd=at.observed.main_fd, new_fd=p.fd, new_map_pins=pins)
