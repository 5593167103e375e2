"""Start-up cost of the control path, this tree vs another checkout, in ONE run.

    python bench/startup_bench.py [--base DIR] [--rounds 30]

Each tree's package is installed as users get it (bench/launcher.py: a byte-compiled copy
run by the launcher scripts/install.sh writes, `python -I -S`). Cases: `status lo`, and
`load` of an example object onto a missing interface (it parses the object and imports
the chain layer, then fails at the interface lookup before any kernel change). Rounds
alternate the trees; reports medians, the bare interpreter, and the part above it
(imports and work) as a ratio this/base. Default base: a worktree of 492064e (before the
chain layer was reorganised) at /tmp/dupbase.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.launcher import launcher  # noqa: E402

OBJ = os.path.join(REPO, "bpf", "examples", "xdp_pass.o")
CASES = {"status": ["status", "lo"], "load": ["load", "nosuchif0", OBJ, "-m", "skb"]}


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=False)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="/tmp/dupbase")
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t1, tempfile.TemporaryDirectory() as t2:
        cmds = {"this": launcher(t1), "base": launcher(t2, args.base)}
        for name, cmd in cmds.items():          # check the path really runs
            cp = subprocess.run([cmd, *CASES["status"]], capture_output=True, text=True)
            assert cp.returncode == 0, (name, cp.stderr)
        bare: list[float] = []
        times: dict[tuple[str, str], list[float]] = {(c, t): [] for c in CASES for t in cmds}
        for _ in range(args.rounds):
            bare.append(run([sys.executable, "-I", "-S", "-c", "pass"]))
            for case, argv in CASES.items():
                for name, cmd in cmds.items():
                    times[(case, name)].append(run([cmd, *argv]))
    b = statistics.median(bare) * 1e3
    print(f"bare interpreter (-I -S): {b:.1f} ms; medians of {args.rounds}, ms")
    print(f"{'case':8} {'this':>8} {'base':>8} {'above bare: this/base':>22}")
    for case in CASES:
        t = statistics.median(times[(case, "this")]) * 1e3
        s = statistics.median(times[(case, "base")]) * 1e3
        print(f"{case:8} {t:8.1f} {s:8.1f} {(t - b) / (s - b):22.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
