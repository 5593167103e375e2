#!/usr/bin/env bash
# VM tier: boot other kernels under QEMU (virtme-ng, software emulation) and
# run the host-tier tests inside, where freplace must work.
#
#   scripts/vmtest.sh [KERNEL_IMAGE...]
#
# KERNEL_IMAGE is /boot/vmlinuz-RELEASE or /lib/modules/RELEASE/vmlinuz (Debian's plain
# -amd64 flavour: the -cloud one lacks 9p). Default: the newest 6.1, 6.12 and 7.x
# (scripts/kernels.sh); a missing series is a failure. Needs scripts/test.sh to
# have set up the venv ($REPO/.venv with virtme-ng), qemu-system-x86 and
# busybox-static. Results: .vmtest/RELEASE.xml (junit), .vmtest/RELEASE.log and
# .vmtest/results (one line per kernel, read by scripts/test.sh).
#
# Environment: VM_TIMEOUT (seconds per kernel, default 1800), VM_TEST_TIMEOUT
# (seconds per test inside the VM, default 300), VM_CPUS (2), VM_MEMORY (2G),
# VM_TESTS (space-separated pytest arguments instead of each kernel's selection, e.g.
# "tests/host/test_vm_smoke.py"; see selection() below for what each kernel runs).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
VENV=$REPO/.venv
VM_TIMEOUT=${VM_TIMEOUT:-1800}
VM_TEST_TIMEOUT=${VM_TEST_TIMEOUT:-300}
VM_CPUS=${VM_CPUS:-2}
VM_MEMORY=${VM_MEMORY:-2G}

die() { echo "vmtest: $*" >&2; exit 2; }

. "$REPO/scripts/kernels.sh"       # newest_kernel SERIES, kernel_release IMAGE

# What each kernel runs without VM_TESTS. 6.12 (Debian 12's newest) runs everything but
# `host_tier` (files, ELF sections, the agent: neither kernel nor chain kind matters);
# 6.1 also leaves out `once` (kernel-version-independent: user input, CLI wording,
# apply's transactions); 7.x (sid's newest) runs only what the kernel changes: freplace
# chains, the libxdp version interop, packet-changing components.
selection() {
    case $1 in
        6.12.*) echo "-m 'not host_tier' tests/host" ;;
        7.*) echo "-m 'freplace and not once and not host_tier' tests/host" ;;
        *) echo "-m 'not once and not host_tier' tests/host" ;;
    esac
}

[ -x "$VENV/bin/vng" ] || die "$VENV/bin/vng missing: run scripts/test.sh first"
[ -x "$VENV/bin/python" ] || die "$VENV/bin/python missing: run scripts/test.sh first"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
command -v busybox >/dev/null || die "busybox missing (apt-get install busybox-static)"

mkdir -p "$REPO/.vmtest"
results=$REPO/.vmtest/results   # one "release|verdict|seconds|detail" line per kernel
skips=$REPO/.vmtest/skips       # one "skips vm RELEASE: ..." line per kernel (skip-summary.sh)
: >"$results"
: >"$skips"
declare -a summary=()
failed=0

