// SPDX-License-Identifier: GPL-2.0
/*
 * Packet rewriting, two ways:
 *
 * 1. VLAN pop: a frame carrying one 802.1Q tag loses the 4-byte tag; the
 *    Ethernet header is moved forward and bpf_xdp_adjust_head() drops the
 *    first 4 bytes. The untagged frame is passed to the stack.
 * 2. UDP echo (port 7): swap source and destination MAC, IPv4 address and
 *    UDP port, and send the frame back out of the interface it came in on
 *    (XDP_TX). Swapping keeps both checksums valid, so none is recomputed.
 *
 * After bpf_xdp_adjust_head() every packet pointer is stale: the program
 * reloads data/data_end and checks bounds again before writing.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xdp_parse.h"

#define ECHO_PORT 7

struct vlan_tag {
	__be16 tci;		/* priority, DEI, VLAN id */
	__be16 inner_proto;	/* EtherType of what follows the tag */
};

static __always_inline int pop_vlan(struct xdp_md *ctx, struct ethhdr *eth,
				    void *pos, void *end)
{
	struct vlan_tag *tag = pos;
	struct ethhdr copy;

	if ((void *)(tag + 1) > end)
		return XDP_PASS;	/* truncated: let the stack decide */

	__builtin_memcpy(&copy, eth, sizeof(copy));
	copy.h_proto = tag->inner_proto;

	if (bpf_xdp_adjust_head(ctx, (int)sizeof(*tag)))
		return XDP_ABORTED;

	/* Pointers are invalid now: start again from ctx. */
	eth = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if ((void *)(eth + 1) > end)
		return XDP_ABORTED;
	__builtin_memcpy(eth, &copy, sizeof(*eth));
	return XDP_PASS;
}

static __always_inline void swap_bytes(void *a, void *b, int n)
{
	unsigned char *x = a, *y = b, t;
	int i;

#pragma unroll
	for (i = 0; i < n; i++) {
		t = x[i];
		x[i] = y[i];
		y[i] = t;
	}
}

SEC("xdp")
int xdp_rewrite(struct xdp_md *ctx)
{
	void *pos = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct udphdr *udp;
	__be32 addr;
	__be16 port;

	eth = parse_ethhdr(&pos, end);
	if (!eth)
		return XDP_PASS;

	if (eth->h_proto == bpf_htons(ETH_P_8021Q))
		return pop_vlan(ctx, eth, pos, end);

	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	iph = parse_iphdr(&pos, end);
	if (!iph || iph->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = parse_udphdr(&pos, end);
	if (!udp || udp->dest != bpf_htons(ECHO_PORT))
		return XDP_PASS;

	swap_bytes(eth->h_source, eth->h_dest, ETH_ALEN);
	addr = iph->saddr;
	iph->saddr = iph->daddr;
	iph->daddr = addr;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
