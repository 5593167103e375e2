// SPDX-License-Identifier: GPL-2.0
// bpf-cc-flags: -mcpu=v3
/*
 * xdp-dispatch's multi-program dispatcher, protocol version 2 (dispatcher_v3.c
 * builds the same source as version 3: one more config byte, is_xdp_devbound).
 *
 * Written for xdp-dispatch from the protocol's published facts (layout,
 * constants, semantics); it is byte-compatible with what libxdp expects of a
 * version-2 dispatcher, so libxdp's tools read and change our chains.
 *
 * How it works: ten global, never-inlined stubs prog0..prog9 each return 31
 * (XDP_DISPATCHER_RETVAL). A component program is loaded as an extension
 * (BPF_PROG_TYPE_EXT) that replaces one stub. After each slot the return code
 * is tested against that slot's chain-call bitmap: if its bit is set the next
 * slot runs, otherwise the code is the packet's verdict. Bit 31 is always set
 * for a used slot, so a stub that was not replaced lets the chain go on.
 *
 * The configuration lives in .rodata; the loader writes it for the final,
 * sorted chain and freezes the map before loading the program, so the
 * verifier sees constants and drops every slot beyond num_progs_enabled.
 *
 * Each stub also calls bpf_xdp_adjust_tail(ctx, 0), a no-op that marks the
 * stub (and the main function) as "changes packet data": newer kernels only
 * let an extension that moves packet pointers replace such a function.
 *
 * Built with -mcpu=v3 (32-bit ALU and jumps, Linux >= 5.1): the chain-call
 * test then needs no zero-extension, four instructions fewer per slot.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define XDP_DISPATCHER_MAGIC 236
#ifndef XDP_DISPATCHER_VERSION
#define XDP_DISPATCHER_VERSION 2
#endif
#define XDP_DISPATCHER_RETVAL 31
#define MAX_SLOTS 10

struct xdp_dispatcher_config {
	__u8 magic;                       /* XDP_DISPATCHER_MAGIC */
	__u8 dispatcher_version;          /* XDP_DISPATCHER_VERSION */
	__u8 num_progs_enabled;           /* slots in use, 0..10 */
	__u8 is_xdp_frags;                /* loaded with BPF_F_XDP_HAS_FRAGS */
	__u32 chain_call_actions[MAX_SLOTS]; /* bit N: continue on action N */
	__u32 run_prios[MAX_SLOTS];       /* priority of each slot */
	__u32 program_flags[MAX_SLOTS];   /* BPF_F_XDP_HAS_FRAGS per component */
#if XDP_DISPATCHER_VERSION >= 3
	__u8 is_xdp_devbound;             /* loaded with BPF_F_XDP_DEV_BOUND_ONLY */
#endif
};

/* Version marker for readers that look at BTF rather than the magic byte. */
int (*dispatcher_version)[XDP_DISPATCHER_VERSION] SEC("xdp_metadata");

/* Filled in by the loader before load; all zero here. */
static volatile const struct xdp_dispatcher_config conf = {};

#define STUB(n)                                                  \
	__attribute__((noinline)) int prog##n(struct xdp_md *ctx) \
	{                                                        \
		volatile int ret = XDP_DISPATCHER_RETVAL;        \
		if (!ctx)                                        \
			return XDP_ABORTED;                      \
		bpf_xdp_adjust_tail(ctx, 0);                     \
		return ret;                                      \
	}

STUB(0) STUB(1) STUB(2) STUB(3) STUB(4)
STUB(5) STUB(6) STUB(7) STUB(8) STUB(9)

#define SLOT(n)                                                          \
	if (num <= n)                                                    \
		return XDP_PASS;                                         \
	ret = prog##n(ctx);                                              \
	if (!((1U << ret) & conf.chain_call_actions[n]))                 \
		return ret;

SEC("xdp")
int xdp_dispatcher(struct xdp_md *ctx)
{
	__u8 num = conf.num_progs_enabled;
	int ret;

	SLOT(0) SLOT(1) SLOT(2) SLOT(3) SLOT(4)
	SLOT(5) SLOT(6) SLOT(7) SLOT(8) SLOT(9)
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
