// SPDX-License-Identifier: GPL-2.0
/*
 * Drop IPv4 packets whose source address is in a blocklist of prefixes.
 *
 * The blocklist is a longest-prefix-match trie, pinned by name
 * (<pin root>/blocklist), so several programs and user-space tools can share
 * it, and it survives the program being reloaded. Keys are
 * {prefix length, address in network byte order}; the value is unused (1).
 * LPM tries must be created with BPF_F_NO_PREALLOC.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "xdp_parse.h"

struct ipv4_lpm_key {
	__u32 prefixlen;	/* number of significant bits of addr */
	__u32 addr;		/* network byte order */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct ipv4_lpm_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} blocklist SEC(".maps");

SEC("xdp")
int xdp_blocklist(struct xdp_md *ctx)
{
	void *pos = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ipv4_lpm_key key;
	struct iphdr *iph;

	iph = parse_eth_ipv4(&pos, end);
	if (!iph)
		return XDP_PASS;

	key.prefixlen = 32;
	key.addr = iph->saddr;
	if (bpf_map_lookup_elem(&blocklist, &key))
		return XDP_DROP;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
