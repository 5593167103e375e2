// SPDX-License-Identifier: GPL-2.0
/* A small entry function calling a subprogram with a 400-byte stack frame (linked
 * chains: with another inlined entry's large frame in main, that call chain would pass
 * the kernel's 512-byte limit). Same verdicts as xdp_bigstack, from the packet's 2nd byte. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static __attribute__((noinline)) int deep(struct xdp_md *ctx)
{
	volatile __u64 buf[50];
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *p = data;

	for (int i = 0; i < 50; i++)
		buf[i] = i;
	if (p + 2 > (__u8 *)end)
		return XDP_PASS;
	return buf[p[1] & 31] & 1 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int xdp_deepstack(struct xdp_md *ctx)
{
	return deep(ctx);
}

char _license[] SEC("license") = "GPL";
