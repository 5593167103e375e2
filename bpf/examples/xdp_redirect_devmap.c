// SPDX-License-Identifier: GPL-2.0
/*
 * Redirect every packet through a devmap pinned by name (<pin root>/tx_port),
 * as the kernel's xdp_redirect_map sample and most XDP forwarders do. Slot 0
 * holds the egress interface; an empty slot makes the redirect fail, which
 * bpf_redirect_map turns into XDP_PASS (its flags argument).
 *
 * The kernel adds BPF_F_RDONLY_PROG to the flags of every devmap it creates,
 * so a loader that compares a pinned map's flags with the object's without
 * masking that bit cannot reuse the pin: this object is the test for that.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tx_port SEC(".maps");

SEC("xdp")
int xdp_fwd_devmap(struct xdp_md *ctx)
{
	return bpf_redirect_map(&tx_port, 0, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
