"""Kernel UAPI numbers: every one the package uses, defined here and nowhere else.

A pure leaf: imports nothing from ``dispatcher`` (nor anything else). Names are spelled
as in the kernel headers, grouped by the header that defines them; modules import what
they use (``from dispatcher.uapi import BPF_PROG_TYPE_XDP``) and never redefine a number
(``tests/unit/test_uapi.py`` fails if they do).

Not here: the BPF instruction encoding (opcodes, ``BPF_PSEUDO_*`` source registers), which
is defined once in ``dispatcher.obj.opcodes`` (re-exported by the codec, ``dispatcher.obj.insn``); ELF and BTF file
format numbers (``dispatcher.obj.elf``, ``dispatcher.obj.btf``); the netlink message
plumbing that only ``dispatcher.kernel.netlink`` speaks.
"""

from __future__ import annotations

# ==========================================================================
# linux/bpf.h
# ==========================================================================

# enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_NEXT_ID = 11
BPF_MAP_GET_NEXT_ID = 12
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_BTF_LOAD = 18
BPF_BTF_GET_FD_BY_ID = 19
BPF_MAP_FREEZE = 22
BPF_BTF_GET_NEXT_ID = 23
BPF_MAP_LOOKUP_BATCH = 24
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31
BPF_ENABLE_STATS = 32
BPF_LINK_DETACH = 34

#: bpf_cmd number -> name (for error messages).
BPF_CMD_NAMES: dict[int, str] = {
    v: k for k, v in dict(globals()).items()
    if k.startswith("BPF_") and isinstance(v, int)
}

# enum bpf_prog_type
BPF_PROG_TYPE_UNSPEC = 0
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_SCHED_ACT = 4
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_XDP = 6
BPF_PROG_TYPE_PERF_EVENT = 7
BPF_PROG_TYPE_CGROUP_SKB = 8
BPF_PROG_TYPE_CGROUP_SOCK = 9
BPF_PROG_TYPE_LWT_IN = 10
BPF_PROG_TYPE_LWT_OUT = 11
BPF_PROG_TYPE_LWT_XMIT = 12
BPF_PROG_TYPE_SOCK_OPS = 13
BPF_PROG_TYPE_SK_SKB = 14
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_PROG_TYPE_SK_MSG = 16
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_PROG_TYPE_LWT_SEG6LOCAL = 19
BPF_PROG_TYPE_LIRC_MODE2 = 20
BPF_PROG_TYPE_SK_REUSEPORT = 21
BPF_PROG_TYPE_FLOW_DISSECTOR = 22
BPF_PROG_TYPE_CGROUP_SYSCTL = 23
BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE = 24
BPF_PROG_TYPE_CGROUP_SOCKOPT = 25
BPF_PROG_TYPE_TRACING = 26
BPF_PROG_TYPE_STRUCT_OPS = 27
BPF_PROG_TYPE_EXT = 28
BPF_PROG_TYPE_LSM = 29
BPF_PROG_TYPE_SK_LOOKUP = 30
BPF_PROG_TYPE_SYSCALL = 31
BPF_PROG_TYPE_NETFILTER = 32

# enum bpf_map_type
BPF_MAP_TYPE_UNSPEC = 0
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_STACK_TRACE = 7
BPF_MAP_TYPE_CGROUP_ARRAY = 8
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_LPM_TRIE = 11
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_HASH_OF_MAPS = 13
BPF_MAP_TYPE_DEVMAP = 14
BPF_MAP_TYPE_SOCKMAP = 15
BPF_MAP_TYPE_CPUMAP = 16
BPF_MAP_TYPE_XSKMAP = 17
BPF_MAP_TYPE_SOCKHASH = 18
BPF_MAP_TYPE_CGROUP_STORAGE = 19
BPF_MAP_TYPE_REUSEPORT_SOCKARRAY = 20
BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21
BPF_MAP_TYPE_QUEUE = 22
BPF_MAP_TYPE_STACK = 23
BPF_MAP_TYPE_SK_STORAGE = 24
BPF_MAP_TYPE_DEVMAP_HASH = 25
BPF_MAP_TYPE_STRUCT_OPS = 26
BPF_MAP_TYPE_RINGBUF = 27
BPF_MAP_TYPE_INODE_STORAGE = 28
BPF_MAP_TYPE_TASK_STORAGE = 29
BPF_MAP_TYPE_BLOOM_FILTER = 30
BPF_MAP_TYPE_USER_RINGBUF = 31
BPF_MAP_TYPE_CGRP_STORAGE = 32
BPF_MAP_TYPE_ARENA = 33

# enum bpf_attach_type (the ones this project touches)
BPF_CGROUP_INET_INGRESS = 0
BPF_TRACE_RAW_TP = 23
BPF_TRACE_FENTRY = 24
BPF_TRACE_FEXIT = 25
BPF_MODIFY_RETURN = 26
BPF_LSM_MAC = 27
BPF_TRACE_ITER = 28
BPF_XDP_DEVMAP = 33
BPF_XDP_CPUMAP = 35
BPF_SK_LOOKUP = 36
BPF_XDP = 37

