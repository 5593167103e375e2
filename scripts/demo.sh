#!/usr/bin/env bash
# A first look at xdp-dispatch (run as root after scripts/install.sh):
# inspect an example object, attach it to one end of a veth pair in skb
# (generic) mode, show it on the interface, detach it, remove the veth pair.
#
#   sudo bash scripts/demo.sh
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
XDPD=${XDP_DISPATCH:-xdp-dispatch}
OBJ=bpf/examples/xdp_counter.o   # relative: the demo runs from the checkout
IF0=xdpd-demo0
IF1=xdpd-demo1

cd "$REPO"
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root" >&2; exit 2; }
command -v "$XDPD" >/dev/null || { echo "demo.sh: $XDPD not found: run scripts/install.sh" >&2; exit 2; }

cleanup() {
    "$XDPD" unload "$IF0" --all >/dev/null 2>&1 || true
    ip link del "$IF0" 2>/dev/null || true
}
trap cleanup EXIT

run() { printf '\n$ %s\n' "$*"; "$@"; }

mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
ip link del "$IF0" 2>/dev/null || true
run ip link add "$IF0" type veth peer name "$IF1"
run ip link set "$IF0" up
run ip link set "$IF1" up

run "$XDPD" inspect "$OBJ"
run "$XDPD" load "$IF0" "$OBJ" -m skb
run "$XDPD" status "$IF0"
run ip link show "$IF0"
run "$XDPD" unload "$IF0" --all
run ip link show "$IF0"
run ip link del "$IF0"
trap - EXIT
echo
echo "demo.sh: done"
