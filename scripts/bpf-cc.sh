#!/usr/bin/env bash
# Compile one BPF C file into an object, reproducibly.
#
#   scripts/bpf-cc.sh SRC.c OUT.o
#
# SRC is given relative to the repository root and the compiler runs from
# there, with the root mapped to "." in debug info: the BTF line info then
# names "./bpf/examples/x.c" and never an absolute path, so the same source
# gives the same object in any checkout. Used by the Makefile (`make bpf`)
# and by tests/unit/test_bpf_objects_fresh.py, so the flags live only here.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 SRC.c OUT.o" >&2
    exit 2
fi
src=$1
out=$2
repo=$(cd "$(dirname "$0")/.." && pwd -P)
clang=${CLANG:-clang}

# Where <asm/types.h> lives (clang does not search it for -target bpf).
multiarch=$("$clang" -print-multiarch 2>/dev/null || true)
[ -n "$multiarch" ] || multiarch=$(uname -m)-linux-gnu

case $out in
    /*) ;;
    *) out=$PWD/$out ;;
esac
cd "$repo"
# A source may ask for extra flags on a line "// bpf-cc-flags: ..." (the dispatcher
# uses -mcpu=v3: 32-bit ALU ops save four instructions per slot on its hot path).
# shellcheck disable=SC2046
exec "$clang" -O2 -g -target bpf -Wall $(sed -n 's|^// bpf-cc-flags: ||p' "$src") \
    -I bpf/include -idirafter "/usr/include/$multiarch" \
    -fdebug-prefix-map="$repo"=. \
    -c "$src" -o "$out"
