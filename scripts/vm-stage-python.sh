#!/usr/bin/env bash
# Pack the dev venv and the standard library into DIR as tarballs that
# tests/vm/stage-python.sh unpacks into the guest's RAM (see scripts/vmtest.sh).
#   scripts/vm-stage-python.sh DIR
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd -P)
VENV=$REPO/.venv
pystage=$1
die() { echo "vm-stage-python: $*" >&2; exit 2; }
mkdir -p "$pystage"
stdlib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))') || die "cannot ask $VENV/bin/python for its stdlib"
sp=./lib/python3.11/site-packages
tar -C "$VENV" -cf "$pystage/venv.tar" --exclude="$sp/mypy" --exclude="$sp/mypyc" \
    --exclude="$sp/*__mypyc*" --exclude="$sp/pip" --exclude="$sp/ruff" \
    --exclude="$sp/kubernetes_validate" --exclude="$sp/libcst" --exclude="$sp/textual" \
    --exclude="$sp/mutmut" --exclude="$sp/grimp" --exclude="$sp/importlinter" . \
    || die "cannot pack $VENV"
tar -C "$stdlib" -cf "$pystage/stdlib.tar" --exclude=./test --exclude=./idlelib \
    --exclude=./tkinter --exclude=./turtledemo --exclude=./lib2to3 --exclude=./ensurepip . \
    || die "cannot pack $stdlib"
echo "$stdlib" >"$pystage/stdlib.path"
