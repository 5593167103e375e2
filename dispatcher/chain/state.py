"""What is on an interface, as plain values, and the pure rules that interpret raw facts.

``observe.py`` gathers facts from the kernel (netlink, prog/map info, pins); the
functions here decide what those facts mean, following libxdp's recognition
rules, so they can be tested without a kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dispatcher.chain import protocol
from dispatcher.chain.versions import LibxdpCompat, libxdp_compat
from dispatcher.obj.actions import actions_to_names
from dispatcher.record import record
from dispatcher.uapi import BPF_F_RDONLY_PROG

if TYPE_CHECKING:  # the description (and json) only where a linked chain is read
    from dispatcher.chain.description import ChainDescription



@record
class ProgFacts:
    """Raw facts about one loaded program."""

    id: int
    name: str              # kernel name (<= 15 chars)
    full_name: str         # BTF-expanded name (libxdp's rule)
    tag: str               # 16 hex digits
    btf_id: int
    map_ids: tuple[int, ...]
    load_time: int = 0
    xlated_insns: int = 0
    prog_type: int = 6
    changes_packets: bool | None = None   # calls a helper that changes packet data (None: unknown)


@record
class MapFacts:
    id: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    value: bytes | None    # key 0, if readable


@record
class Component:
    slot: int
    name: str
    id: int
    tag: str
    priority: int
    chain_call_actions: tuple[str, ...]
    frags: bool
    load_time: int = 0
    xlated_insns: int = 0
    object_path: str = ""       # linked chains: the object file the slot was linked from
    source: str = ""            # linked chains: the config file that manages the slot, if any
    maps: tuple[tuple[str, int], ...] | None = None   # linked chains: (map name, map id)
    packets: int | None = None  # linked chains with stats: packets the component saw
    inlined: bool | None = None  # linked chains that inline: the entry is in main
    not_inlined: str = ""        # ... and if not, why it stays a call
    changes_packets: bool | None = None  # freplace components: calls a packet-changing helper

    def to_json(self) -> dict[str, object]:
        # A linked chain's components are not programs of their own: id and tag are null;
        # "maps" (name -> map id) lets a user read a component's maps without bpftool.
        out: dict[str, object] = {
            "slot": self.slot, "name": self.name, "id": self.id or None, "tag": self.tag or None,
            "priority": self.priority, "chain_call_actions": list(self.chain_call_actions),
            "frags": self.frags}
        if self.object_path:
            out["object"] = self.object_path
        if self.maps is not None:
            out["maps"] = dict(self.maps)
        if self.packets is not None:
            out["packets"] = self.packets
        if self.inlined is not None:
            out["inlined"] = self.inlined
        if self.not_inlined:
            out["not_inlined"] = self.not_inlined
        if self.changes_packets is not None:
            out["changes_packet_data"] = self.changes_packets
        return out


@record
class DispatcherInfo:
    id: int
    version: int
    frags: bool
    name: str = protocol.DISPATCHER_NAME
    tag: str = ""
    ours: bool | None = None
    pin_dir: str = ""
    devbound: bool = False

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"id": self.id, "version": self.version, "frags": self.frags}
        if self.version >= 3 and self.name == protocol.DISPATCHER_NAME:
            out["devbound"] = self.devbound
        if self.name != protocol.DISPATCHER_NAME:          # a linked chain's main program
            out.update(name=self.name, tag=self.tag)
        return out


@record
class InterfaceState:
    """One interface as observed. kind: none | legacy | dispatcher | linked."""

    name: str
    ifindex: int
    mode: str | None                       # skb | native | hw | None
    kind: str
    main: ProgFacts | None = None          # the attached (non-HW) program
    hw: ProgFacts | None = None
    dispatcher: DispatcherInfo | None = None
    config: protocol.DispatcherConfig | None = None
    programs: tuple[Component, ...] = ()
    problems: tuple[str, ...] = ()         # precise notes: missing pins, unsupported version …
    error: str | None = None               # could not be read at all
    description: ChainDescription | None = None    # linked chains: the description map
    packet_check: bool = False             # the kernel refuses packet-changing extensions
                                           # in place of stubs that do not change packets

    def libxdp(self) -> LibxdpCompat | None:
        """Which libxdp releases read / extend this interface's dispatcher (None unless it
        is a libxdp-protocol dispatcher)."""
        if self.kind != "dispatcher" or self.config is None:
            return None
        changing = tuple(c.name for c in self.programs if c.changes_packets) \
            if self.packet_check else ()
        return libxdp_compat(self.config.version, self.config.size, self.config.is_xdp_devbound,
                             changing)

    def to_json(self) -> dict[str, object]:
        compat = self.libxdp()
        return {
            "name": self.name, "ifindex": self.ifindex, "mode": self.mode, "kind": self.kind,
            "dispatcher": self.dispatcher.to_json() if self.dispatcher else None,
            "programs": [c.to_json() for c in self.programs],
            "main": ({"id": self.main.id, "name": self.main.full_name, "tag": self.main.tag}
                     if self.main and self.kind == "legacy" else None),
            "problems": list(self.problems),
            "error": self.error,
            "dispatcher_version": self.config.version if compat and self.config else None,
            "libxdp": compat.to_json() if compat else None,
        }


@record
class Recognition:
    """Result of libxdp's recognition rules applied to the attached program."""

    is_dispatcher: bool
    version: int = 0
    config: protocol.DispatcherConfig | None = None
    reason: str = ""               # why it is legacy, or what is wrong
    hard_error: bool = False       # libxdp would fail the whole query (EINVAL/EOPNOTSUPP)


