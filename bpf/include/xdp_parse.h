/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Small, bounds-checked header parsers shared by the example programs.
 *
 * Every helper takes a cursor (`*pos`) and the end of the packet, checks that
 * the whole header fits before touching it (the verifier insists on this),
 * advances the cursor and returns a pointer to the header, or NULL when the
 * packet is too short.
 */
#ifndef XDP_DISPATCH_PARSE_H
#define XDP_DISPATCH_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

static __always_inline struct ethhdr *parse_ethhdr(void **pos, void *end)
{
	struct ethhdr *eth = *pos;

	if ((void *)(eth + 1) > end)
		return NULL;
	*pos = eth + 1;
	return eth;
}

/* IPv4 header, including options (ihl > 5). */
static __always_inline struct iphdr *parse_iphdr(void **pos, void *end)
{
	struct iphdr *iph = *pos;
	int len;

	if ((void *)(iph + 1) > end)
		return NULL;
	len = iph->ihl * 4;
	if (len < (int)sizeof(*iph))
		return NULL;
	if (*pos + len > end)
		return NULL;
	*pos += len;
	return iph;
}

static __always_inline struct udphdr *parse_udphdr(void **pos, void *end)
{
	struct udphdr *udp = *pos;

	if ((void *)(udp + 1) > end)
		return NULL;
	*pos = udp + 1;
	return udp;
}

/* Ethernet + IPv4: returns the IPv4 header or NULL (not IPv4, or truncated). */
static __always_inline struct iphdr *parse_eth_ipv4(void **pos, void *end)
{
	struct ethhdr *eth = parse_ethhdr(pos, end);

	if (!eth || eth->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	return parse_iphdr(pos, end);
}

#endif /* XDP_DISPATCH_PARSE_H */
