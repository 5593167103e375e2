#!/usr/bin/env bash
# Chain benchmarks in a VM (freplace needed): scripts/vmbench.sh [KERNEL_IMAGE] [bench args]
# Bench args may start with --bench chain|apply|linked|all (default chain: bench/chain_bench.py;
# apply: bench/apply_bench.py; linked: bench/linked_bench.py), e.g. scripts/vmbench.sh "" --bench apply --rounds 2
# Default kernel: the newest 6.12 in /boot. Needs the venv from scripts/test.sh.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd -P)
image=${1:-$(ls -1 /boot/vmlinuz-6.12.*-amd64 | sort -V | tail -n 1)}
[ $# -gt 0 ] && shift
bash "$REPO/scripts/vm-stage-python.sh" "$REPO/.vmtest/python"
# fresh bytecode for the checkout (the guest would otherwise compile edited modules each run)
env -u PYTHONDONTWRITEBYTECODE "$REPO/.venv/bin/python" -m compileall -q "$REPO/dispatcher" \
    "$REPO/bench" >/dev/null
cd "$REPO"
PATH="$REPO/.venv/bin:$PATH" timeout --kill-after=30 1800 "$REPO/.venv/bin/vng" --disable-kvm \
    --force-9p --cpus 2 --memory 2G --run "$image" --user root --rwdir "$REPO" \
    --exec "sh $REPO/tests/vm/bench.sh $REPO $*" </dev/null
