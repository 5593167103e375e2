"""libxdp multi-dispatch protocol facts, as pure values and functions.

Config layouts (v1 84 bytes, v2 124 bytes, v3 128 bytes) read and written exactly, pin paths, and the
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
VERSION = 2                      # what we write by default (libxdp 1.3.x .. 1.5.x read it)
WRITABLE_VERSIONS = (2, 3)       # what encode_config writes; v1 is read (and encoded) only
READABLE_VERSIONS = (1, 2, 3)
RETVAL = 31                      # stub return value; bit 31 of every used slot's bitmap
MAX_SLOTS = 10
DISPATCHER_NAME = "xdp_dispatcher"
V1_SIZE, V2_SIZE, V3_SIZE = 84, 124, 128
DEVBOUND_OFFSET = 124            # v3: u8 is_xdp_devbound after program_flags[10]

# The C structs of headers/xdp/prog_dispatcher.h (v3) and lib/libxdp/libxdp.c (v1, v2), in
# native (little-endian) layout with the compiler's padding spelled out:
#   v1: u8 num_progs_enabled, 3 pad, u32 chain_call_actions[10], u32 run_prios[10]   = 84
#   v2: u8 magic, u8 dispatcher_version, u8 num_progs_enabled, u8 is_xdp_frags,
#       u32 chain_call_actions[10], u32 run_prios[10], u32 program_flags[10]          = 124
#   v3: v2, u8 is_xdp_devbound, 3 bytes tail padding                                  = 128
_V1 = struct.Struct("<B3x10I10I")
_V2 = struct.Struct("<BBBB10I10I10I")
_V3 = struct.Struct("<BBBB10I10I10IB3x")
assert (_V1.size, _V2.size, _V3.size) == (V1_SIZE, V2_SIZE, V3_SIZE)
LAYOUT_SIZE = {1: V1_SIZE, 2: V2_SIZE, 3: V3_SIZE}
_ZERO = (0,) * MAX_SLOTS


@record
class DispatcherConfig:
    """Decoded dispatcher configuration (any version).

    ``program_flags`` are per slot (0x20: that component is frags-capable, 0x40: bound to the
    device); ``is_xdp_frags`` is the dispatcher's own flag (set only when *every* component
    is frags-capable) and ``is_xdp_devbound`` the v3 dispatcher's device binding.
    ``value_size`` is the size of the map value it was read from (0: built, not read)."""

    version: int
    num_progs_enabled: int
    chain_call_actions: tuple[int, ...]     # raw bitmaps incl. bit 31
    run_prios: tuple[int, ...]
    program_flags: tuple[int, ...] = _ZERO
    is_xdp_frags: bool = False
    magic: int = MAGIC
    is_xdp_devbound: bool = False
    value_size: int = 0

    def slot_actions(self, slot: int) -> tuple[str, ...]:
        return actions_to_names(self.chain_call_actions[slot] & ~(1 << RETVAL))

    def slot_frags(self, slot: int) -> bool:
        """Whether the component in ``slot`` is frags-capable (its own flag, not the
        dispatcher's: one non-frags component clears the dispatcher's)."""
        return bool(self.program_flags[slot] & BPF_F_XDP_HAS_FRAGS)

    @property
    def size(self) -> int:
        """The map value size: as read, else the version's layout size."""
        return self.value_size or LAYOUT_SIZE.get(self.version, 0)


def make_config(version: int, prios: list[int], actions: list[int], flags: list[int],
                frags: bool, devbound: bool = False) -> DispatcherConfig:
    """The config libxdp would write for these slots (slot order): bit 31 added to each
    used slot's actions; in a device-bound v3 dispatcher every used slot also carries
    BPF_F_XDP_DEV_BOUND_ONLY. Raises ValueError for what no libxdp writes."""
    if version not in WRITABLE_VERSIONS:
        raise ValueError(f"dispatcher version {version} cannot be written "
                         f"(this tool writes {' and '.join(map(str, WRITABLE_VERSIONS))})")
    n = len(prios)
    if n > MAX_SLOTS:
        raise ValueError(f"{n} programs, at most {MAX_SLOTS} fit in a dispatcher")
    if len(actions) != n or len(flags) != n:
        raise ValueError(f"{n} priorities but {len(actions)} action sets and {len(flags)} flags")
    if devbound and version < 3:
        raise ValueError(f"a device-bound dispatcher needs version 3, not {version}")
    bound = BPF_F_XDP_DEV_BOUND_ONLY if devbound else 0
    if version < 3 and any(f & BPF_F_XDP_DEV_BOUND_ONLY for f in flags):
        raise ValueError(f"device-bound components need dispatcher version 3, not {version}")
    pad = [0] * (MAX_SLOTS - n)
    return DispatcherConfig(
        version, n, tuple([a | (1 << RETVAL) for a in actions] + pad), tuple(list(prios) + pad),
        tuple([f | bound for f in flags] + pad), frags, MAGIC, devbound)


