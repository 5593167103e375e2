#!/usr/bin/env bash
# Capture the dispatcher config map value that real libxdp builds write, as
# test fixtures (tests/fixtures/dispatcher-config/).
#
#   scripts/capture-dispatcher-config.sh [KERNEL_IMAGE]     (host: boots a VM)
#   scripts/capture-dispatcher-config.sh --guest OUTDIR     (inside the VM)
#
# The host refuses freplace, so libxdp can build a chain only in a VM. In the
# VM, each of libxdp 1.3.1 (Debian 12's installed xdp-loader), 1.5.4 and 1.6.3
# (scripts/libxdp-versions.sh) loads the same three programs on a veth in skb
# mode:
#   bpf/examples/xdp_runcfg.o  (run config: priority 10, XDP_PASS+XDP_DROP)
#   bpf/examples/xdp_frags.o   (SEC("xdp.frags"): program_flags 0x20, so the
#                               dispatcher-wide is_xdp_frags stays 0)
#   bpf/examples/xdp_pass.o    (defaults: priority 50, XDP_PASS)
# (fixture libxdp-VER-xdp-loader), then builds chains through the library API
# with tests/vm/libxdp_attach.c (per-program frags support; 1.6.3: a device-bound
# dispatcher), and the dispatcher's config map value (key 0) is written, with
# bpftool, to OUTDIR/NAME.hex together with OUTDIR/NAME.status (xdp-loader
# status), OUTDIR/NAME.map.json, and for the xdp-loader and device-bound chains
# xdp-dispatch's own reading (OUTDIR/NAME.ours.txt, .ours.json). Default kernel: the newest
# /boot/vmlinuz-6.12.*-amd64.
# Run under `flock /tmp/xdp-vm.lock` (the VM tier's lock).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
VERSIONS=(1.3.1 1.5.4 1.6.3)

# Write the config map value of the dispatcher on xfix0 to $out/$1.hex (+ .map.json, .status).
dump() {
    local name=$1 prog map
    prog=$(ip -j link show xfix0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["xdp"]["prog"]["id"])')
    map=$(bpftool -j prog show id "$prog" | python3 -c 'import json,sys; print(json.load(sys.stdin)["map_ids"][0])')
    bpftool -j map lookup id "$map" key 0 0 0 0 | python3 -c '
import json, sys
v = json.load(sys.stdin)["value"]
print("".join(b[2:] if b.startswith("0x") else b for b in v))' >"$out/$name.hex"
    bpftool -j map show id "$map" >"$out/$name.map.json"
    "${loader[@]}" status xfix0 >"$out/$name.status" 2>&1
    echo "guest: $name: dispatcher prog $prog map $map, $(( $(wc -c <"$out/$name.hex") / 2 )) bytes"
    cat "$out/$name.status"
    # and how xdp-dispatch reads the same chain (slow under emulation: xdp-loader's and
    # the device-bound chains only)
    case $name in
        *-xdp-loader|*-devbound)
            "$REPO/.venv/bin/xdp-dispatch" status xfix0 >"$out/$name.ours.txt" 2>&1
            "$REPO/.venv/bin/xdp-dispatch" status xfix0 --json >"$out/$name.ours.json" 2>&1
            cat "$out/$name.ours.txt" ;;
    esac
}

# $1: fixture name; the rest: the command that builds the chain on xfix0.
capture() {
    local name=$1; shift
    echo "guest: $name: $*"
    if ! "$@"; then
        echo "guest: $name: could not build the chain" >&2
        rc=1
        return
    fi
    dump "$name"
    "${loader[@]}" unload xfix0 --all || { ip link set xfix0 xdp off; rc=1; }
}

guest() {
    out=$1
    local ver ex=$REPO/bpf/examples attach=$REPO/.cache/bin/libxdp-attach
    rc=0
    mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
    ip link add xfix0 type veth peer name xfix1 || return 1
    ip link set xfix0 up && ip link set xfix1 up
    mkdir -p "$out"
    for ver in "${VERSIONS[@]}"; do
        local run=()
        [ "$ver" = 1.3.1 ] || run=("$REPO/scripts/libxdp-versions.sh" run "$ver")
        loader=("${run[@]}" xdp-loader)
        [ ${#run[@]} -gt 0 ] || loader=(xdp-loader)
        echo "guest: libxdp $ver: $("${loader[@]}" status --version 2>&1)"
        # xdp-loader: it never marks a component frags-capable (libbpf applies the
        # xdp.frags section's flag only at load time), so program_flags stay 0.
        capture "libxdp-$ver-xdp-loader" "${loader[@]}" load -m skb xfix0 \
            "$ex/xdp_runcfg.o" "$ex/xdp_frags.o" "$ex/xdp_pass.o"
        # The library API: one frags-capable component among non-frags ones (per-slot
        # flag 0x20, dispatcher-wide flag 0), then all frags-capable (dispatcher flag 1).
        capture "libxdp-$ver-mixed-frags" "${run[@]}" "$attach" xfix0 skb \
            "$ex/xdp_runcfg.o" "$ex/xdp_frags.o:frags" "$ex/xdp_pass.o"
        capture "libxdp-$ver-all-frags" "${run[@]}" "$attach" xfix0 skb \
            "$ex/xdp_runcfg.o:frags" "$ex/xdp_frags.o:frags" "$ex/xdp_pass.o:frags"
        if [ "$ver" = 1.6.3 ]; then
            # Device binding (v3 only): native mode, the dispatcher bound to xfix0.
            capture "libxdp-$ver-devbound" "${run[@]}" "$attach" xfix0 native devbind \
                "$ex/xdp_runcfg.o" "$ex/xdp_frags.o:frags" "$ex/xdp_pass.o"
        fi
    done
    ip link del xfix0
    return $rc
}

if [ "${1:-}" = --guest ]; then
    guest "$2"
    exit $?
fi

image=${1:-$(for f in /boot/vmlinuz-6.12.*-amd64; do [ -e "$f" ] && echo "$f"; done | sort -V | tail -n 1)}
[ -r "$image" ] || { echo "capture: no kernel image (give one: /boot/vmlinuz-6.12.*-amd64)" >&2; exit 2; }
[ -x "$REPO/.venv/bin/vng" ] || { echo "capture: $REPO/.venv/bin/vng missing (pip install virtme-ng)" >&2; exit 2; }
"$REPO/scripts/libxdp-versions.sh" fetch || exit 2
mkdir -p "$REPO/.cache/bin"
clang -O1 -Wall -o "$REPO/.cache/bin/libxdp-attach" "$REPO/tests/vm/libxdp_attach.c" \
    /usr/lib/x86_64-linux-gnu/libxdp.so.1 || exit 2
out=$REPO/.cache/dispatcher-config/$(basename "$image")
rm -rf "$out"
mkdir -p "$out"
(cd "$REPO" && PATH="$REPO/.venv/bin:$PATH" timeout --kill-after=30 900 \
    "$REPO/.venv/bin/vng" --disable-kvm --force-9p --cpus 2 --memory 2G \
    --run "$image" --user root --rwdir "$REPO" \
    --exec "bash $REPO/scripts/capture-dispatcher-config.sh --guest $out" </dev/null)
rc=$?
echo "capture: results in $out (exit $rc)"
exit $rc
