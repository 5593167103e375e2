// SPDX-License-Identifier: GPL-2.0
/*
 * Count packets and bytes seen on the interface, then pass them on.
 *
 * The counters live in a per-CPU array with a single slot (key 0), so each
 * CPU updates its own copy without atomics; readers add the copies up.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counter);
} counters SEC(".maps");

SEC("xdp")
int xdp_counter(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct counter *c;

	c = bpf_map_lookup_elem(&counters, &key);
	if (c) {
		c->packets += 1;
		c->bytes += ctx->data_end - ctx->data;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
