// SPDX-License-Identifier: GPL-2.0
/*
 * Also named xdp_pass, but longer than xdp_pass.c: it touches the packet
 * before passing it. Two programs with the same priority and the same name
 * are ordered by size when both are new (libxdp's tie-break: fewer
 * instructions first); the tests use this pair to check that rule.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + 1 > data_end)
		return XDP_PASS;
	return *(volatile unsigned char *)data == 0xff ? XDP_PASS : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
