// SPDX-License-Identifier: GPL-2.0
/* Drop IPv4 ICMP packets (ping and friends); pass everything else. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "xdp_parse.h"

SEC("xdp")
int xdp_drop_icmp(struct xdp_md *ctx)
{
	void *pos = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *iph;

	iph = parse_eth_ipv4(&pos, end);
	if (!iph)
		return XDP_PASS;	/* not IPv4 (or truncated): not ours */

	if (iph->protocol == IPPROTO_ICMP)
		return XDP_DROP;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
