"""Build and read linked chains (I/O around the pure ``obj.combine``).

``build`` creates each component's maps (pins reused by name; unpinned maps carried
over by id from the old description when the object is unchanged), the frozen
description map, and loads the combined program.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

from dispatcher import safeio
from dispatcher.chain import description
from dispatcher.chain import stats as chain_stats
from dispatcher.chain.description import ChainDescription, SlotDescription
from dispatcher.chain.linked import combine
from dispatcher.chain.model import SHA_PREFIX, with_settings
from dispatcher.errors import KernelError, ObjectFileError, VerifierError
from dispatcher.kernel import bpf, loader
from dispatcher.kernel.bpffs import remove_created
from dispatcher.kernel.fd import OwnedFd
from dispatcher.obj.actions import names_to_actions
from dispatcher.obj.btf_ext import encode_core_relos, encode_func_info, encode_line_info
from dispatcher.obj.elf import read_object
from dispatcher.obj.link import referenced_maps
from dispatcher.obj.spec import MapSpec
from dispatcher.uapi import (
    BPF_F_RDONLY_PROG,
    BPF_MAP_TYPE_ARRAY,
    BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_PROG_TYPE_XDP,
    BPF_XDP,
)
from dispatcher.version import __version__

__all__ = ["BuiltChain", "build", "components_from_description", "create_description_map",
           "file_sha256"]


def file_sha256(path: str) -> str:
    """Hex prefix of the file's sha256 (identifies the object a slot was linked from);
    a device, FIFO or oversized file is an OSError, never read."""
    return safeio.file_sha256(path)[:SHA_PREFIX]


@dataclass
class BuiltChain:
    """A loaded (not yet attached) linked chain. Owns the program fd."""

    prog: OwnedFd
    combined: combine.CombinedProgram
    description: ChainDescription
    components: tuple[combine.LinkComponent, ...]
    new_pins: list[str] = field(default_factory=list)
    carried: dict[str, list[str]] = field(default_factory=dict)   # label -> maps kept by id

    def unpin_new(self) -> None:
        remove_created(self.new_pins)

    def close(self) -> None:
        self.prog.close()

    def __enter__(self) -> BuiltChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _old_slot(old: ChainDescription | None, c: combine.LinkComponent) -> SlotDescription | None:
    """The slot of the chain being rebuilt that ``c`` keeps, if it is the same object."""
    if old is None or not 0 <= c.kept_slot < len(old.slots):
        return None
    s = old.slots[c.kept_slot]
    if s.sha256 != c.sha256 or s.program != c.prog.name or not c.sha256:
        return None
    return s


def _pinned_map_id(path: str) -> int | None:
    """The id of the map pinned at ``path`` (None: no such pin, or not a map)."""
    try:
        with bpf.obj_get(path) as fd:
            return bpf.map_info(fd.fd).id
    except (KernelError, OSError):
        return None


def _open_component(c: combine.LinkComponent, pin_root: str, old: ChainDescription | None,
                    carried: list[str], lost_pins: list[str]) -> loader.LoadedObject:
    """Create (or reuse) the maps one component references. A kept component keeps the
    maps it runs with (by id), pinned ones included: when its pin is missing from the
    bpffs we see (another mount namespace's, as under ``ip netns exec``, or removed by
    someone), the chain goes on with the same map and ``lost_pins`` says so; the pin
    is not recreated (that would fork the map's state into an empty copy)."""
    spec = c.obj
    names = referenced_maps(spec, c.prog)
    prev = _old_slot(old, c)
    prev_ids = prev.map_ids if prev is not None else {}
    btf_fd = loader.load_btf(spec)
    lo = loader.LoadedObject(spec=spec, btf_fd=btf_fd, maps={})
    try:
        for m in spec.maps:
            if m.name not in names:
                continue
            mid = prev_ids.get(m.name)
            if mid is not None and m.pinning and not m.freeze:
                path = os.path.join(c.pin_dir or pin_root, m.name)
                pinned = _pinned_map_id(path)
                if pinned != mid:
                    fd = _reopen(mid, m)
                    if fd is not None:
                        lo.maps[m.name] = fd
                        carried.append(m.name)
                        lost_pins.append(
                            f"{c.label}: map {m.name} (id {mid}) is not pinned at {path} "
                            + ("(no such pin)" if pinned is None else f"(map {pinned} is)")
                            + "; the chain keeps using map " + str(mid))
                        continue
            if mid is not None and not m.pinning and not m.freeze:
                fd = _reopen(mid, m)
                if fd is not None:
                    lo.maps[m.name] = fd
                    carried.append(m.name)
                    continue
            lo.maps[m.name] = loader.create_or_reuse(spec, m, btf_fd, c.pin_dir or pin_root,
                                                      lo, None)
    except BaseException:
        lo.unpin_new()
        lo.close()
        raise
    return lo


def _reopen(map_id: int, m: MapSpec) -> OwnedFd | None:
    """The map ``map_id`` if it still exists and matches ``m``'s shape (else None)."""
    try:
        fd = bpf.map_get_fd_by_id(map_id)
    except KernelError:
        return None                      # gone: start afresh
    try:
        if loader.compatibility_diffs(m, bpf.map_info(fd.fd)):
            fd.close()
            return None
    except BaseException:
        fd.close()
        raise
    return fd


def create_description_map(desc: ChainDescription) -> OwnedFd:
    """ARRAY key 4, value JSON+NUL, max_entries 1, RDONLY_PROG, written once and frozen."""
    value = description.encode(desc)
    btf, vid = combine.description_btf(len(value))
    with bpf.btf_load(btf.encode(), subject="chain description BTF") as btf_fd:
        try:
            fd = bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, len(value), 1, flags=BPF_F_RDONLY_PROG,
                                name=combine.DESC_MAP_NAME, btf_fd=btf_fd.fd,
                                btf_key_type_id=0, btf_value_type_id=vid)
        except KernelError:
            fd = bpf.map_create(BPF_MAP_TYPE_ARRAY, 4, len(value), 1,
                                flags=BPF_F_RDONLY_PROG, name=combine.DESC_MAP_NAME)
    try:
        bpf.map_update(fd.fd, b"\0\0\0\0", value)
        bpf.map_freeze(fd.fd)
    except BaseException:
        fd.close()
        raise
    return fd


