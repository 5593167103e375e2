#!/usr/bin/env bash
# A first look at xdp-dispatch (run as root after scripts/install.sh):
# inspect an example object, apply configs/lo-pass-counter.yaml (xdp_pass and
# xdp_counter chained on lo in skb mode), show the chain, send a few pings
# through it, re-apply (nothing changes), show drift, and unload it.
#
#   sudo bash scripts/demo.sh
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
XDPD=${XDP_DISPATCH:-xdp-dispatch}
CONFIG=configs/lo-pass-counter.yaml   # relative: the demo runs from the checkout

cd "$REPO"
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root" >&2; exit 2; }
command -v "$XDPD" >/dev/null || { echo "demo.sh: $XDPD not found: run scripts/install.sh" >&2; exit 2; }
if ip -d link show lo | grep -q 'prog/xdp'; then
    echo "demo.sh: lo already runs an XDP program; the demo leaves it alone" >&2
    exit 2
fi

cleanup() { "$XDPD" unload lo --all >/dev/null 2>&1 || true; }
trap cleanup EXIT

run() { printf '\n$ %s\n' "$*"; "$@"; }

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
run "$XDPD" inspect bpf/examples/xdp_counter.o
run "$XDPD" check "$CONFIG"
run "$XDPD" apply "$CONFIG"
run "$XDPD" status lo
run ping -c 3 -q 127.0.0.1
run "$XDPD" apply "$CONFIG"            # idempotent: nothing to change
run "$XDPD" status lo --config "$CONFIG"
run "$XDPD" unload lo --all
trap - EXIT
echo
echo "demo.sh: done"
