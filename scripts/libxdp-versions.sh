#!/usr/bin/env bash
# Real libxdp builds for the version-interop tests, fetched from Debian's
# package registry WITHOUT installing anything system-wide.
#
#   scripts/libxdp-versions.sh [fetch]       fetch + extract every version (idempotent)
#   scripts/libxdp-versions.sh kernel        also fetch sid's newest kernel image
#   scripts/libxdp-versions.sh run VER CMD…  run CMD (xdp-loader, xdp-filter, …) of libxdp VER;
#                                            a CMD with a slash is any program, run against VER's libs
#   scripts/libxdp-versions.sh dir VER       print the extracted root of VER
#
# VER is 1.5.4 (Debian trixie) or 1.6.3 (Debian sid); 1.3.1 is Debian 12's
# installed xdp-tools and is not fetched. Each suite gets a private apt
# configuration (its own sources.list, lists and archive cache) under
# $LIBXDP_CACHE (default: /var/lib/xdp-dispatch-tests/libxdp, outside the checkout so
# that CI's clean checkouts reuse it: it holds only Debian's signed packages; not under
# /var/cache, which the test VM's init hides under a tmpfs); the .debs
# are unpacked with dpkg -x into $LIBXDP_CACHE/<VER>/root. Binaries run through
# that root's own dynamic loader (they need a newer glibc than Debian 12's) with
# LIBXDP_OBJECT_PATH pointing at the root's bpf directory, so that libxdp loads
# its own xdp-dispatcher.o and not the system's.
#
# The suite moves: when its libxdp is no longer VER the fetch fails and says
# which version the suite has now (update the table below).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
CACHE=${LIBXDP_CACHE:-/var/lib/xdp-dispatch-tests/libxdp}
PKGS=(xdp-tools libxdp1 libbpf1 libelf1t64 libc6 zlib1g libzstd1)
ARCHLIB=usr/lib/x86_64-linux-gnu

die() { echo "libxdp-versions: $*" >&2; exit 2; }

suite_of() {
    case $1 in
        1.5.4) echo trixie ;;
        1.6.3) echo sid ;;
        *) die "unknown libxdp version '$1' (known: 1.5.4 1.6.3)" ;;
    esac
}

mirror() {
    local m
    m=$(grep -rhoE "https?://[^ ]+/debian$" /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -1 || true)
    [ -n "$m" ] || m=http://deb.debian.org/debian
    printf '%s\n' "$m"
}

# apt-get options for a private configuration in directory $1.
apt_opts() {
    printf '%s\n' -o "Dir::Etc::SourceList=$1/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o "Dir::State::Lists=$1/lists" -o "Dir::Cache=$1/cache" \
        -o "Dir::State::status=$1/status" -o APT::Get::List-Cleanup=0
}

# Set up (once) and refresh (when older than a day) the private apt state of a suite.
suite_apt() {
    local suite=$1 c=$CACHE/apt-$1
    mkdir -p "$c/lists/partial" "$c/cache/archives/partial"
    [ -e "$c/status" ] || : >"$c/status"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) $suite main" >"$c/sources.list"
    local stamp=$c/updated
    if [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440)" ]; then
        mapfile -t O < <(apt_opts "$c")
        apt-get -q "${O[@]}" update >"$c/update.log" 2>&1 || { cat "$c/update.log" >&2; die "apt-get update for $suite failed"; }
        touch "$stamp"
    fi
    printf '%s\n' "$c"
}

