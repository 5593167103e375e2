#!/usr/bin/env bash
# skip-summary.sh NAME PYTEST_LOG: one line listing the skip reasons of a pytest run
# (its -rs "SKIPPED [N] file:line: reason" lines) with counts, most frequent first, so a
# new kind of skip shows in CI's summary:
#   skips host: 29x kernel 6.18 refuses freplace (...) | 2x xdp-loader not installed
set -uo pipefail
name=$1 log=$2
line=$(grep -a -E '^SKIPPED \[[0-9]+\] ' "$log" 2>/dev/null \
    | sed -E 's/^SKIPPED \[([0-9]+)\] [^ ]+:[0-9]+: /\1\t/; s/^SKIPPED \[([0-9]+)\] [^ ]+: /\1\t/' \
    | awk -F'\t' '{n[$2] += $1} END {for (r in n) printf "%d\t%s\n", n[r], r}' \
    | sort -t$'\t' -k1,1nr -k2 | awk -F'\t' '{printf "%s%sx %s", (NR > 1 ? " | " : ""), $1, $2}')
echo "skips $name: ${line:-none}"
