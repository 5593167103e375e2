// SPDX-License-Identifier: GPL-2.0
/*
 * Two programs in one object; only the second calls a kfunc. The extern kfunc
 * declaration puts a FUNC with extern linkage (and a .ksyms DATASEC) into the
 * object's BTF, which the kernel refuses as is: libbpf rewrites ("sanitizes")
 * that BTF before loading it, so the first program loads although the object
 * uses kfuncs. xdp-dispatch does the same, and refuses only a program that
 * really calls a kfunc (it does not resolve kfuncs), naming it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Linux >= 6.5: a dynptr over the packet. */
extern int bpf_dynptr_from_xdp(struct xdp_md *xdp, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym;

SEC("xdp")
int xdp_plain(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_uses_kfunc(struct xdp_md *ctx)
{
	struct bpf_dynptr ptr;

	if (bpf_dynptr_from_xdp(ctx, 0, &ptr))
		return XDP_DROP;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
