#!/usr/bin/env bash
# Run every test tier, installing what the tests need first.
#
#   sudo bash scripts/test.sh [unit] [mutation] [host] [vm]     (default: all four)
#
# Setup (idempotent; quick when everything is already there):
#   - Debian packages: clang, llvm, libbpf-dev, bpftool, xdp-tools, qemu, ...
#   - kernels for the VM tier: the newest 6.1 (bookworm) and 6.12
#     (bookworm-backports) linux-image-*-amd64
#   - a development venv in $REPO/.venv: the project (editable) + test extras
#     + virtme-ng
#   - bpffs mounted on /sys/fs/bpf
#   - libxdp 1.5.4 and 1.6.3 builds (scripts/libxdp-versions.sh fetch, cached)
# Tiers:
#   unit  tests/unit   pure Python, no kernel
#   mutation           mutation testing (mutmut, by the unit tier) of the pure-core modules
#                      whose source changed since their last passing run
#                      (scripts/mutation.sh --stale: nothing to do when none did)
#   host  tests/host   the running kernel (root, bpf(2), netlink, veths)
#   vm    tests/host   again, inside VMs with the 6.1 and 6.12 kernels
# Exits non-zero if setup or any tier failed. CI runs this (.ci/run).
# Tests run in TEST_JOBS processes (pytest-xdist; default: one per core, and one per vCPU
# inside the VMs): a test looks only at what it created (its interfaces, namespaces, bpffs
# and state directories), never at the whole system.
# A single test may take TEST_TIMEOUT seconds (default 120; VM_TEST_TIMEOUT,
# default 300, inside the VMs) before pytest-timeout fails it.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
VENV=$REPO/.venv
cd "$REPO" || exit 2

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

APT_PACKAGES=(
    clang llvm libbpf-dev linux-libc-dev bpftool xdp-tools
    binutils
    iproute2 iputils-ping kmod
    python3 python3-venv
    qemu-system-x86 busybox-static
)
BACKPORTS_LIST=/etc/apt/sources.list.d/bookworm-backports.sources
PY_EXTRA=(virtme-ng==1.42 pytest-timeout)
PYTHON3=${PYTHON3:-/usr/bin/python3}   # Debian's, whatever else is on PATH

log() { printf '\n=== %s\n' "$*"; }
die() { echo "test.sh: $*" >&2; exit 2; }

tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(unit mutation host vm)
for t in "${tiers[@]}"; do
    case $t in unit|mutation|host|vm) ;; *) die "unknown tier '$t' (unit, mutation, host, vm)";; esac
