"""libxdp multi-dispatch protocol facts, as pure values and functions.

Config layouts (v1 84 bytes, v2 124 bytes, v3 128 bytes), pin paths, and the
run-priority sort order with libxdp's tie-breaks. No I/O here.
"""

from __future__ import annotations

import struct

from dispatcher.obj.actions import actions_to_names
from dispatcher.record import record
from dispatcher.uapi import (  # noqa: F401  (re-exported for the layouts' users)
    BPF_F_RDONLY_PROG,
    BPF_F_XDP_DEV_BOUND_ONLY,
    BPF_F_XDP_HAS_FRAGS,
)

MAGIC = 236
VERSION = 2                      # what we write (libxdp 1.3.x .. 1.5.x read it)
RETVAL = 31                      # stub return value; bit 31 of every used slot's bitmap
MAX_SLOTS = 10
DISPATCHER_NAME = "xdp_dispatcher"
V1_SIZE, V2_SIZE, V3_SIZE = 84, 124, 128


@record
class DispatcherConfig:
    """Decoded dispatcher configuration (any version)."""

    version: int
    num_progs_enabled: int
    chain_call_actions: tuple[int, ...]     # raw bitmaps incl. bit 31
    run_prios: tuple[int, ...]
    program_flags: tuple[int, ...] = (0,) * MAX_SLOTS
    is_xdp_frags: bool = False
    magic: int = MAGIC
    is_xdp_devbound: bool = False

    def slot_actions(self, slot: int) -> tuple[str, ...]:
        return actions_to_names(self.chain_call_actions[slot] & ~(1 << RETVAL))


def encode_config(version: int, prios: list[int], actions: list[int], flags: list[int],
                  frags: bool) -> bytes:
    """Bytes of a v2 (or v3) config for the slots given, in slot order."""
    n = len(prios)
    if n > MAX_SLOTS:
        raise ValueError(f"{n} programs, at most {MAX_SLOTS} fit in a dispatcher")
    pad = MAX_SLOTS - n
    cca = [a | (1 << RETVAL) for a in actions] + [0] * pad
    body = struct.pack("<BBBB10I10I10I", MAGIC, version, n, 1 if frags else 0, *cca,
                       *(list(prios) + [0] * pad), *(list(flags) + [0] * pad))
    if version >= 3:
        body += b"\0" * (V3_SIZE - V2_SIZE)
    return body


def decode_config(value: bytes, btf_version: int = 0) -> DispatcherConfig:
    """Decode a dispatcher config map value. ``btf_version`` is the BTF marker's version,
    consulted only when the magic byte is absent (v1). Raises ValueError when unusable."""
    if len(value) >= 2 and value[0] == MAGIC:
        version = value[1]
    else:
        version = btf_version
    if version == 1:
        if len(value) < V1_SIZE:
            raise ValueError(f"v1 dispatcher config is {len(value)} bytes, expected {V1_SIZE}")
        n = value[0]
        cca = struct.unpack_from("<10I", value, 4)
        prios = struct.unpack_from("<10I", value, 44)
        return DispatcherConfig(1, n, cca, prios, magic=0)
    if version in (2, 3):
        need = V2_SIZE if version == 2 else V3_SIZE
        if len(value) < need:
            raise ValueError(f"v{version} dispatcher config is {len(value)} bytes, expected {need}")
        magic, ver, n, frags = struct.unpack_from("<BBBB", value, 0)
        cca = struct.unpack_from("<10I", value, 4)
        prios = struct.unpack_from("<10I", value, 44)
        pflags = struct.unpack_from("<10I", value, 84)
        devbound = version == 3 and bool(value[124])
        if n > MAX_SLOTS:
            raise ValueError(f"dispatcher config claims {n} programs (at most {MAX_SLOTS})")
        return DispatcherConfig(ver, n, cca, prios, pflags, bool(frags), magic, devbound)
    if version == 0:
        raise ValueError("no dispatcher version (neither magic byte nor BTF marker)")
    raise ValueError(f"dispatcher version {version} is not supported (this tool reads 1, 2 and 3)")


def pin_dir(root: str, ifindex: int, dispatcher_id: int) -> str:
    return f"{root.rstrip('/')}/xdp/dispatch-{ifindex}-{dispatcher_id}"


def parse_pin_dir_name(name: str) -> tuple[int, int] | None:
    """(ifindex, dispatcher prog id) of a ``dispatch-IFINDEX-ID`` directory name."""
    if not name.startswith("dispatch-"):
        return None
    parts = name[len("dispatch-"):].split("-")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


@record
class SortKey:
    """What libxdp's comparison looks at for one chain member."""

    priority: int
    name: str                 # full name (BTF-expanded for loaded programs)
    loaded: bool              # an existing component (has an fd) sorts before a new one
    insn_count: int = 0       # for two new programs: fewer instructions first
    tag: bytes = b"\0" * 8    # all zero for not-yet-loaded programs
    load_time: int = 0
    extra: tuple[object, ...] = ()


def sort_key(k: SortKey) -> tuple[object, ...]:
    """Total order equivalent to libxdp's cmp_xdp_programs.

    1. run priority ascending; 2. name (strcmp, i.e. bytewise); 3. loaded before new;
    4. both new: fewer instructions first; 5. tag bytes; 6. load time.
    """
    both_new_insns = k.insn_count if not k.loaded else 0
    return (k.priority, k.name.encode(), 0 if k.loaded else 1, both_new_insns, k.tag, k.load_time)


def expand_name(kernel_name: str, btf_func_names: list[str]) -> str:
    """libxdp's rule: a kernel name of >= 15 chars is replaced by the BTF FUNC equal to it or
    the unique FUNC that has it as prefix."""
    if len(kernel_name) < 15:
        return kernel_name
    if kernel_name in btf_func_names:
        return kernel_name
    matches = [n for n in btf_func_names if n.startswith(kernel_name)]
    return matches[0] if len(matches) == 1 else kernel_name
