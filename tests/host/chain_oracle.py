"""Compare a chain program with its components run one by one (the oracle).

A chain under test is a program fd plus, per slot, (object, program, actions, map ids).
The oracle loads each component standalone on the SAME maps (reopened by id) and feeds
each one's output packet to the next, stopping when the verdict's bit is not in the
slot's actions (XDP_PASS after the last). For every packet, the verdict, the output
bytes and the change of every map entry must be equal.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from dispatcher.kernel import bpf, loader
from dispatcher.obj.spec import ObjectSpec, ProgramSpec
from tests import packets

XDP_PASS = 2
_SNAP_TYPES = {1, 2, 5, 6, 9, 10, 11}     # hash, array, percpu hash/array, lru, lpm
_PERCPU = {5, 6, 10}


@dataclass(frozen=True)
class SlotUnderTest:
    obj: ObjectSpec
    prog: ProgramSpec
    actions: int
    map_ids: Mapping[str, int]


def packet_set() -> list[tuple[str, bytes]]:
    vlan = (packets.DST_MAC + packets.SRC_MAC + b"\x81\x00" + struct.pack("!HH", 5, 0x0800)
            + packets.udp_packet(dport=5678)[14:])
    ipv6 = (packets.DST_MAC + packets.SRC_MAC + b"\x86\xdd"
            + struct.pack("!IHBB", 6 << 28, 8 + 4, 17, 64) + bytes(15) + b"\x01"
            + bytes(15) + b"\x02" + struct.pack("!HHHH", 1000, 53, 12, 0) + b"ping")
    return [
        ("udp", packets.udp_packet()),
        ("udp-discard-9", packets.udp_packet(dport=9)),
        ("udp-echo-7", packets.udp_packet(dport=7, payload=b"echo me")),
        ("tcp-80", packets.tcp_packet(dport=80)),
        ("tcp-22", packets.tcp_packet(dport=22, src="198.51.100.7")),
        ("icmp", packets.icmp_echo()),
        ("arp", packets.arp_packet()),
        ("vlan-udp", vlan),
        ("ipv6-udp", ipv6),
        ("short-14", packets.DST_MAC + packets.SRC_MAC + b"\x08\x00"),
        ("udp-1200", packets.udp_packet(payload=bytes(range(256)) * 4 + bytes(150))),
    ]


def _lanes(value: bytes, percpu: bool, value_size: int) -> tuple[int, ...]:
    if not percpu:
        return (int.from_bytes(value, "little"),) if len(value) <= 8 else tuple(value)
    stride = (value_size + 7) // 8 * 8
    fmt = "<Q" if value_size % 8 == 0 else "<I"
    step = struct.calcsize(fmt)
    lanes = [0] * (value_size // step)
    for cpu in range(len(value) // stride):
        chunk = value[cpu * stride:cpu * stride + value_size]
        for i in range(len(lanes)):
            lanes[i] += struct.unpack_from(fmt, chunk, i * step)[0]
    return tuple(lanes)


Raw = dict[tuple[int, bytes], bytes]


def snapshot_raw(map_ids: Sequence[int]) -> Raw:
    """Every entry of every data map: (map id, key) -> raw value (all CPUs)."""
    out: Raw = {}
    for mid in sorted(set(map_ids)):
        with bpf.map_get_fd_by_id(mid) as fd:
            mi = bpf.map_info(fd.fd)
            if mi.type not in _SNAP_TYPES or (mi.type in (2, 6) and mi.max_entries > 4096):
                continue          # big arrays (xdp-filter's 65536 port flags) are config only
            vsize = bpf.percpu_value_size(mi.value_size) if mi.type in _PERCPU else mi.value_size
            key = None
            while True:
                key = bpf.map_next_key(fd.fd, key, mi.key_size)
                if key is None:
                    break
                v = bpf.map_lookup(fd.fd, key, vsize)
                if v is not None:
                    out[(mid, key)] = v
    return out


def summed(raw: Raw) -> dict[tuple[int, bytes], tuple[int, ...]]:
    """Per-CPU values summed per lane (where a packet was counted does not matter)."""
    out = {}
    sizes: dict[int, tuple[bool, int]] = {}
    for (mid, key), v in raw.items():
        if mid not in sizes:
            with bpf.map_get_fd_by_id(mid) as fd:
                mi = bpf.map_info(fd.fd)
                sizes[mid] = (mi.type in _PERCPU, mi.value_size)
        percpu, vs = sizes[mid]
        out[(mid, key)] = _lanes(v, percpu, vs)
    return out


def snapshot(map_ids: Sequence[int]) -> dict[tuple[int, bytes], tuple[int, ...]]:
    return summed(snapshot_raw(map_ids))


def restore(before: Raw, now: Raw) -> None:
    """Put the maps back to ``before`` (entries changed, added or removed since)."""
    for (mid, key) in set(before) | set(now):
        old, new = before.get((mid, key)), now.get((mid, key))
        if old == new:
            continue
        with bpf.map_get_fd_by_id(mid) as fd:
            if old is None:
                bpf.map_delete(fd.fd, key)
            else:
                bpf.map_update(fd.fd, key, old)


@contextmanager
def standalone(slots: Sequence[SlotUnderTest]) -> Iterator[list[int]]:
    """Each component loaded alone as XDP on the chain's maps; yields their fds."""
    with ExitStack() as stack:
        fds = []
        for s in slots:
            lo = loader.LoadedObject(spec=s.obj, btf_fd=loader.load_btf(s.obj), maps={})
            stack.callback(lo.close)
            for name, mid in s.map_ids.items():
                lo.maps[name] = bpf.map_get_fd_by_id(mid)
            p = loader.load_program(lo, s.prog)
            stack.callback(p.close)
            fds.append(p.fd.fd)
        yield fds


def by_hand(fds: Sequence[int], slots: Sequence[SlotUnderTest], pkt: bytes) -> tuple[int, bytes]:
    for fd, s in zip(fds, slots, strict=True):
        r = bpf.prog_test_run(fd, pkt)
        pkt = r.data_out
        if not (s.actions >> r.retval) & 1 if r.retval < 32 else True:
            return r.retval, pkt
    return XDP_PASS, pkt


def compare(chain_fd: int, slots: Sequence[SlotUnderTest],
            pkts: Sequence[tuple[str, bytes]] | None = None) -> list[tuple[str, int, bool]]:
    """Run every packet through the chain, put the maps back, run it by hand; assert the
    same verdict, output packet and map state. Returns (packet, verdict, maps changed)."""
    ids = [i for s in slots for i in s.map_ids.values()]
    seen = []
    with standalone(slots) as fds:
        for name, pkt in pkts or packet_set():
            before = snapshot_raw(ids)
            r = bpf.prog_test_run(chain_fd, pkt)
            chained = snapshot_raw(ids)
            restore(before, chained)
            v, out = by_hand(fds, slots, pkt)
            after = snapshot_raw(ids)
            assert r.retval == v, f"{name}: chain verdict {r.retval}, by hand {v}"
            assert r.data_out == out, f"{name}: output packets differ"
            sc, sh = summed(chained), summed(after)
            assert sc == sh, f"{name}: map state differs: chain {sc}, by hand {sh}"
            changed = set(sc) != set(summed(before)) or sc != summed(before)
            seen.append((name, v, changed))
    return seen