done
want() { local t; for t in "${tiers[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo bash scripts/test.sh): installing packages and the host/VM tiers need it"

T0=$(date +%s)

# ---------------------------------------------------------------- setup: apt
is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
. "$REPO/scripts/kernels.sh"       # newest_kernel SERIES

apt_updated=0
apt_update() {
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -q || die "apt-get update failed"
        apt_updated=1
    fi
}
apt_install() {
    apt_update
    apt-get install -y -q --no-install-recommends "$@" || die "apt-get install $* failed"
}

log "setup: Debian packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do is_installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt_install "${missing[@]}"
else
    echo "all present: ${APT_PACKAGES[*]}"
fi

if want vm; then
    if [ -z "$(newest_kernel 6.1)" ]; then
        echo "installing the bookworm kernel (6.1)"
        apt_install linux-image-amd64
    fi
    if [ -z "$(newest_kernel 6.12)" ]; then
        if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            echo "adding $BACKPORTS_LIST"
            cat >"$BACKPORTS_LIST" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
            apt_updated=0
        fi
        echo "installing the bookworm-backports kernel (6.12)"
        apt_install -t bookworm-backports linux-image-amd64
    fi
    # Debian sid's newest kernel (7.x): libxdp 1.6 on a 7.x kernel is what Ubuntu 26.04
    # ships. Fetched from the registry (scripts/libxdp-versions.sh kernel, cached) and its
    # modules put where the VM looks for them, /lib/modules/RELEASE, with depmod.
    kdir=$(bash scripts/libxdp-versions.sh kernel) || die "fetching sid's kernel failed"
    krel=$(basename "$kdir")
    if [ ! -e "/lib/modules/$krel/modules.dep" ]; then
        echo "installing sid's kernel $krel into /lib/modules/$krel"
        rm -rf "/lib/modules/$krel"
        cp -a "$kdir/root/usr/lib/modules/$krel" /lib/modules/ && depmod "$krel" \
            || die "cannot install sid's kernel modules into /lib/modules/$krel"
    fi
    echo "kernels: $(newest_kernel 6.1) $(newest_kernel 6.12) $(newest_kernel 7)"
fi

# ---------------------------------------------------------------- setup: venv
log "setup: $VENV"
stamp=$VENV/.xdp-dispatch-stamp
want_stamp="$PYTHON3 $(sha256sum pyproject.toml | cut -c1-16) ${PY_EXTRA[*]}"
if [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/vng" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ]; then
    echo "up to date"
else
    "$PYTHON3" -m venv --clear "$VENV" || die "$PYTHON3 -m venv failed (apt-get install python3-venv)"
    # (the filter drops pip's notes about this machine's absent local indexes)
    "$VENV/bin/python" -m pip install -q -e ".[test]" "${PY_EXTRA[@]}" 2>&1 \
        | grep -v "^WARNING: Location 'file:.*' is ignored"
    [ "${PIPESTATUS[0]}" -eq 0 ] || die "pip install failed"
    echo "$want_stamp" >"$stamp"
fi
PY=$VENV/bin/python
JOBS=${TEST_JOBS:-$(nproc)}

# ---------------------------------------------------------------- setup: libxdp builds
# Real libxdp 1.5.4 and 1.6.3 for the version-interop tests (cached in /var/lib/xdp-dispatch-tests:
# quick when present). The VM tier FAILS those tests when a build is missing.
if want host || want vm; then
    log "setup: libxdp builds (scripts/libxdp-versions.sh fetch)"
    bash scripts/libxdp-versions.sh fetch || die "fetching the libxdp builds failed"
fi

# ---------------------------------------------------------------- setup: bpffs
if ! mountpoint -q /sys/fs/bpf; then
    mount -t bpf bpf /sys/fs/bpf || die "cannot mount bpffs on /sys/fs/bpf"
fi
echo "setup done in $(( $(date +%s) - T0 ))s"

# ---------------------------------------------------------------- tiers
declare -a results=()
declare -a skiplines=()         # per tier: skip reasons with counts (scripts/skip-summary.sh)
npass=0
nfail=0
record() {  # name verdict seconds detail
    results+=("$(printf '%-28s %s  %4ss  %s' "$1" "$2" "$3" "$4")")
    if [ "$2" = PASS ]; then npass=$((npass + 1)); else nfail=$((nfail + 1)); fi
}

# run_pytest NAME PATH...: exit 5 (nothing collected) is a failure.
run_pytest() {
    local name=$1; shift
    local out start rc secs counts
    log "tier $name: pytest $*"
    out=$(mktemp)
    start=$(date +%s)
    # XDP_DISPATCH_TIER: a skip for lack of what this tier must have fails (tests/tier_requirements.py)
    XDP_DISPATCH_TIER=$name "$PY" -m pytest "$@" -n "$JOBS" -p no:cacheprovider -rfEs --timeout="${TEST_TIMEOUT:-120}" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    secs=$(( $(date +%s) - start ))
    counts=$(grep -a -E '^=+ .*[0-9]+ (passed|failed|error|skipped).* in [0-9.]+s' "$out" | tail -n 1 | tr -d '=' | sed 's/^ *//; s/ *$//')
    skiplines+=("$(bash scripts/skip-summary.sh "$name" "$out")")
    rm -f "$out"
    case $rc in
        0) record "$name" PASS "$secs" "$counts" ;;
        5) record "$name" FAIL "$secs" "no tests collected" ;;
        *) record "$name" FAIL "$secs" "${counts:-pytest exit $rc}" ;;
    esac
}

want unit && run_pytest unit tests/unit
if want mutation; then
    log "tier mutation: scripts/mutation.sh --stale"
    start=$(date +%s)
    out=$(mktemp)
    bash scripts/mutation.sh --stale 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    secs=$(( $(date +%s) - start ))
    detail=$(grep -a '^mutation: ' "$out" | grep -v ': see one with' | tail -n 20 | tr '\n' ';' | sed 's/mutation: //g; s/;$//')
    rm -f "$out"
    if [ "$rc" -eq 0 ]; then record mutation PASS "$secs" "$detail"; else record mutation FAIL "$secs" "${detail:-exit $rc}"; fi
fi
want host && run_pytest host tests/host

if want vm; then
    log "tier vm: scripts/vmtest.sh"
    start=$(date +%s)
    rm -f .vmtest/results .vmtest/skips
    bash scripts/vmtest.sh
    rc=$?
    secs=$(( $(date +%s) - start ))
    nvm=0
    [ -s .vmtest/skips ] && mapfile -t -O "${#skiplines[@]}" skiplines <.vmtest/skips
    if [ -s .vmtest/results ]; then
        while IFS='|' read -r release verdict ksecs detail; do
            record "vm $release" "$verdict" "$ksecs" "$detail"
            nvm=$((nvm + 1))
        done <.vmtest/results
    fi
    if [ "$nvm" -eq 0 ]; then
        record vm FAIL "$secs" "scripts/vmtest.sh exit $rc before running a kernel"
    elif [ "$rc" -ne 0 ] && ! grep -q '|FAIL|' .vmtest/results; then
        record vm FAIL "$secs" "scripts/vmtest.sh exit $rc"
    fi
fi

log "summary (total $(( $(date +%s) - T0 ))s)"
printf '%s\n' "${results[@]}"
[ ${#skiplines[@]} -gt 0 ] && printf '%s\n' "${skiplines[@]}"
echo "tiers: $npass passed, $nfail failed"
[ "$nfail" -eq 0 ]