def recognise(prog: ProgFacts, cfg_map: MapFacts | None, btf_version: int) -> Recognition:
    """libxdp 1.3 rules: BTF present, name xdp_dispatcher, exactly one map of the right shape,
    version from the magic byte or from the BTF marker."""
    if prog.btf_id == 0:
        return Recognition(False, reason="program has no BTF")
    if prog.name != protocol.DISPATCHER_NAME:
        return Recognition(False, reason="not named xdp_dispatcher")
    if len(prog.map_ids) != 1 or cfg_map is None:
        return Recognition(False, reason=f"references {len(prog.map_ids)} maps, not 1")
    m = cfg_map
    if not (m.key_size == 4 and m.value_size >= 2 and m.max_entries == 1
            and m.map_flags & BPF_F_RDONLY_PROG):
        return Recognition(False, reason="config map has the wrong shape", hard_error=True)
    if m.value is None:
        return Recognition(False, reason="config map cannot be read", hard_error=True)
    try:
        cfg = protocol.decode_config(m.value, btf_version)
    except ValueError as e:
        if m.value[:1] != bytes([protocol.MAGIC]) and btf_version == 0:
            return Recognition(False, reason="no dispatcher version marker")
        return Recognition(False, reason=str(e), hard_error=True)
    return Recognition(True, version=cfg.version, config=cfg)


def components_from_config(cfg: protocol.DispatcherConfig,
                           progs: list[ProgFacts | None]) -> tuple[tuple[Component, ...], tuple[str, ...]]:
    """Components of a dispatcher: prio/actions from the config map, identity from the pins."""
    comps = []
    problems = []
    for slot in range(cfg.num_progs_enabled):
        p = progs[slot] if slot < len(progs) else None
        if p is None:
            problems.append(f"slot {slot}: pinned program missing (prog{slot}-prog)")
            continue
        comps.append(Component(
            slot=slot, name=p.full_name, id=p.id, tag=p.tag, priority=cfg.run_prios[slot],
            chain_call_actions=actions_to_names(cfg.chain_call_actions[slot] & 0x7FFFFFFF),
            frags=cfg.slot_frags(slot),
            load_time=p.load_time, xlated_insns=p.xlated_insns,
            changes_packets=p.changes_packets))
    return tuple(comps), tuple(problems)


def components_from_description(desc: ChainDescription) -> tuple[Component, ...]:
    """Components of a linked chain, from its description (no program ids)."""
    return tuple(Component(slot=i, name=s.label, id=0, tag="", priority=s.priority,
                           chain_call_actions=s.actions, frags=s.frags, object_path=s.path,
                           source=s.source, maps=s.maps,
                           inlined=s.inlined if s.inlined or s.not_inlined else None,
                           not_inlined=s.not_inlined)
                 for i, s in enumerate(desc.slots))
