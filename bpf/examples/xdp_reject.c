// SPDX-License-Identifier: GPL-2.0
/*
 * A program that compiles but that the kernel verifier REJECTS, kept to test
 * how verifier errors are reported. It reads the EtherType (bytes 12-13)
 * without first checking that the packet is that long, so the verifier
 * refuses the access ("invalid access to packet"). Do not attach it
 * anywhere; it will not load.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int xdp_reject(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;

	/* BUG (on purpose): no `if ((void *)(eth + 1) > data_end)` check. */
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return XDP_PASS;
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
