#!/usr/bin/env bash
# Mutation testing of the pure core with mutmut, by the unit tier alone (tests/unit).
#
#   scripts/mutation.sh                 every module of the pure core (MODULES below)
#   scripts/mutation.sh --changed [REF] only those changed since the merge base with REF
#                                       (default: main); prints a line and exits 0 if none
#   scripts/mutation.sh --stale         only those whose source differs from the last run
#                                       that passed them (tests/mutation-baseline; what
#                                       scripts/test.sh runs: quick when nothing changed)
#   scripts/mutation.sh FILE...         just these files (paths under dispatcher/)
#
# A module that scores >= 90% has its source's sha256 written to tests/mutation-baseline
# (commit it with the change), so that --stale skips it until its source changes again.
#
# Works in a scratch copy (.mutation/, git-ignored) so the worktree never holds mutants;
# each run starts from scratch (mutmut's cache ignores test changes). Prints one score line per
# module: killed / (killed + survived + timeouts...) over the mutants mutmut made there.
# config/model.py is scored over its error-mark functions only (MARK_FUNCS): the rest of
# that file is pydantic declarations tested by the config tests, not the mark logic.
# Survivors judged equivalent are listed with a reason in tests/mutation-survivors.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-$REPO/.venv/bin/python}
MUTMUT=${MUTMUT:-$(dirname "$PY")/mutmut}
WORK=${MUTATION_DIR:-$REPO/.mutation}
MODULES=(
    dispatcher/chain/rules.py
    dispatcher/chain/protocol.py
    dispatcher/chain/state.py
    dispatcher/config/plan.py
    dispatcher/config/drift.py
    dispatcher/chain/freplace/plan.py
    dispatcher/chain/linked/plan.py
    dispatcher/config/model.py
)
MARK_FUNCS="_Err _pos _fmt_path _Converter _model_fields_at _translate _nearest _at _raw_both _raise"

