// SPDX-License-Identifier: GPL-2.0
/*
 * Global variables in their three flavours, each ending up in its own
 * internal map that the loader creates from the ELF section:
 *
 *   .rodata  `const volatile` settings: the loader may change them before
 *            loading, after which the map is frozen (read-only for everyone);
 *   .data    initialised, writable variables;
 *   .bss     zero-initialised, writable variables (counters here).
 *
 * Behaviour: IPv4/UDP packets to `drop_port` get the verdict `match_verdict`
 * (XDP_DROP unless changed); everything else passes. drop_port 0 disables
 * the match.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xdp_parse.h"

/* .rodata: set before load, e.g. drop_port=53. Default: UDP "discard" (9). */
const volatile __u16 drop_port = 9;

/* .data: initialised and writable at run time. */
__u32 match_verdict = XDP_DROP;

/* .bss: zero-initialised counters. */
__u64 seen_packets;
__u64 matched_packets;

SEC("xdp")
int xdp_globals(struct xdp_md *ctx)
{
	void *pos = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *iph;
	struct udphdr *udp;

	__sync_fetch_and_add(&seen_packets, 1);

	iph = parse_eth_ipv4(&pos, end);
	if (!iph || iph->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = parse_udphdr(&pos, end);
	if (!udp)
		return XDP_PASS;

	if (drop_port != 0 && udp->dest == bpf_htons(drop_port)) {
		__sync_fetch_and_add(&matched_packets, 1);
		return match_verdict;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
