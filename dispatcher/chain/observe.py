"""Gather what is attached to interfaces: netlink, program/map info, dispatcher pins.

I/O only; interpretation lives in ``state.py``. Programs, maps and pins are
opened briefly and closed before returning, except in ``open_chain`` whose
caller owns the returned fds (used by changes).
"""

from __future__ import annotations

import errno
import os
from contextlib import ExitStack
from typing import TYPE_CHECKING

from dispatcher.chain import protocol
from dispatcher.chain.state import (
    Component,
    DispatcherInfo,
    InterfaceState,
    MapFacts,
    ProgFacts,
    components_from_config,
    components_from_description,
    recognise,
)
from dispatcher.errors import KernelError, XdpDispatchError
from dispatcher.kernel import bpf, netlink
from dispatcher.kernel.fd import OwnedFd
from dispatcher.record import replace
from dispatcher.uapi import BPF_F_RDONLY_PROG

if TYPE_CHECKING:
    from dispatcher.chain.description import ChainDescription
    from dispatcher.obj.btf import Btf


def _btf_of(btf_id: int) -> Btf | None:
    if not btf_id:
        return None
    from dispatcher.obj.btf import Btf, BtfFormatError  # only for long names and dispatchers

    try:
        with bpf.btf_get_fd_by_id(btf_id) as fd:
            return Btf.parse(bpf.btf_data(fd.fd))
    except (KernelError, BtfFormatError):
        return None


def _func_names(btf: Btf | None) -> list[str]:
    if btf is None:
        return []
    from dispatcher.obj.btf import BtfKind  # only for long names and dispatchers

    return [t.name for t in btf.types if t.kind == BtfKind.FUNC]


def prog_facts(fd: int) -> ProgFacts:
    """Kernel facts of a program; its BTF is read only to expand a truncated name."""
    info = bpf.prog_info(fd)
    full = info.name
    if len(info.name) >= 15:
        full = protocol.expand_name(info.name, _func_names(_btf_of(info.btf_id)))
    return ProgFacts(id=info.id, name=info.name, full_name=full, tag=info.tag_hex,
                     btf_id=info.btf_id, map_ids=info.map_ids, load_time=info.load_time,
                     xlated_insns=info.xlated_insn_cnt, prog_type=info.type)


def _btf_version(main: ProgFacts, cfg_map: MapFacts | None) -> int:
    """The BTF marker's dispatcher version, read only when the config map has no magic
    byte (v1): ``protocol.decode_config`` consults it in no other case."""
    value = cfg_map.value if cfg_map is not None else None
    if (main.name != protocol.DISPATCHER_NAME or not main.btf_id or value is None
            or (len(value) >= 2 and value[0] == protocol.MAGIC)):
        return 0
    btf = _btf_of(main.btf_id)
    if btf is None:
        return 0
    from dispatcher.obj.metadata import dispatcher_version  # only for dispatchers

    return dispatcher_version(btf)


def _map_facts(map_id: int) -> MapFacts | None:
    try:
        with bpf.map_get_fd_by_id(map_id) as fd:
            mi = bpf.map_info(fd.fd)
            value = None
            if mi.key_size == 4 and mi.max_entries == 1:
                value = bpf.map_lookup(fd.fd, b"\0\0\0\0", mi.value_size)
            return MapFacts(mi.id, mi.key_size, mi.value_size, mi.max_entries, mi.map_flags, value)
    except KernelError:
        return None


class OpenChain:
    """An interface's chain with fds held open, for a change. Caller closes it."""

    def __init__(self, state: InterfaceState, main_fd: OwnedFd | None = None,
                 component_fds: list[OwnedFd] | None = None,
                 stack: ExitStack | None = None) -> None:
        self.state = state
        self.main_fd = main_fd
        self.component_fds: list[OwnedFd] = [] if component_fds is None else component_fds
        self.stack = ExitStack() if stack is None else stack

    def close(self) -> None:
        self.stack.close()

    def __enter__(self) -> OpenChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_interface(xs: netlink.XdpState, root: str | None, keep_open: bool = False) -> OpenChain:
    """Observe one interface. With ``keep_open``, the main program and component fds stay open."""
    chain = OpenChain(InterfaceState(xs.ifname, xs.ifindex, None, "none"))
    try:
        chain.state = _read(xs, root, chain, keep_open)
    except BaseException:
        chain.close()
        raise
    return chain


