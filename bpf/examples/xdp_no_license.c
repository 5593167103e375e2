// SPDX-License-Identifier: GPL-2.0
/*
 * An XDP program whose object has no "license" section, as some tutorial
 * programs are written. Alone it loads (it calls no GPL-only helper). In a
 * linked chain it would make the whole chain non-GPL, so the kernel would
 * refuse the GPL-only helper calls of the other components: xdp-dispatch
 * refuses such a chain up front and names this component.
 * (The SPDX line above is for this repository; the object carries no license.)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_no_license(struct xdp_md *ctx)
{
	return XDP_PASS;
}