def _stats_map(comps: Sequence[combine.LinkComponent], old: ChainDescription | None
               ) -> tuple[OwnedFd, list[int]]:
    """The chain's stats map and each slot's counter index. The old chain's map is kept
    (reopened by id) so kept components continue their counts in place; see
    ``dispatcher.chain.stats`` for why this beats copying. New counters are zeroed."""
    fd = None
    if old is not None and old.stats_map:
        fd = _reopen_stats(old.stats_map)
    kept: list[int | None] = []
    for c in comps:
        prev = _old_slot(old, c) if fd is not None else None
        kept.append(prev.counter if prev is not None and prev.counter >= 0 else None)
    old_used = [s.counter for s in old.slots if s.counter >= 0] if old and fd else []
    counters = chain_stats.assign_counters(kept, old_used)
    if fd is None:
        fd = bpf.map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, chain_stats.VALUE_SIZE,
                            chain_stats.MAX_ENTRIES, name=chain_stats.MAP_NAME)
    try:
        zero = bytes(bpf.percpu_value_size(chain_stats.VALUE_SIZE))
        for k, was in zip(counters, kept, strict=True):
            if was is None:
                for a in range(chain_stats.NUM_ACTIONS):
                    bpf.map_update(fd.fd, chain_stats.key(k, a).to_bytes(4, "little"), zero)
    except BaseException:
        fd.close()
        raise
    return fd, counters


def _reopen_stats(map_id: int) -> OwnedFd | None:
    """The old chain's stats map, if it still exists and has our shape."""
    try:
        fd = bpf.map_get_fd_by_id(map_id)
    except KernelError:
        return None
    mi = bpf.map_info(fd.fd)
    if (mi.name, mi.type, mi.key_size, mi.value_size, mi.max_entries) != (
            chain_stats.MAP_NAME, BPF_MAP_TYPE_PERCPU_ARRAY, 4, chain_stats.VALUE_SIZE,
            chain_stats.MAX_ENTRIES):
        fd.close()
        return None
    return fd