def _mode(xs: netlink.XdpState) -> str | None:
    if xs.drv_prog_id:
        return "native"
    if xs.skb_prog_id:
        return "skb"
    if xs.hw_prog_id:
        return "hw"
    return None


def _read(xs: netlink.XdpState, root: str | None, chain: OpenChain, keep: bool) -> InterfaceState:
    hw = None
    if xs.hw_prog_id:
        try:
            with bpf.prog_get_fd_by_id(xs.hw_prog_id) as fd:
                hw = prog_facts(fd.fd)
        except KernelError:
            hw = None
    main_id = xs.drv_prog_id or xs.skb_prog_id
    base = InterfaceState(xs.ifname, xs.ifindex, _mode(xs), "none", hw=hw)
    if not main_id:
        return base
    try:
        fd = bpf.prog_get_fd_by_id(main_id)
    except KernelError as e:
        if e.errno == errno.ENOENT:
            raise _Vanished() from None
        raise
    chain.stack.callback(fd.close)
    if keep:
        chain.main_fd = fd
    main = prog_facts(fd.fd)
    cfg_map = _map_facts(main.map_ids[0]) if len(main.map_ids) == 1 else None
    rec = recognise(main, cfg_map, _btf_version(main, cfg_map))
    if not rec.is_dispatcher:
        desc = read_description(fd.fd) if main.map_ids else None
        if desc is not None:
            disp = DispatcherInfo(id=main.id, version=desc.version, frags=desc.frags,
                                  name=main.full_name, tag=main.tag)
            return InterfaceState(xs.ifname, xs.ifindex, base.mode, "linked", main=main, hw=hw,
                                  dispatcher=disp, programs=components_from_description(desc),
                                  description=desc)
        return InterfaceState(xs.ifname, xs.ifindex, base.mode, "legacy", main=main, hw=hw,
                              problems=(rec.reason,) if rec.hard_error else ())
    cfg = rec.config
    assert cfg is not None
    pdir = protocol.pin_dir(root, xs.ifindex, main.id) if root else ""
    disp = DispatcherInfo(id=main.id, version=cfg.version, frags=cfg.is_xdp_frags, tag=main.tag,
                          pin_dir=pdir, devbound=cfg.is_xdp_devbound)
    problems: list[str] = []
    if cfg.version not in protocol.WRITABLE_VERSIONS:
        problems.append(f"dispatcher version {cfg.version} is not one this tool writes "
                        f"({' and '.join(map(str, protocol.WRITABLE_VERSIONS))}); it can be "
                        f"read and removed, or changed with xdp-dispatch upgrade {xs.ifname} "
                        f"--dispatcher-version {protocol.VERSION}")
    from dispatcher.kernel import packet_changes  # only where a dispatcher is attached

    progs: list[ProgFacts | None] = []
    if not root:
        problems.append("no bpffs: the dispatcher's component pins cannot be read")
    elif not os.path.isdir(pdir):
        problems.append(f"pin directory {pdir} is missing")
    else:
        try:
            pkt_calls = packet_changes.calls()
        except KernelError:          # the probe refused: no component says whether it does
            pkt_calls = frozenset()
        for slot in range(cfg.num_progs_enabled):
            path = f"{pdir}/prog{slot}-prog"
            try:
                pfd = bpf.obj_get(path)
            except KernelError:
                progs.append(None)
                continue
            chain.stack.callback(pfd.close)
            if keep:
                chain.component_fds.append(pfd)
            facts = prog_facts(pfd.fd)
            if pkt_calls:
                try:
                    changes: bool | None = packet_changes.changes_packets(pfd.fd, pkt_calls)
                except KernelError:
                    changes = None
                facts = replace(facts, changes_packets=changes)
            progs.append(facts)
    comps: tuple[Component, ...] = ()
    if progs or not problems:
        comps, missing = components_from_config(cfg, progs)
        problems.extend(missing)
    return InterfaceState(xs.ifname, xs.ifindex, base.mode, "dispatcher", main=main, hw=hw,
                          dispatcher=disp, config=cfg, programs=comps, problems=tuple(problems),
                          packet_check=packet_changes.kernel_checks())