selected=()
if [[ ${1:-} == --changed ]]; then
    base=$(git merge-base HEAD "${2:-main}")
    changed=$(git diff --name-only "$base" -- dispatcher; git ls-files -m -o --exclude-standard dispatcher)
    for m in "${MODULES[@]}"; do
        grep -qx "$m" <<<"$changed" && selected+=("$m")
    done
    if [[ ${#selected[@]} -eq 0 ]]; then
        echo "mutation: no pure-core module changed since $(git rev-parse --short "$base")"
        exit 0
    fi
elif [[ ${1:-} == --stale ]]; then
    for m in "${MODULES[@]}"; do
        grep -qxF "$(sha256sum "$m")" tests/mutation-baseline 2>/dev/null || selected+=("$m")
    done
    if [[ ${#selected[@]} -eq 0 ]]; then
        echo "mutation: every pure-core module is as its last passing run left it (tests/mutation-baseline)"
        exit 0
    fi
    echo "mutation: changed since their last passing run: ${selected[*]}"
elif [[ $# -gt 0 ]]; then
    selected=("$@")
else
    selected=("${MODULES[@]}")
fi

# A scratch copy of what the unit tier needs (the package, tests, objects it reads).
mkdir -p "$WORK"
# mutmut's cache keys results on the mutated source only: a run after the tests changed
# would report stale verdicts, so every run starts from scratch.
rm -rf "${WORK:?}/mutants"
COPY=(dispatcher tests bpf configs scripts deploy systemd README.md)
for c in "${COPY[@]}"; do rm -rf "${WORK:?}/$c"; done
cp -a "${COPY[@]}" "$WORK/"
cp pyproject.toml "$WORK/"
{
    echo "[mutmut]"
    echo "source_paths = dispatcher"
    echo "only_mutate ="
    for m in "${selected[@]}"; do echo "    $m"; done
    echo "pytest_add_cli_args_test_selection = tests/unit"
    # Not logic tests: they compile objects, build a wheel, time (a decoder's speed), graph
    # or scan the source
    # (mutmut's trampolines are not ours to lint), or bound the memory of a fuzz run
    # (the trampolines raise it past the bound).
    echo "pytest_add_cli_args ="
    for a in -p no:cacheprovider --ignore=tests/unit/test_bpf_objects_fresh.py \
             --ignore=tests/unit/test_packaging.py --ignore=tests/unit/test_layers.py \
             --ignore=tests/unit/test_import_cost.py \
             --ignore=tests/unit/test_fuzz_inputs.py --ignore=tests/unit/test_uapi.py \
             --deselect=tests/unit/test_insn.py::test_decode_large_program_is_fast; do
        echo "    $a"
    done
    echo "also_copy ="
    for c in "${COPY[@]:1}"; do echo "    $c"; done
    echo "use_git_change_detection = false"
} > "$WORK/setup.cfg"

start=$(date +%s)
cd "$WORK"
"$MUTMUT" run --max-children "${MUTATION_JOBS:-$(nproc)}" >"$WORK/mutmut.log" 2>&1 || {
    tail -20 "$WORK/mutmut.log" >&2; exit 1; }
secs=$(( $(date +%s) - start ))

# mutmut results --all: "<module>.x_<func>__mutmut_<n>: <status>" per mutant.
"$MUTMUT" results --all true > "$WORK/results.txt" 2>/dev/null
"$PY" - "$WORK/results.txt" "$MARK_FUNCS" "$REPO" "${selected[@]}" <<'PYEOF'
import hashlib, os, re, sys
results, mark_funcs, repo, modules = sys.argv[1], set(sys.argv[2].split()), sys.argv[3], sys.argv[4:]
rows = []
for line in open(results):
    # module.x_func__mutmut_N or module.xǁClassǁmethod__mutmut_N, then ": status"
    m = re.match(r"\s*([\w.]+?)\.x(?:_|ǁ)(\w+?)(?:ǁ\w+)?__mutmut_(\d+): (.+)$", line)
    if m:
        rows.append((m.group(1), m.group(2), line.split(":")[0].strip(), m.group(4).strip()))
bad = 0
open(results.replace("results.txt", "survivors.txt"), "w").close()
for path in modules:
    mod = path[:-3].replace("/", ".")
    mine = [r for r in rows if r[0] == mod]
    if mod == "dispatcher.config.model":
        mine = [r for r in mine if r[1] in mark_funcs]
    killed = sum(1 for r in mine if r[3] in ("killed", "timeout"))
    counted = [r for r in mine if r[3] not in ("skipped", "not checked")]
    score = 100.0 * killed / len(counted) if counted else 100.0
    bad += score < 90
    surv = [r[2] for r in mine if r[3] not in ("killed", "timeout", "skipped", "not checked")]
    print(f"mutation: {path}: {score:5.1f}% killed ({killed}/{len(counted)})")
    with open(results.replace("results.txt", "survivors.txt"), "a") as f:
        f.writelines(f"{s}\n" for s in surv)
    if score >= 90:          # the source this run passed (sha256sum's format)
        base = os.path.join(repo, "tests", "mutation-baseline")
        lines = open(base).read().splitlines() if os.path.exists(base) else []
        digest = hashlib.sha256(open(os.path.join(repo, path), "rb").read()).hexdigest()
        lines = sorted([ln for ln in lines if not ln.endswith(f"  {path}")]
                       + [f"{digest}  {path}"], key=lambda ln: ln.split("  ", 1)[1])
        with open(base, "w") as f:
            f.write("\n".join(lines) + "\n")
sys.exit(1 if bad else 0)
PYEOF
rc=$?
echo "mutation: ${#selected[@]} module(s) in ${secs}s; survivors listed in $WORK/survivors.txt"
echo "mutation: see one with: (cd $WORK && $MUTMUT show NAME)"
exit $rc
