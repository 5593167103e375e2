"""Change an interface's LINKED chain: read description -> rebuild -> one atomic swap.

Used by ``chain.begin`` when the dispatch mode is ``linked`` (asked for, or ``auto`` on a
kernel that refuses freplace), or when the attached program is a linked chain. The whole
chain is rebuilt on every change: kept components are relinked from the object files
recorded in the description (their unpinned maps carried over by id, pinned maps
reused by name), then swapped in with netlink REPLACE + the expected old fd. A lost race
(EEXIST/EBUSY) starts over from observation. Runs under the bpffs ``xdp`` lock the
freplace path uses.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING

from dispatcher.chain import description, observe
from dispatcher.errors import ConflictError, ForeignStateError, NetlinkOpError, UsageError
from dispatcher.kernel import netlink
from dispatcher.kernel.bpffs import DirLock
from dispatcher.record import replace

if TYPE_CHECKING:
    from dispatcher.chain.linked import combine
    from dispatcher.chain.router import NewProgram, PendingChange

DISPATCH_MODES = description.DISPATCH_MODES
attached_description = description.attached_description


def begin(iface: str, ifindex: int, *, mode: str, add: list[NewProgram], remove_ids: set[int],
          remove_names: set[str], remove_all: bool, netns: str | None, root: str,
          force: bool, notice: Callable[[str], None] | None,
          verifier_log: list[str] | None, max_retries: int = 10) -> PendingChange:
    from dispatcher.chain.router import ChangeResult, PendingChange, _Race, state_dir

    last: Exception | None = None
    for attempt in range(1, max_retries + 1):
        try:
            with DirLock(state_dir(root)):
                p = _attempt(iface, ifindex, mode, add, remove_ids, remove_names, remove_all,
                             netns, root, force, notice, verifier_log)
            r = p.result
            p.result = ChangeResult(r.iface, r.ifindex, r.kind, r.dispatcher_id, r.programs,
                                    attempt, r.new_ids)
            assert isinstance(p, PendingChange)
            return p
        except _Race as e:
            last = e
            time.sleep((1 << attempt) / 1e6)
    raise ConflictError(f"{iface}: the XDP program changed under us {max_retries} times; "
                        f"giving up ({last})")


def _attempt(iface: str, ifindex: int, mode: str, add: list[NewProgram], remove_ids: set[int],
             remove_names: set[str], remove_all: bool, netns: str | None, root: str,
             force: bool, notice: Callable[[str], None] | None,
             verifier_log: list[str] | None) -> PendingChange:
    from dispatcher.chain.router import (
        MODE_FLAGS,
        ChangeResult,
        PendingChange,
        _fault,
        _Race,
        _swap,
    )

    if add or not remove_all:
        # the linker and loader; removing the whole chain needs neither
        from dispatcher.chain.linked import (
            build,  # noqa: F811
            combine,  # noqa: F811
        )
    xs = netlink.read_xdp(ifindex, netns=netns)
    with ExitStack() as held:
        old = observe.observe(xs, root, keep_open=True)
        held.callback(old.close)
        st = old.state
        old_fd = old.main_fd
        old_flags = MODE_FLAGS.get(st.mode or mode, MODE_FLAGS[mode])
        main_id = st.main.id if st.main else 0
        if main_id and main_id in remove_ids:
            remove_all = True                       # the chain's own id: the whole chain
        desc: dict[str, object] | None = None
        if st.kind == "linked":
            desc = st.description
            if st.mode and st.mode != mode and not remove_all:
                raise UsageError(f"{iface}: the linked chain is attached in {st.mode} mode, "
                                 f"not {mode}", hint=f"pass -m {st.mode}")
        elif st.kind == "dispatcher" and not remove_all:
            raise ForeignStateError(
                f"{iface} has a freplace dispatcher chain (id {main_id}); it cannot be turned "
                "into a linked chain in place",
                hint=f"unload it first (xdp-dispatch unload {iface} --all), or use "
                     "--dispatch freplace")
        elif st.kind == "legacy" and not (remove_all or force):
            raise ForeignStateError(
                f"{iface} has a program that is not a dispatcher attached "
                f"({st.main.full_name if st.main else '?'}, id {main_id})",
                hint=f"remove it first (xdp-dispatch unload {iface} --all), or pass --force to "
                     "replace it")
        if st.kind == "none" and (remove_ids or remove_names):
            raise UsageError(f"{iface}: no XDP program is attached")
        bad_ids = remove_ids - {main_id}
        if bad_ids and st.kind == "linked":
            raise UsageError(
                f"{iface}: the linked chain's components have no program ids of their own "
                f"(the chain is program {main_id})",
                hint=f"remove a component by name: xdp-dispatch unload {iface} -n NAME")

        removed: set[int] = set()
        kept: list[combine.LinkComponent] = []
        if desc is not None and not remove_all:
            slots = desc.get("slots")
            labels = [str(s.get("label")) for s in slots] if isinstance(slots, list) else []
            for rn in remove_names:
                hit = {i for i, lab in enumerate(labels) if lab == rn}
                if not hit:
                    raise UsageError(f"{iface}: no component named '{rn}' in the linked chain "
                                     f"(components: {', '.join(labels) or 'none'})")
                removed |= hit
            kept = build.components_from_description(desc, replaced=removed)
        elif remove_names and st.kind != "linked":
            raise UsageError(f"{iface}: removing by name (-n) works on linked chains; "
                             f"this interface has kind {st.kind}")
        new = []
        old_slots = desc.get("slots") if desc is not None else None
        reusable = sorted(removed) if isinstance(old_slots, list) else []
        for n in add:
            path = os.path.abspath(n.obj.path)
            c = combine.LinkComponent(
                replace(n.obj, path=path), n.prog, n.label or n.prog.name, n.priority, n.actions,
                build.file_sha256(path), pin_dir=n.pin_dir or "", settings=n.settings,
                source=n.source)
            # the same object re-added in place of a removed slot (a config update): keep
            # its unpinned maps, carried over by id like a kept component's
            for i in reusable:
                assert isinstance(old_slots, list)
                s = old_slots[i]
                if (s.get("label"), s.get("sha256"), s.get("program"), s.get("settings", "")) \
                        == (c.label, c.sha256, c.prog.name, c.settings):
                    c = replace(c, kept_slot=i)
                    reusable.remove(i)
                    break
            new.append(c)
        comps = combine.sort_components(kept + new) if kept or new else []

        if not comps:
            if old_fd is None:
                return PendingChange(ChangeResult(iface, ifindex, "none", 0, ()), netns=netns,
                                     root=root)
            _swap(ifindex, None, old_fd, old_flags, netns, iface)
            return PendingChange(ChangeResult(iface, ifindex, "none", 0, ()), netns=netns,
                                 root=root, old_fd=old_fd, old_mode_flags=old_flags,
                                 held=held.pop_all())

        built = build.build(comps, pin_root=root, old=desc, verifier_log=verifier_log)
        held.callback(built.close)
        try:
            _fault("linked_built", iface)
            _swap(ifindex, built.prog.fd, old_fd, MODE_FLAGS[mode], netns, iface)
        except NetlinkOpError as e:
            built.unpin_new()
            if e.errno in (errno.EEXIST, errno.EBUSY) and (old_fd is not None
                                                           or e.errno == errno.EBUSY):
                raise _Race(e.message) from None
            raise
        except BaseException:
            built.unpin_new()
            raise
        from dispatcher.kernel import bpf

        pid = bpf.prog_info(built.prog.fd).id
        progs = tuple((i, c.label, 0) for i, c in enumerate(comps))
        if notice and st.kind in ("none", "legacy") and len(comps) > 1:
            notice(f"{iface}: linked {len(comps)} programs into one XDP program "
                   f"(id {pid}; dispatch mode linked)")
        return PendingChange(
            ChangeResult(iface, ifindex, "linked", pid, progs, new_ids=tuple(0 for _ in add)),
            netns=netns, root=root, old_fd=old_fd, old_mode_flags=old_flags,
            new_fd=built.prog, new_mode_flags=MODE_FLAGS[mode], new_map_pins=built.new_pins,
            held=held.pop_all())
