// SPDX-License-Identifier: GPL-2.0
/*
 * A bpf_loop() callback: the helper calls loop_step() once per 32 bytes of
 * the frame (at most 64 times). Each call adds its index to a running sum
 * kept in a context struct on the caller's stack.
 *
 * The array map "loop_stats" records, for key 0, how many callback calls
 * were made in total and, for key 1, the sum of the last run. Frames whose
 * sum goes over 200 (longer than about 640 bytes) are dropped; the verdict
 * depends only on the frame's length.
 *
 * The callback is passed as a function pointer (a BPF_PSEUDO_FUNC ld_imm64),
 * which the kernel accepts only when the program has BTF func_info.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} loop_stats SEC(".maps");

struct loop_ctx {
	__u64 sum;
	__u64 calls;
};

static int loop_step(__u32 index, void *data)
{
	struct loop_ctx *lc = data;

	lc->sum += index;
	lc->calls += 1;
	return 0;	/* 0: continue, 1: stop early */
}

SEC("xdp")
int xdp_loop(struct xdp_md *ctx)
{
	struct loop_ctx lc = {};
	__u32 len = ctx->data_end - ctx->data;
	__u32 rounds = len / 32;
	__u32 key = 0;
	__u64 *v;

	if (rounds > 64)
		rounds = 64;
	bpf_loop(rounds, loop_step, &lc, 0);

	v = bpf_map_lookup_elem(&loop_stats, &key);
	if (v)
		__sync_fetch_and_add(v, lc.calls);
	key = 1;
	v = bpf_map_lookup_elem(&loop_stats, &key);
	if (v)
		*v = lc.sum;
	return lc.sum > 200 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
