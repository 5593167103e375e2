// SPDX-License-Identifier: GPL-2.0
/*
 * CO-RE (compile once, run everywhere) field relocations on the XDP context.
 *
 * The program reads struct xdp_md through a local "flavor" of it (the part
 * of the name after ___ is ignored when matching the kernel's type) that
 * lists only some fields, in a different order than the kernel's. Every
 * access carries a CO-RE relocation (preserve_access_index), which the
 * kernel resolves against its own BTF at load time, so the offsets used are
 * the kernel's, not the ones in this file. bpf_core_field_exists() asks
 * whether the running kernel's xdp_md has egress_ifindex (Linux >= 5.14).
 *
 * Frames shorter than 42 bytes (Ethernet + IPv4 + UDP headers) are dropped;
 * others pass. The array map "core_stats" holds, for key 0, the packets seen
 * and, for key 1, the answer of bpf_core_field_exists (1 or 0).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct xdp_md___core {
	__u32 egress_ifindex;
	__u32 data_end;
	__u32 rx_queue_index;
	__u32 data;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} core_stats SEC(".maps");

SEC("xdp")
int xdp_core(struct xdp_md *ctx)
{
	struct xdp_md___core *c = (void *)ctx;
	void *data = (void *)(long)c->data;
	void *data_end = (void *)(long)c->data_end;
	__u32 key = 0;
	__u64 *v;

	v = bpf_map_lookup_elem(&core_stats, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	key = 1;
	v = bpf_map_lookup_elem(&core_stats, &key);
	if (v)
		*v = bpf_core_field_exists(c->egress_ifindex);
	if (data + 42 > data_end)
		return XDP_DROP;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
