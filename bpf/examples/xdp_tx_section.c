// SPDX-License-Identifier: GPL-2.0
/*
 * An XDP program in a section whose name says nothing about its type, as
 * older tutorials write them (SEC("tx"), SEC("prog"), ...). iproute2 loads any
 * section as XDP (`ip link set dev X xdp obj xdp_tx_section.o sec tx`), and
 * bpftool does when told the type (`bpftool prog load ... type xdp`); libbpf on
 * its own refuses it ("missing BPF prog type"). xdp-dispatch lists it and
 * loads it with --prog-type xdp (config: prog_type: xdp).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tx")
int xdp_in_tx(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
