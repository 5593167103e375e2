#!/usr/bin/env bash
# Install xdp-dispatch system-wide on Debian 12 (run as root; idempotent).
#
#   sudo bash scripts/install.sh
#
# - Debian packages the tool needs at run time (python3, python3-venv, iproute2)
# - a private virtualenv /opt/xdp-dispatch/venv with this checkout installed
#   (a normal, non-editable install: the checkout can be removed afterwards);
#   a venv also keeps clear of Debian's "externally managed" system Python
# - /usr/local/bin/xdp-dispatch: the venv's Python run with -I -S (scripts/write-launcher.sh;
#   skipping the site module makes every command start faster)
# - bpffs mounted on /sys/fs/bpf (needed for pinning; not persistent)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
PREFIX=${XDP_DISPATCH_PREFIX:-/opt/xdp-dispatch}
VENV=$PREFIX/venv
LINK=/usr/local/bin/xdp-dispatch
APT_PACKAGES=(python3 python3-venv iproute2 iputils-ping)
PYTHON3=${PYTHON3:-/usr/bin/python3}   # Debian's, whatever else is on PATH

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo bash scripts/install.sh)" >&2; exit 2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: apt-get install ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "install.sh: creating $VENV"
    mkdir -p "$PREFIX"
    "$PYTHON3" -m venv "$VENV"
fi

echo "install.sh: installing $REPO into $VENV"
# Build from a copy so the checkout is left as it was (no build/ or egg-info).
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./.vmtest --exclude=./build \
    --exclude='*.egg-info' -cf - . | tar -C "$src" -xf -
# A local directory is always rebuilt and reinstalled, so a rerun picks up changes.
"$VENV/bin/python" -m pip install -q "$src"

rm -f "$LINK"   # was a symlink into the venv in earlier versions
bash "$REPO/scripts/write-launcher.sh" "$VENV/bin/python" "$LINK"

if ! mountpoint -q /sys/fs/bpf; then
    mount -t bpf bpf /sys/fs/bpf
fi

echo "install.sh: done: $LINK (runs $VENV/bin/python -I -S)"
