// SPDX-License-Identifier: GPL-2.0
/*
 * A devmap program in the pre-libbpf-1.0 section spelling "xdp_devmap/NAME",
 * as the kernel's older samples write it (libbpf < 1.0 and its legacy users
 * load it as an XDP program with expected attach type BPF_XDP_DEVMAP; the
 * libbpf 1.1 in bpftool 7.1 no longer knows the name). It runs from a devmap
 * entry and cannot be attached to an interface: xdp-dispatch says so before
 * any kernel call, as for SEC("xdp/devmap").
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp_devmap/egress")
int devmap_legacy(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
