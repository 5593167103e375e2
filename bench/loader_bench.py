"""Loader speed: our in-process parse + relocate + load vs `bpftool prog loadall` (whole process).

    python bench/loader_bench.py [--repeat N]

Prints, per object, the median of N runs for each and the ratio ours/bpftool, then the
wall time of `xdp-dispatch inspect` (a fresh interpreter per run). Needs root and bpftool.
Programs are loaded and closed at once; bpftool runs in a private mount namespace with
its own bpffs so nothing stays pinned.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dispatcher.kernel import loader  # noqa: E402
from dispatcher.obj.elf import read_object  # noqa: E402
from dispatcher.uapi import BPF_PROG_TYPE_XDP  # noqa: E402
from tests.objects import all_objects  # noqa: E402


def ours(path: str, pin_root: str) -> float:
    t = time.perf_counter()
    spec = read_object(path)
    with loader.open_object(spec, pin_root=pin_root) as lo:
        for prog in spec.programs:
            if prog.prog_type == BPF_PROG_TYPE_XDP:
                loader.load_program(lo, prog).close()
    return time.perf_counter() - t


def bpftool(path: str) -> float:
    """Wall time of the `bpftool prog loadall` process alone (timed inside the namespace)."""
    script = ("mount -t bpf bpf /sys/fs/bpf && mkdir /sys/fs/bpf/p && s=$(date +%s%N) && "
              f"bpftool prog loadall {path} /sys/fs/bpf/p && e=$(date +%s%N) && echo $((e - s))")
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1]) / 1e9


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    pin_root = "/sys/fs/bpf/xdpd-bench"
    os.makedirs(pin_root, exist_ok=True)
    try:
        rows = []
        for path in all_objects():
            spec = read_object(path)
            if not any(p.prog_type == BPF_PROG_TYPE_XDP for p in spec.programs) or "reject" in path:
                continue
            o = statistics.median(ours(path, pin_root) for _ in range(args.repeat))
            b = statistics.median(bpftool(path) for _ in range(args.repeat))
            rows.append((os.path.basename(path), o, b))
            for n in os.listdir(pin_root):
                os.unlink(os.path.join(pin_root, n))
    finally:
        for n in os.listdir(pin_root):
            os.unlink(os.path.join(pin_root, n))
        os.rmdir(pin_root)
    print(f"{'object':28s} {'ours ms':>9s} {'bpftool ms':>11s} {'ratio':>6s}")
    for name, o, b in rows:
        print(f"{name:28s} {o * 1e3:9.2f} {b * 1e3:11.2f} {o / b:6.2f}")
    ratios = [o / b for _, o, b in rows]
    print(f"median ratio ours/bpftool: {statistics.median(ratios):.2f} (max {max(ratios):.2f})")
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dispatcher", "inspect",
                        os.path.join(REPO, "bpf/examples/xdp_counter.o")], check=True,
                       capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(args.repeat):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    py = (time.perf_counter() - t) / args.repeat
    print(f"xdp-dispatch inspect wall time: median {statistics.median(times) * 1e3:.0f} ms "
          f"(bare python start-up {py * 1e3:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