def encode(cfg: DispatcherConfig) -> bytes:
    """The exact map value of ``cfg`` in its version's layout (v1 84, v2 124, v3 128 bytes;
    padding zero, as libxdp memsets the struct)."""
    if not 0 <= cfg.num_progs_enabled <= MAX_SLOTS:
        raise ValueError(f"{cfg.num_progs_enabled} programs, at most {MAX_SLOTS} fit in a dispatcher")
    if cfg.version == 1:
        return _V1.pack(cfg.num_progs_enabled, *cfg.chain_call_actions, *cfg.run_prios)
    head = (cfg.magic, cfg.version, cfg.num_progs_enabled, 1 if cfg.is_xdp_frags else 0,
            *cfg.chain_call_actions, *cfg.run_prios, *cfg.program_flags)
    if cfg.version == 2:
        if cfg.is_xdp_devbound:
            raise ValueError("a v2 dispatcher config has no device-bound flag")
        return _V2.pack(*head)
    if cfg.version == 3:
        return _V3.pack(*head, 1 if cfg.is_xdp_devbound else 0)
    raise ValueError(f"dispatcher version {cfg.version} has no known layout")


def encode_config(version: int, prios: list[int], actions: list[int], flags: list[int],
                  frags: bool, devbound: bool = False) -> bytes:
    """Bytes of a v2 or v3 config for the slots given, in slot order (see make_config)."""
    return encode(make_config(version, prios, actions, flags, frags, devbound))


def decode_config(value: bytes, btf_version: int = 0) -> DispatcherConfig:
    """Decode a dispatcher config map value (``value`` is the whole value: its length is the
    map's value size). ``btf_version`` is the BTF marker's version, consulted only when the
    magic byte is absent (v1). Raises ValueError when unusable.

    Size rules, as the newest libxdp reads (check_dispatcher_version): v1 at least 84 bytes,
    v2 at least 124 (libxdp 1.3-1.5 want exactly 124: see chain.versions), v3 exactly 128;
    at most 10 programs enabled."""
    if len(value) >= 2 and value[0] == MAGIC:
        version = value[1]
    else:
        version = btf_version
    if version == 0:
        raise ValueError("no dispatcher version (neither magic byte nor BTF marker)")
    if version not in LAYOUT_SIZE:
        raise ValueError(f"dispatcher version {version} is not supported "
                         f"(this tool reads {', '.join(map(str, READABLE_VERSIONS[:-1]))} "
                         f"and {READABLE_VERSIONS[-1]})")
    need = LAYOUT_SIZE[version]
    if len(value) < need or (version == 3 and len(value) != need):
        exact = "exactly " if version == 3 else ""
        raise ValueError(f"v{version} dispatcher config is {len(value)} bytes, expected {exact}{need}")
    if version == 1:
        f = _V1.unpack_from(value)
        cfg = DispatcherConfig(1, f[0], f[1:11], f[11:21], magic=0, value_size=len(value))
    else:
        f = (_V3 if version == 3 else _V2).unpack_from(value)
        cfg = DispatcherConfig(f[1], f[2], f[4:14], f[14:24], f[24:34], bool(f[3]), f[0],
                               version == 3 and bool(f[34]), len(value))
    if cfg.num_progs_enabled > MAX_SLOTS:
        raise ValueError(f"dispatcher config claims {cfg.num_progs_enabled} programs "
                         f"(at most {MAX_SLOTS})")
    return cfg


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
