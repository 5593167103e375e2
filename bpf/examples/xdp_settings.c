// SPDX-License-Identifier: GPL-2.0
/*
 * A UDP filter configured entirely through `.rodata` settings of several
 * types, each settable by name before load (config files: `globals:`):
 *
 *   enabled      bool            false: pass everything
 *   ports        __u16[4]        UDP destination ports that match (0 = unused)
 *   min_payload  __s32           match only payloads of at least this many bytes
 *                                (negative: any length)
 *   prefix       char[8]         match only payloads starting with this string
 *                                (empty: any payload)
 *   verdict      enum xdp_action what a matching packet gets
 *
 * Matching packets are counted in `.bss` (`matched`); the others pass.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "xdp_parse.h"

const volatile bool enabled = true;
const volatile __u16 ports[4] = { 9, 0, 0, 0 };
const volatile __s32 min_payload = -1;
const volatile char prefix[8] = "";
const volatile enum xdp_action verdict = XDP_DROP;

__u64 matched;

static __always_inline bool port_listed(__u16 port)
{
	int i;

#pragma unroll
	for (i = 0; i < 4; i++)
		if (ports[i] != 0 && port == bpf_htons(ports[i]))
			return true;
	return false;
}

SEC("xdp")
int xdp_settings(struct xdp_md *ctx)
{
	void *pos = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *iph;
	struct udphdr *udp;
	unsigned char *payload;
	int i;

	if (!enabled)
		return XDP_PASS;
	iph = parse_eth_ipv4(&pos, end);
	if (!iph || iph->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = parse_udphdr(&pos, end);
	if (!udp || !port_listed(udp->dest))
		return XDP_PASS;
	payload = pos;
	if (min_payload >= 0 && (long)(end - (void *)payload) < (long)min_payload)
		return XDP_PASS;
#pragma unroll
	for (i = 0; i < 8; i++) {
		if (prefix[i] == 0)
			break;
		if ((void *)(payload + i + 1) > end || payload[i] != (unsigned char)prefix[i])
			return XDP_PASS;
	}
	__sync_fetch_and_add(&matched, 1);
	return verdict;
}

char _license[] SEC("license") = "GPL";