kernels=("$@")
if [ ${#kernels[@]} -eq 0 ]; then
    for series in 6.1 6.12 7; do
        k=$(newest_kernel "$series")
        if [ -z "$k" ]; then
            why="no $series.* kernel (/boot/vmlinuz-$series.*-amd64 or /lib/modules/$series.*-amd64/vmlinuz): scripts/test.sh installs it"
            echo "vmtest: $why" >&2
            echo "$series|FAIL|0|$why" >>"$results"
            summary+=("$(printf 'vm %-22s FAIL     0s  %s' "$series" "$why")")
            failed=1
        else
            kernels+=("$k")
        fi
    done
fi

# Python start-up is the VM tier's main cost: every import is several 9p
# round trips (the guest's root is the host's, uncached), ~10 s for pyroute2
# alone. So the guest unpacks the venv and the standard library into RAM and
# mounts them over the originals (same paths); two tarballs read
# sequentially cost ~12 s per boot and make imports ~5x faster.
# VM_PY_TMPFS=0 skips this.
pystage=$REPO/.vmtest/python
rm -rf "$pystage"
if [ "${VM_PY_TMPFS:-1}" = 1 ]; then
    bash "$REPO/scripts/vm-stage-python.sh" "$pystage" || die "cannot stage Python for the VM"
fi

for image in "${kernels[@]}"; do
    [ -r "$image" ] || die "cannot read kernel image $image"
    release=$(kernel_release "$image") || die "$image: expected /boot/vmlinuz-RELEASE or /lib/modules/RELEASE/vmlinuz"
    tests=${VM_TESTS:-$(selection "$release")}
    xml=$REPO/.vmtest/$release.xml
    log=$REPO/.vmtest/$release.log
    rm -f "$xml" "$log"

    # vng finds its helpers (virtme-run) on PATH; the guest gets its own PATH.
    cmd=(timeout --kill-after=30 "$VM_TIMEOUT"
         "$VENV/bin/vng" --disable-kvm --force-9p --cpus "$VM_CPUS" --memory "$VM_MEMORY"
         --run "$image" --user root --rwdir "$REPO"
         --exec "sh $REPO/tests/vm/guest.sh $REPO $release $VM_TEST_TIMEOUT $tests")
    echo "=== VM $release: ${cmd[*]}"
    start=$(date +%s)
    (cd "$REPO" && PATH="$VENV/bin:$PATH" "${cmd[@]}" </dev/null) 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    secs=$(( $(date +%s) - start ))
    # A VM that failed within seconds before the guest said a word never booted (seen
    # here: vng exit 255 after 4 s with no output, and QEMU's own assertion in
    # msix_table_mmio_write after 3 s); one whose QEMU vanished mid-run (exit 255, no
    # pytest summary: seen once on 7.2 after 300 s, not reproduced in two reruns) did
    # not finish. Boot it once more before judging; the first log is kept as .log.1.
    if { [ "$rc" -ne 0 ] && [ "$secs" -lt 30 ] && ! grep -aq '^guest: ' "$log"; } ||
       { [ "$rc" -eq 255 ] && ! grep -aqE '^=+ .*[0-9]+ (passed|failed|error).* in [0-9.]+s' "$log"; }; then
        cp "$log" "$log.1"
        echo "=== VM $release: exit status $rc after ${secs}s without a test summary; booting again (first log: $log.1)"
        start=$(date +%s)
        (cd "$REPO" && PATH="$VENV/bin:$PATH" "${cmd[@]}" </dev/null) 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        secs=$(( $(date +%s) - start ))
    fi

    verdict=PASS
    why=""
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        verdict=FAIL; why="timed out after ${VM_TIMEOUT}s"
    elif [ "$rc" -ne 0 ]; then
        verdict=FAIL; why="exit status $rc"
    elif [ ! -s "$xml" ]; then
        verdict=FAIL; why="no junit report $xml"
    fi
    counts=$(grep -a -E '^=+ .*[0-9]+ (passed|failed|error|skipped).* in [0-9.]+s' "$log" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
    [ "$verdict" = FAIL ] && failed=1
    echo "$release|$verdict|$secs|${counts:-no pytest summary}${why:+ ($why)}" >>"$results"
    summary+=("$(printf 'vm %-22s %s  %4ss  %s%s' "$release" "$verdict" "$secs" "${counts:-no pytest summary}" "${why:+ ($why)}")")
    bash "$REPO/scripts/skip-summary.sh" "vm $release" "$log" | tee -a "$skips"
done

echo
rm -rf "$pystage"
echo "=== VM tier summary"
printf '%s\n' "${summary[@]}"
cat "$skips"
exit "$failed"
