// SPDX-License-Identifier: GPL-2.0
/*
 * A multi-buffer ("frags") aware program: SEC("xdp.frags") makes the loader
 * set BPF_F_XDP_HAS_FRAGS, telling the kernel this program copes with
 * packets split over several buffers (jumbo frames, GRO/LRO). Only
 * ctx->data..data_end (the first buffer) is directly readable;
 * bpf_xdp_get_buff_len() gives the length of the whole packet.
 *
 * It records the largest packet seen and passes everything.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 max_len_seen;	/* .bss */

SEC("xdp.frags")
int xdp_frags(struct xdp_md *ctx)
{
	__u64 len = bpf_xdp_get_buff_len(ctx);

	if (len > max_len_seen)
		max_len_seen = len;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