def read_description(prog_fd: int) -> ChainDescription | None:
    """The description of the linked chain ``prog_fd`` is, or None."""
    from dispatcher.chain import description  # json: only when a plain program is attached

    info = bpf.prog_info(prog_fd)
    if not info.map_ids:
        return None
    try:
        with bpf.map_get_fd_by_id(info.map_ids[0]) as fd:
            mi = bpf.map_info(fd.fd)
            if (mi.name != description.DESC_MAP_NAME or mi.key_size != 4
                    or mi.max_entries != 1 or not mi.map_flags & BPF_F_RDONLY_PROG):
                return None
            value = bpf.map_lookup(fd.fd, b"\0\0\0\0", mi.value_size)
    except KernelError:
        return None
    return None if value is None else description.parse(value)


def read_counters(map_id: int, counters: list[int]
                  ) -> dict[int, tuple[tuple[int, int], ...]]:
    """A linked chain's stats map: per counter index, (packets, bytes) per action, summed
    over CPUs (``dispatcher.chain.stats``), read in one batch. Empty if the map is gone."""
    from dispatcher.chain import stats  # only for chains with stats

    size = bpf.percpu_value_size(stats.VALUE_SIZE)
    try:
        with bpf.map_get_fd_by_id(map_id) as fd:
            keys, values, n = bpf.map_lookup_batch(fd.fd, 4, size, stats.MAX_ENTRIES)
    except KernelError:
        return {}
    cells = {int.from_bytes(keys[4 * i:4 * i + 4], "little"):
             stats.sum_percpu(values[size * i:size * (i + 1)]) for i in range(n)}
    return {k: tuple(cells.get(stats.key(k, a), (0, 0)) for a in range(stats.NUM_ACTIONS))
            for k in counters if k >= 0}


class _Vanished(Exception):
    """The program disappeared between the netlink query and opening it."""


def observe(xs: netlink.XdpState, root: str | None, keep_open: bool = False,
            retries: int = 10) -> OpenChain:
    """``read_interface`` with libxdp's retry when the program vanishes mid-read."""
    for _ in range(retries):
        try:
            return read_interface(xs, root, keep_open)
        except _Vanished:
            xs = netlink.read_xdp(xs.ifindex)
    raise XdpDispatchError(f"{xs.ifname}: the attached program keeps changing; try again")


def with_packets(st: InterfaceState, netns: str | None = None, root: str | None = None
                 ) -> InterfaceState:
    """``st`` with each component's packet count, when its chain counts (a linked chain's
    stats map; a freplace chain's fexit counters under ``root``)."""
    if st.kind == "dispatcher" and root:
        from dispatcher.chain import fexit as counters  # only where a dispatcher is attached

        _setting, got = counters.read(root, netns, st.ifindex, [c.id for c in st.programs])
        if not got:
            return st
        return replace(st, programs=tuple(
            replace(c, packets=sum(p for p, _b in got[c.id][0])) if c.id in got else c
            for c in st.programs))
    desc = st.description
    if desc is None or not desc.stats_map:
        return st
    counts = read_counters(desc.stats_map, [s.counter for s in desc.slots])
    return replace(st, programs=tuple(
        replace(c, packets=sum(p for p, _b in counts.get(s.counter, ())))
        for c, s in zip(st.programs, desc.slots, strict=True)))


def status(iface: str | None = None, netns: str | None = None,
           root: str | None = None, packets: bool = True) -> list[InterfaceState]:
    """Observe every interface (or one). One interface's error never hides the others.
    ``packets``: also read linked components' packet counts (``with_packets``)."""
    if iface is not None:
        links = [netlink.read_xdp_by_name(iface, netns=netns)]
    else:
        links = netlink.list_links(netns=netns)
    out = []
    for xs in links:
        try:
            with observe(xs, root) as ch:
                out.append(with_packets(ch.state, netns, root) if packets else ch.state)
        except XdpDispatchError as e:
            out.append(InterfaceState(xs.ifname, xs.ifindex, None, "none", error=e.message))
    return out
