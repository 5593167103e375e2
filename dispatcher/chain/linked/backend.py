"""The linked back-end: one XDP program that calls every component (for kernels that
refuse freplace, or when asked for).

The whole chain is rebuilt on every change: kept components are relinked from the object
files recorded in the description (their unpinned maps carried over by id, pinned maps
reused by name), new ones added, then one swap with netlink REPLACE + the expected old fd.
"""

from __future__ import annotations

import os

from dispatcher import failpoints
from dispatcher.chain.backend import Attempt
from dispatcher.chain.linked import plan as planning
from dispatcher.chain.model import ChangeRequest, ChangeResult
from dispatcher.chain.pending import PendingChange, protocol_lock
from dispatcher.chain.state import InterfaceState
from dispatcher.kernel import bpf
from dispatcher.record import replace


class LinkedBackend:
    kind = "linked"

    def plan(self, st: InterfaceState, req: ChangeRequest) -> planning.LinkedPlan:
        return planning.plan(st, req)

    def execute(self, plan: planning.LinkedPlan, at: Attempt) -> PendingChange:
        req = at.req
        old_fd = at.observed.main_fd
        if plan.empty:
            result = ChangeResult(req.iface, at.ifindex, "none", 0, ())
            if old_fd is None:
                return PendingChange(result, netns=req.netns, root=req.root)
            at.swap(None, old_fd, at.old_mode_flags)
            return PendingChange(result, netns=req.netns, root=req.root, old_fd=old_fd,
                                 old_mode_flags=at.old_mode_flags, held=at.held.pop_all())
        # the linker and its loader: removing the whole chain needs neither
        from dispatcher.chain.linked import build, combine

        kept = []
        if plan.description is not None and not plan.remove_all:
            kept = build.components_from_description(plan.description, replaced=set(plan.removed))
        new = []
        for n, slot in zip(req.add, plan.reuse, strict=True):
            path = os.path.abspath(n.obj.path)
            new.append(combine.LinkComponent(
                replace(n.obj, path=path), n.prog, n.label or n.prog.name, n.priority,
                n.actions, n.sha256 or build.file_sha256(path), kept_slot=slot,
                pin_dir=n.pin_dir or "", settings=n.settings, source=n.source))
        comps = combine.sort_components(kept + new)
        with protocol_lock(req.root):      # from creating pins to the swap (see pending.py)
            built = build.build(comps, pin_root=req.root, old=plan.description,
                                verifier_log=at.verifier_log, notice=at.notice,
                                stats=plan.stats, inline=plan.inline)
            at.held.callback(built.close)
            try:
                failpoints.hit("linked_built", req.iface)
                at.swap(built.prog.fd, old_fd, at.new_mode_flags)
            except BaseException:
                built.unpin_new()
                raise
        pid = bpf.prog_info(built.prog.fd).id
        st = at.observed.state
        if at.notice and st.kind in ("none", "legacy") and len(comps) > 1:
            at.notice(f"{req.iface}: linked {len(comps)} programs into one XDP program "
                      f"(id {pid}; dispatch mode linked)")
        return PendingChange(
            ChangeResult(req.iface, at.ifindex, "linked", pid,
                         tuple((i, c.label, 0) for i, c in enumerate(comps)),
                         new_ids=tuple(0 for _ in req.add)),
            netns=req.netns, root=req.root, old_fd=old_fd, old_mode_flags=at.old_mode_flags,
            new_fd=built.prog, new_mode_flags=at.new_mode_flags, new_map_pins=built.new_pins,
            held=at.held.pop_all())
