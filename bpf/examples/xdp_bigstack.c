// SPDX-License-Identifier: GPL-2.0
/* A 400-byte stack frame in the entry function (linked chains: inlining puts it in the
 * chain's main frame). Passes or drops by a byte of the packet, read back from the
 * stack at a variable offset. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_bigstack(struct xdp_md *ctx)
{
	volatile __u64 buf[50];
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *p = data;

	for (int i = 0; i < 50; i++)
		buf[i] = i;
	if (p + 1 > (__u8 *)end)
		return XDP_PASS;
	return buf[p[0] & 31] & 1 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