_INSN_RE = re.compile(r"^(\d+): ", re.M)


def _blame(comb: combine.CombinedProgram, log: str) -> str:
    """The component holding the last instruction the verifier log mentions."""
    hits = _INSN_RE.findall(log)
    if not hits:
        return ""
    slot = comb.slot_of_insn(int(hits[-1]))
    return f" (in component {slot.label})" if slot else " (in the chain's main function)"


# Tail calls made inside a linked chain did not behave like the same component under
# freplace in our tests: on Debian's 6.1 and 6.12 the tail-called program's verdict ended the
# whole program (later slots never ran), and on 6.18 the call intermittently did not happen
# (tests/host/test_linked_features.py). Until that is understood, linked chains refuse them.


def build(comps: Sequence[combine.LinkComponent], *, pin_root: str,
          old: ChainDescription | None = None,
          verifier_log: list[str] | None = None,
          notice: Callable[[str], None] | None = None, stats: bool = False,
          inline: bool = True) -> BuiltChain:
    """Check, create maps, link and load a chain of ``comps`` (given in slot order).
    ``stats``: main counts each component's verdicts (``dispatcher.chain.stats``).
    ``inline``: entries are inlined into main where ``combine.inline_plan`` allows."""
    mode, checks = combine.check_components(comps, stats)   # before touching the kernel
    if any(ck.uses_tail_calls for ck in checks):
        bad = next(c for c, ck in zip(comps, checks, strict=True) if ck.uses_tail_calls)
        raise combine.LinkError(
            f"{bad.where()}: uses tail calls, which linked chains refuse: a tail call made "
            "inside a linked chain does not reliably return into the chain (on 6.1 and 6.12 "
            "it ended the whole program), so the chain would not behave like the same "
            "programs under freplace; use --dispatch freplace where the kernel allows it")
    if any(c.obj.btf_ext and c.obj.btf_ext.core_relos for c in comps) and \
            loader.kernel_version() < (5, 17):
        bad = next(c for c in comps if c.obj.btf_ext and c.obj.btf_ext.core_relos)
        raise combine.LinkError(f"{bad.where()}: uses CO-RE relocations, which xdp-dispatch "
                                "hands to the kernel; this needs Linux >= 5.17")
    new_pins: list[str] = []
    carried: dict[str, list[str]] = {}
    lost: list[str] = []
    with ExitStack() as stack:
        los = []
        try:
            for c in comps:
                keep: list[str] = []
                lo = _open_component(c, pin_root, old, keep, lost)
                stack.callback(lo.close)
                new_pins.extend(lo.created())
                los.append(lo)
                if keep:
                    carried[c.label] = keep
            map_ids = [{n: bpf.map_info(fd.fd).id for n, fd in lo.maps.items()} for lo in los]
            link = None
            stats_id = 0
            if stats:
                sfd, counters = _stats_map(comps, old)
                stack.callback(sfd.close)
                stats_id = bpf.map_info(sfd.fd).id
                link = combine.StatsLink(sfd.fd, tuple(counters))
            reasons = combine.inline_plan(checks, stats, inline)
            try:
                doc, comb, prog = _link_and_load(comps, los, map_ids, mode, stats_id, link,
                                                 reasons, inline, stack, verifier_log)
            except VerifierError as e:
                if all(reasons):
                    raise
                # the same components as calls: if the kernel takes that, the inlined
                # form is what it refused; say so per slot (a real error fails both ways)
                why = f"the kernel refused the inlined chain ({_last_line(e.log)})"
                reasons = tuple(r or why for r in reasons)
                doc, comb, prog = _link_and_load(comps, los, map_ids, mode, stats_id, link,
                                                 reasons, inline, stack, verifier_log)
        except BaseException:
            remove_created(new_pins)
            raise
    if notice:
        for line in lost:
            notice(line)
    return BuiltChain(prog, comb, doc, tuple(comps), new_pins, carried)


