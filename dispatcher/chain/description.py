"""A linked chain's description: parse it (pure) and find it from a program fd (bpf(2),
imported on use). Light on purpose: ``status`` and the pure combiner both import it. The description map is an ARRAY (key 4 bytes, one
entry, ``BPF_F_RDONLY_PROG``, frozen) named ``chain.rodata`` that the chain's main function
references first, holding JSON + NUL with ``"mode": "linked"``."""

from __future__ import annotations

import json

DISPATCH_MODES = ("auto", "freplace", "linked")
DESC_MAP_NAME = "chain.rodata"
MODE = "linked"
BPF_F_RDONLY_PROG = 0x80


def parse_description(value: bytes) -> dict[str, object] | None:
    """The description document of a map value, or None if it is not ours."""
    raw = value.split(b"\0", 1)[0]
    try:
        doc = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("mode") != MODE or not isinstance(
            doc.get("slots"), list):
        return None
    return doc


def read_description(prog_fd: int) -> dict[str, object] | None:
    """The description of the linked chain ``prog_fd`` is, or None."""
    from dispatcher.errors import KernelError
    from dispatcher.kernel import bpf

    info = bpf.prog_info(prog_fd)
    if not info.map_ids:
        return None
    try:
        with bpf.map_get_fd_by_id(info.map_ids[0]) as fd:
            mi = bpf.map_info(fd.fd)
            if (mi.name != DESC_MAP_NAME or mi.key_size != 4 or mi.max_entries != 1
                    or not mi.map_flags & BPF_F_RDONLY_PROG):
                return None
            value = bpf.map_lookup(fd.fd, b"\0\0\0\0", mi.value_size)
    except KernelError:
        return None
    if value is None:
        return None
    return parse_description(value)


def attached_description(ifindex: int, netns: str | None) -> dict[str, object] | None:
    """The description of the linked chain attached to ``ifindex`` (None if not linked)."""
    from dispatcher.errors import KernelError
    from dispatcher.kernel import bpf, netlink

    xs = netlink.read_xdp(ifindex, netns=netns)
    pid = xs.drv_prog_id or xs.skb_prog_id
    if not pid:
        return None
    try:
        with bpf.prog_get_fd_by_id(pid) as fd:
            return read_description(fd.fd)
    except KernelError:
        return None
