// SPDX-License-Identifier: GPL-2.0
/*
 * Two programs in one SEC("xdp") section, calling BPF-to-BPF functions
 * (subprograms) that live in .text:
 *
 *   count_bytes()  a global function: the verifier checks it once, on its
 *                  own, from its BTF signature (its argument is the context);
 *   verdict_for()  a static function: checked inline, for each call site.
 *
 * Both are noinline so they stay real calls in the bytecode, which the
 * loader has to relocate into each program that uses them.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Global subprogram: the packet length, visible from every program. */
__attribute__((noinline)) int count_bytes(struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data;
}

/* Static subprogram: drop frames longer than `limit` bytes. */
static __attribute__((noinline)) int verdict_for(int len, int limit)
{
	if (len > limit)
		return XDP_DROP;
	return XDP_PASS;
}

/* Drop frames longer than a standard Ethernet frame (1514 bytes). */
SEC("xdp")
int xdp_sub_a(struct xdp_md *ctx)
{
	return verdict_for(count_bytes(ctx), 1514);
}

/* Drop frames longer than 128 bytes. */
SEC("xdp")
int xdp_sub_b(struct xdp_md *ctx)
{
	return verdict_for(count_bytes(ctx), 128);
}

char _license[] SEC("license") = "GPL";
