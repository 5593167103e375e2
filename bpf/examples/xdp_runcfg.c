// SPDX-License-Identifier: GPL-2.0
/*
 * Run-config metadata: when this program is put in a chain, it asks for
 * priority 10 (runs before the default 50) and lets the chain go on after
 * both XDP_PASS and XDP_DROP (so a later program still sees dropped
 * packets and decides). See ../include/xdp_run_config.h for the encoding.
 *
 * The program itself drops frames too short to hold an Ethernet header.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include "xdp_run_config.h"

struct {
	__uint(priority, 10);
	__uint(XDP_PASS, 1);
	__uint(XDP_DROP, 1);
} XDP_RUN_CONFIG(xdp_runcfg);

SEC("xdp")
int xdp_runcfg(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	if (data + sizeof(struct ethhdr) > end)
		return XDP_DROP;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