# enum bpf_link_type
BPF_LINK_TYPE_UNSPEC = 0
BPF_LINK_TYPE_RAW_TRACEPOINT = 1
BPF_LINK_TYPE_TRACING = 2
BPF_LINK_TYPE_CGROUP = 3
BPF_LINK_TYPE_ITER = 4
BPF_LINK_TYPE_NETNS = 5
BPF_LINK_TYPE_XDP = 6
BPF_LINK_TYPE_PERF_EVENT = 7
BPF_LINK_TYPE_KPROBE_MULTI = 8
BPF_LINK_TYPE_STRUCT_OPS = 9
BPF_LINK_TYPE_NETFILTER = 10
BPF_LINK_TYPE_TCX = 11
BPF_LINK_TYPE_UPROBE_MULTI = 12
BPF_LINK_TYPE_NETKIT = 13

# map_flags (BPF_MAP_CREATE) and file flags (OBJ_GET / *_GET_FD_BY_ID)
BPF_F_NO_PREALLOC = 0x1
BPF_F_NO_COMMON_LRU = 0x2
BPF_F_NUMA_NODE = 0x4
BPF_F_RDONLY = 0x8
BPF_F_WRONLY = 0x10
BPF_F_STACK_BUILD_ID = 0x20
BPF_F_ZERO_SEED = 0x40
BPF_F_RDONLY_PROG = 0x80
BPF_F_WRONLY_PROG = 0x100
BPF_F_CLONE = 0x200
BPF_F_MMAPABLE = 0x400
BPF_F_PRESERVE_ELEMS = 0x800
BPF_F_INNER_MAP = 0x1000

# element update flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# prog_flags (BPF_PROG_LOAD)
BPF_F_STRICT_ALIGNMENT = 0x1
BPF_F_ANY_ALIGNMENT = 0x2
BPF_F_TEST_RND_HI32 = 0x4
BPF_F_TEST_STATE_FREQ = 0x8
BPF_F_SLEEPABLE = 0x10
BPF_F_XDP_HAS_FRAGS = 0x20
BPF_F_XDP_DEV_BOUND_ONLY = 0x40

# LINK_UPDATE flags
BPF_F_REPLACE = 0x4

# PROG_TEST_RUN flags
BPF_F_TEST_RUN_ON_CPU = 0x1
BPF_F_TEST_XDP_LIVE_FRAMES = 0x2

# enum bpf_stats_type
BPF_STATS_RUN_TIME = 0

# enum bpf_func_id (helpers the generated code calls)
BPF_FUNC_map_lookup_elem = 1
BPF_FUNC_ktime_get_ns = 5
# ... and the XDP helpers the kernel counts as changing packet data (its
# bpf_helper_changes_pkt_data()), which the probe for them calls
BPF_FUNC_xdp_adjust_head = 44
BPF_FUNC_xdp_adjust_meta = 54
BPF_FUNC_xdp_adjust_tail = 65

# enum xdp_action (XDP program verdicts)
XDP_ABORTED = 0
XDP_DROP = 1
XDP_PASS = 2
XDP_TX = 3
XDP_REDIRECT = 4

#: Size of the name buffers of programs and maps (BPF_OBJ_NAME_LEN).
BPF_OBJ_NAME_LEN = 16


#: Map types whose user-space value is one slot per possible CPU.
PERCPU_MAP_TYPES = frozenset({
    BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
})

# ==========================================================================
# linux/if_link.h
# ==========================================================================

# XDP_FLAGS_* (IFLA_XDP_FLAGS, and the flags of BPF_LINK_CREATE for BPF_XDP)
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
XDP_FLAGS_MODES = XDP_FLAGS_SKB_MODE | XDP_FLAGS_DRV_MODE | XDP_FLAGS_HW_MODE
XDP_FLAGS_MASK = XDP_FLAGS_MODES | XDP_FLAGS_UPDATE_IF_NOEXIST | XDP_FLAGS_REPLACE

# IFLA_XDP_ATTACHED values (enum XDP_ATTACHED_*)
XDP_ATTACHED_NONE = 0
XDP_ATTACHED_DRV = 1
XDP_ATTACHED_SKB = 2
XDP_ATTACHED_HW = 3
XDP_ATTACHED_MULTI = 4

# enum IFLA_* (the link attributes read or written here)
IFLA_IFNAME = 3
IFLA_EXT_MASK = 29
IFLA_XDP = 43

# enum IFLA_XDP_* (nested in IFLA_XDP)
IFLA_XDP_UNSPEC = 0
IFLA_XDP_FD = 1
IFLA_XDP_ATTACHED = 2
IFLA_XDP_FLAGS = 3
IFLA_XDP_PROG_ID = 4
IFLA_XDP_DRV_PROG_ID = 5
IFLA_XDP_SKB_PROG_ID = 6
IFLA_XDP_HW_PROG_ID = 7
IFLA_XDP_EXPECTED_FD = 8

# ==========================================================================
# linux/if.h, linux/magic.h, linux/sched.h
# ==========================================================================

#: Interface name buffer size (names have at most IFNAMSIZ - 1 characters).
IFNAMSIZ = 16
#: statfs f_type of a BPF filesystem (linux/magic.h; 0xCAFE4711 is a common misquote).
BPF_FS_MAGIC = 0xCAFE4A11
#: setns(2) / unshare(2) flag of a network namespace.
CLONE_NEWNET = 0x40000000