fetch_version() {
    local ver=$1 suite c root have
    suite=$(suite_of "$ver")
    root=$CACHE/$ver/root
    if [ -x "$root/usr/sbin/xdp-loader" ] && [ -e "$CACHE/$ver/done" ]; then
        return 0
    fi
    c=$(suite_apt "$suite")
    mapfile -t O < <(apt_opts "$c")
    have=$(apt-cache "${O[@]}" policy libxdp1 | awk '/Candidate:/ {print $2}')
    case $have in
        "$ver"|"$ver"-*) ;;
        *) die "Debian $suite now has libxdp $have, not $ver: update suite_of in $0" ;;
    esac
    rm -rf "$CACHE/$ver"
    mkdir -p "$CACHE/$ver/debs"
    (cd "$CACHE/$ver/debs" && apt-get -q "${O[@]}" download "${PKGS[@]}") >"$CACHE/$ver/download.log" 2>&1 \
        || { cat "$CACHE/$ver/download.log" >&2; die "apt-get download for $ver failed"; }
    mkdir -p "$root"
    local d
    for d in "$CACHE/$ver"/debs/*.deb; do dpkg -x "$d" "$root"; done
    [ -x "$root/usr/sbin/xdp-loader" ] || die "$ver: no usr/sbin/xdp-loader in the packages"
    [ -e "$root/$ARCHLIB/bpf/xdp-dispatcher.o" ] || die "$ver: no xdp-dispatcher.o in the packages"
    touch "$CACHE/$ver/done"
    echo "libxdp-versions: libxdp $ver from Debian $suite in $root" >&2
}

# sid's newest kernel image and modules (for the VM matrix), unpacked under $CACHE/kernel.
fetch_kernel() {
    local c rel k=$CACHE/kernel
    c=$(suite_apt sid)
    mapfile -t O < <(apt_opts "$c")
    # linux-image-amd64 depends on the signed image; the unsigned one is linux-image-REL-amd64-unsigned,
    # and Debian >= 7.x splits it into linux-binary-REL + linux-modules-REL.
    rel=$(apt-cache "${O[@]}" depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {sub(/.*linux-image-/, ""); print; exit}')
    rel=${rel%-unsigned}
    [ -n "$rel" ] || die "cannot tell sid's kernel release from linux-image-amd64"
    if [ -e "$k/$rel/done" ]; then
        printf '%s\n' "$k/$rel"
        return 0
    fi
    rm -rf "${k:?}/$rel"
    mkdir -p "$k/$rel/debs" "$k/$rel/root"
    local pkgs=()
    local p
    for p in "linux-binary-$rel" "linux-modules-$rel"; do
        apt-cache "${O[@]}" show "$p" >/dev/null 2>&1 && pkgs+=("$p")
    done
    [ ${#pkgs[@]} -gt 0 ] || pkgs=("linux-image-$rel-unsigned")
    (cd "$k/$rel/debs" && apt-get -q "${O[@]}" download "${pkgs[@]}") >"$k/$rel/download.log" 2>&1 \
        || { cat "$k/$rel/download.log" >&2; die "kernel download failed"; }
    local d
    for d in "$k/$rel"/debs/*.deb; do dpkg -x "$d" "$k/$rel/root"; done
    touch "$k/$rel/done"
    printf '%s\n' "$k/$rel"
}

run_version() {
    local ver=$1; shift
    [ $# -gt 0 ] || die "run $ver: which command? (e.g. xdp-loader status)"
    fetch_version "$ver"
    local root=$CACHE/$ver/root bin=$1; shift
    local path=$bin
    case $bin in
        */*) ;;     # a program of our own, run against this libxdp
        *) path=$root/usr/sbin/$bin; [ -x "$path" ] || path=$root/usr/bin/$bin ;;
    esac
    [ -x "$path" ] || die "$ver has no $bin"
    LIBXDP_OBJECT_PATH=$root/$ARCHLIB/bpf exec "$root/$ARCHLIB/ld-linux-x86-64.so.2" \
        --library-path "$root/$ARCHLIB" "$path" "$@"
}

cmd=${1:-fetch}
case $cmd in
    fetch) fetch_version 1.5.4; fetch_version 1.6.3 ;;
    kernel) fetch_kernel ;;
    run) shift; [ $# -ge 1 ] || die "run VER CMD…"; run_version "$@" ;;
    dir) [ $# -eq 2 ] || die "dir VER"; fetch_version "$2"; printf '%s\n' "$CACHE/$2/root" ;;
    *) die "unknown command '$cmd' (fetch, kernel, run VER CMD…, dir VER)" ;;
esac