def _link_and_load(comps: Sequence[combine.LinkComponent], los: Sequence[loader.LoadedObject],
                   map_ids: Sequence[dict[str, int]], mode: str, stats_id: int,
                   link: combine.StatsLink | None, reasons: Sequence[str], inline: bool,
                   stack: ExitStack, verifier_log: list[str] | None
                   ) -> tuple[ChainDescription, combine.CombinedProgram, OwnedFd]:
    """Describe, link (entries inlined as ``reasons`` allows) and load the chain."""
    doc = combine.description(comps, map_ids, mode, __version__, stats_id,
                              link.counters if link else (), reasons, inline)
    desc = create_description_map(doc)
    stack.callback(desc.close)
    comb = combine.combine(comps, [{n: fd.fd for n, fd in lo.maps.items()} for lo in los],
                           desc.fd, link, inline=inline, not_inlined=reasons)
    return doc, comb, _load(comb, verifier_log)


_LOG_STATS = ("processed ", "verification time", "stack depth")


def _last_line(log: str) -> str:
    """The verifier's last word, without its closing statistics."""
    lines = [ln.strip() for ln in log.splitlines()
             if ln.strip() and not ln.strip().startswith(_LOG_STATS)]
    return lines[-1] if lines else "no verifier log"


def _load(comb: combine.CombinedProgram, verifier_log: list[str] | None) -> OwnedFd:
    with ExitStack() as stack:
        btf_fd = None
        if comb.btf is not None:
            btf_fd = bpf.btf_load(comb.btf.encode(), subject="linked chain BTF")
            stack.callback(btf_fd.close)
        try:
            return bpf.prog_load(
                BPF_PROG_TYPE_XDP, comb.insns, comb.license, name=comb.name,
                prog_flags=comb.prog_flags, expected_attach_type=BPF_XDP,
                btf_fd=btf_fd.fd if btf_fd is not None else None,
                func_info=encode_func_info(comb.func_info) if btf_fd is not None else b"",
                line_info=encode_line_info(comb.line_info) if btf_fd is not None else b"",
                core_relos=encode_core_relos(comb.core_relos) if btf_fd is not None else b"",
                log_level=1 if verifier_log is not None else 0, verifier_log=verifier_log)
        except VerifierError as e:
            subject = f"linked chain ({', '.join(s.label for s in comb.slots)})" + _blame(comb, e.log)
            raise VerifierError(e.op, e.errno, subject, e.log, hint=e.hint) from None
        except KernelError as e:
            hint = e.hint
            if e.errno == errno.E2BIG:
                hint = "the chain is too large for one program; split it or load fewer programs"
            raise KernelError(e.op, e.errno, subject="linked chain", detail=e.detail,
                              hint=hint) from None


def components_from_description(desc: ChainDescription, *, replaced: set[int] | None = None
                                ) -> list[combine.LinkComponent]:
    """Re-read the objects of a description's slots (for a rebuild). ``replaced`` slots are
    skipped. Errors name the slot when an object vanished or changed."""
    out = []
    for i, s in enumerate(desc.slots):
        if replaced and i in replaced:
            continue
        try:
            sha = file_sha256(s.path)
        except OSError as e:
            raise ObjectFileError(
                f"linked chain slot {i} ({s.label}): its object {s.path} cannot be read "
                f"({e.strerror}); the chain cannot be rebuilt without it",
                hint="restore the file, or unload this component or the whole chain") from None
        if sha != s.sha256:
            raise ObjectFileError(
                f"linked chain slot {i} ({s.label}): {s.path} changed since it was linked "
                f"(sha256 {s.sha256} -> {sha})",
                hint="load the new version explicitly (unload the old one), or restore the file")
        obj = read_object(s.path)
        pin_dir = s.pin_dir
        if s.settings:        # redo a config entry's load-time overrides (globals, pins, frags)
            obj, prog, pins = with_settings(obj, s.program, s.settings)
            pin_dir = pins or pin_dir
        else:
            prog = obj.program(name=s.program)
        out.append(combine.LinkComponent(
            obj, prog, s.label, s.priority, names_to_actions(list(s.actions)), sha, kept_slot=i,
            pin_dir=pin_dir, settings=s.settings, source=s.source))
    return out
