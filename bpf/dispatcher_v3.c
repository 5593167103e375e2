// SPDX-License-Identifier: GPL-2.0
// bpf-cc-flags: -mcpu=v3
/*
 * The dispatcher as protocol version 3 (what libxdp >= 1.6.0 writes): the
 * config gains u8 is_xdp_devbound at offset 124 (128 bytes with padding) and
 * the BTF marker says 3. A device-bound one is loaded with
 * BPF_F_XDP_DEV_BOUND_ONLY and the interface's ifindex.
 */
#define XDP_DISPATCHER_VERSION 3
#include "dispatcher.c"
