#!/bin/sh
# Runs INSIDE the test VM (started by scripts/vmtest.sh): the host tier's
# tests against the VM's kernel, where freplace is expected to work.
#
#   tests/vm/guest.sh REPO EXPECTED_KERNEL_RELEASE [TEST_TIMEOUT [PYTEST_ARG...]]
#
# TEST_TIMEOUT: seconds one test may take (pytest-timeout), default 300.
# PYTEST_ARG: what to run instead of tests/host (e.g. one test file).
# Writes junit XML to REPO/.vmtest/<release>.xml. Exit status: pytest's, with
# 5 ("no tests collected") turned into a failure.
set -u

repo=$1
expected=$2
test_timeout=${3:-300}
shift 2
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- tests/host

# The guest's PATH comes from virtme and must not find the project's venv:
# the venv's interpreter is always called by absolute path.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
python=$repo/.venv/bin/python

echo "guest: kernel $(uname -r) (expected $expected), $(nproc) cpus, up $(cut -d" " -f1 /proc/uptime)s"
echo "guest: PATH python3 is $(command -v python3 || echo none); tests use $python"

if ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
    mount -t bpf bpf /sys/fs/bpf || { echo "guest: cannot mount bpffs" >&2; exit 1; }
fi

# Python from RAM (see scripts/vmtest.sh): same paths, no 9p round trips.
. "$repo/tests/vm/stage-python.sh"

export XDP_DISPATCH_EXPECT_FREPLACE=1       # freplace-marked tests must run, not skip
export XDP_DISPATCH_VM_KERNEL="$expected"    # checked by tests/host/test_vm_smoke.py
export PYTHONDONTWRITEBYTECODE=1
export PYTHONUNBUFFERED=1

# One hung test must not eat the whole VM budget: fail it and go on.
timeout_opt=
if "$python" -c 'import pytest_timeout' 2>/dev/null; then
    timeout_opt=--timeout=$test_timeout
fi

mkdir -p "$repo/.vmtest"
cd "$repo" || exit 1
# shellcheck disable=SC2086
# One pytest worker per vCPU (pytest-xdist): under emulation a single process leaves the
# other vCPU idle while Python starts up.
"$python" -m pytest "$@" -n "$(nproc)" -p no:cacheprovider -v -rfEs $timeout_opt \
    --junitxml="$repo/.vmtest/$expected.xml" -o junit_suite_name="vm-$expected"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "guest: pytest collected no tests: failing" >&2
    rc=1
fi
echo "guest: pytest exit status $rc, up $(cut -d" " -f1 /proc/uptime)s"
exit "$rc"
