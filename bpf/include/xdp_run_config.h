/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Run-config metadata for XDP programs that are chained by a dispatcher.
 *
 * The manager (xdp-dispatch, and libxdp too) reads a program's default run
 * priority and its "chain call" actions from BTF, using this convention:
 *
 *   - a global variable named "_" + <program function name>,
 *   - placed in the ELF section ".xdp_run_config",
 *   - whose type is an anonymous struct; each member is declared with
 *     __uint(NAME, VALUE), i.e. `int (*NAME)[VALUE]`, so VALUE is stored in
 *     BTF as the element count of the array the member points to.
 *
 * Recognised member names: `priority` (lower runs first; default 50) and the
 * action names XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT (1 = the
 * next program in the chain runs when this program returns that action, 0 =
 * the chain stops there). XDP_PASS defaults to 1: write __uint(XDP_PASS, 0)
 * to turn it off. Any other member name makes the object invalid.
 *
 * Usage:
 *
 *   struct {
 *           __uint(priority, 10);
 *           __uint(XDP_PASS, 1);
 *           __uint(XDP_DROP, 1);
 *   } XDP_RUN_CONFIG(my_prog);
 *
 *   SEC("xdp")
 *   int my_prog(struct xdp_md *ctx) { ... }
 */
#ifndef XDP_DISPATCH_RUN_CONFIG_H
#define XDP_DISPATCH_RUN_CONFIG_H

#include <bpf/bpf_helpers.h>	/* SEC() and __uint() */

#define XDPD_PASTE_(a, b) a##b
#define XDPD_PASTE(a, b) XDPD_PASTE_(a, b)

#ifndef XDP_RUN_CONFIG
#define XDP_RUN_CONFIG(func) XDPD_PASTE(_, func) SEC(".xdp_run_config")
#endif

#endif /* XDP_DISPATCH_RUN_CONFIG_H */
