// SPDX-License-Identifier: GPL-2.0
/*
 * Programs that libbpf loads but that cannot be attached to an interface's XDP
 * hook: a tc classifier and an XDP program meant to run from a devmap entry
 * (xdp_devmap_legacy.c has one in the pre-1.0 spelling). `inspect` lists them
 * and says why each is skipped; `load -n`, `check`, `plan` and `apply` refuse
 * them before any kernel call.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int tc_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

SEC("xdp/devmap")
int devmap_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
