#!/usr/bin/env bash
# Write the `xdp-dispatch` command for a venv (used by scripts/install.sh and bench/):
#
#   scripts/write-launcher.sh VENV_PYTHON OUT [DIR...]
#
# OUT is a Python script run as `VENV_PYTHON -I -S` with the venv's site-packages (and
# each DIR, first) put on sys.path by hand. -S skips the site module, whose start-up work
# (.pth files, e.g. an editable install's import hook) costs more than a `status`;
# -I ignores PYTHON* variables and the user's site-packages, as a system tool should.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: write-launcher.sh VENV_PYTHON OUT [DIR...]" >&2; exit 2; }
py=$1
out=$2
shift 2
[ -x "$py" ] || { echo "write-launcher.sh: $py is not executable" >&2; exit 2; }
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
"$py" -I - "$py" "$tmp" "$@" <<'EOF'
import sys
import sysconfig

py, out, *dirs = sys.argv[1:]
paths = [*dirs, sysconfig.get_path("purelib")]
with open(out, "w") as f:
    f.write(f"""#!{py} -IS
# xdp-dispatch, written by scripts/write-launcher.sh: no site module (-S), isolated (-I).
import sys

sys.path.extend({paths!r})
from dispatcher.cli import entry

entry()
""")
EOF
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
