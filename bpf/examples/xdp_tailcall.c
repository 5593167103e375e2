// SPDX-License-Identifier: GPL-2.0
/*
 * A tail call through a program array.
 *
 * xdp_tail_entry jumps to whatever program sits in slot 0 of "jmp_table".
 * While the slot is empty, bpf_tail_call() returns and the entry falls
 * through to XDP_DROP (fail closed: nothing passes until a handler is
 * installed). xdp_tail_target, in the same object, is the handler meant for
 * slot 0: it counts the frames it sees in "tail_hits" and passes them. The
 * slot is filled from user space (bpftool map update ... value id N, or a
 * BPF_MAP_UPDATE_ELEM with the target's fd).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} jmp_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tail_hits SEC(".maps");

SEC("xdp")
int xdp_tail_entry(struct xdp_md *ctx)
{
	bpf_tail_call(ctx, &jmp_table, 0);
	return XDP_DROP;	/* slot 0 empty */
}

SEC("xdp")
int xdp_tail_target(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *hits = bpf_map_lookup_elem(&tail_hits, &key);

	if (hits)
		__sync_fetch_and_add(hits, 1);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
