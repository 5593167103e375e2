"""Positive controls: read xdp_counter's packet count straight from its map (by program id).

A drop test that only shows `not ping` passes with a dead chain too (nothing attached, or a
broken veth); a counter in front of the drop that moved proves the chain ran on the packets.
"""

from __future__ import annotations


def counter_packets(prog_id: int) -> int:
    """Packets xdp_counter (program ``prog_id``) has counted, summed over CPUs (key 0)."""
    from dispatcher.kernel import bpf

    with bpf.prog_get_fd_by_id(prog_id) as pfd:
        (map_id,) = bpf.prog_info(pfd.fd).map_ids
    with bpf.map_get_fd_by_id(map_id) as mfd:
        raw = bpf.map_lookup(mfd.fd, b"\0\0\0\0", bpf.percpu_value_size(16))
    assert raw is not None
    return sum(int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 16))
