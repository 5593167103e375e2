"""Chain benchmarks, ours vs libxdp's xdp-loader, side by side in ONE run (use the VM:
freplace is needed). Run as root:

    python bench/chain_bench.py [--rounds 5] [--repeat 1000000]

Data path: BPF_PROG_TEST_RUN ns/packet (64-byte frame) of our dispatcher chain and of
libxdp's with the same 1, 3 and 10 trivial XDP_PASS components, and of the component
attached directly. Every configuration is loaded afresh in each round, rounds in
shuffled order; medians are compared (software emulation varies ±40% per load).
Also the xlated instruction count of each dispatcher.

Control path: wall time of `xdp-dispatch load` of 10 objects in one command vs
`xdp-loader load` of the same 10; `status`; `unload --all`; the Python interpreter's
bare start-up; and the in-process API doing the same load.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dispatcher import api, netlink  # noqa: E402
from dispatcher.syscalls import bpf  # noqa: E402
from dispatcher.syscalls.fd import OwnedFd  # noqa: E402

PASS = os.path.join(REPO, "bpf/examples/xdp_pass.o")
IF_A, IF_B = "xdpbench0", "xdpbench1"
PKT = bytes(12) + b"\x08\x00" + bytes(50)


def sh(*cmd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def cli(*args: str) -> float:
    return sh(sys.executable, "-m", "dispatcher", *args)


def attached_fd() -> OwnedFd:
    xs = netlink.read_xdp(netlink.ifindex_of(IF_A))
    return bpf.prog_get_fd_by_id(xs.skb_prog_id)


def measure(repeat: int) -> tuple[int, int]:
    with attached_fd() as fd:
        r = bpf.prog_test_run(fd.fd, PKT, repeat=repeat)
        assert r.retval == 2, r.retval
        return r.duration_ns, bpf.prog_info(fd.fd).xlated_insn_cnt


def build(kind: str, n: int) -> None:
    if kind == "ours":
        api.load(IF_A, [PASS] * n, mode="skb")
    elif kind == "libxdp":
        sh("xdp-loader", "load", "-m", "skb", IF_A, *([PASS] * n))
    else:
        api.load_plain(IF_A, PASS, mode="skb")


def teardown() -> None:
    api.unload(IF_A, all=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1_000_000)
    args = ap.parse_args()
    subprocess.run(["ip", "link", "del", IF_A], capture_output=True)
    subprocess.run(["ip", "link", "add", IF_A, "type", "veth", "peer", "name", IF_B], check=True)
    subprocess.run(["ip", "link", "set", IF_A, "up"], check=True)
    try:
        return run(args)
    finally:
        try:
            teardown()
        except Exception:
            pass
        subprocess.run(["ip", "link", "del", IF_A], capture_output=True)


def run(args: argparse.Namespace) -> int:
    configs = [("direct", 1)] + [(k, n) for n in (1, 3, 10) for k in ("ours", "libxdp")]
    ns: dict[tuple[str, int], list[int]] = {c: [] for c in configs}
    insns: dict[tuple[str, int], int] = {}
    rng = random.Random(42)
    for _ in range(args.rounds):
        order = configs[:]
        rng.shuffle(order)
        for c in order:
            build(*c)
            d, x = measure(args.repeat)
            teardown()
            ns[c].append(d)
            insns[c] = x
    print(f"Data path, BPF_PROG_TEST_RUN, {args.repeat} repeats, median of {args.rounds} fresh loads"
          f" (kernel {os.uname().release})")
    print(f"{'config':12s} {'ns/pkt':>8s} {'min':>6s} {'max':>6s} {'xlated':>7s}")
    for c in configs:
        v = ns[c]
        print(f"{c[0] + ' N=' + str(c[1]):12s} {statistics.median(v):8.0f} {min(v):6d} {max(v):6d} "
              f"{insns[c]:7d}")
    for n in (1, 3, 10):
        o, lx = statistics.median(ns[("ours", n)]), statistics.median(ns[("libxdp", n)])
        print(f"ratio ours/libxdp N={n}: {o / lx:.2f}")

    # Control path.
    rows = []
    for _ in range(args.rounds):
        t_ours_load = cli("load", IF_A, *([PASS] * 10), "-m", "skb")
        t_ours_status = cli("status", IF_A)
        t_ours_unload = cli("unload", IF_A, "--all")
        t_lx_load = sh("xdp-loader", "load", "-m", "skb", IF_A, *([PASS] * 10))
        t_lx_status = sh("xdp-loader", "status", IF_A)
        t_lx_unload = sh("xdp-loader", "unload", IF_A, "--all")
        t = time.perf_counter()
        api.load(IF_A, [PASS] * 10, mode="skb")
        t_api = time.perf_counter() - t
        teardown()
        t_py = sh(sys.executable, "-c", "pass")
        rows.append((t_ours_load, t_lx_load, t_ours_status, t_lx_status, t_ours_unload,
                     t_lx_unload, t_api, t_py))
    med = [statistics.median(r[i] for r in rows) * 1e3 for i in range(8)]
    print("\nControl path, wall ms, median of", args.rounds)
    print(f"{'operation':28s} {'ours':>8s} {'xdp-loader':>11s} {'ratio':>6s}")
    for label, i in (("load 10 objects (1 command)", 0), ("status", 2), ("unload --all", 4)):
        print(f"{label:28s} {med[i]:8.0f} {med[i + 1]:11.0f} {med[i] / med[i + 1]:6.2f}")
    print(f"{'in-process API load of 10':28s} {med[6]:8.0f} {med[1]:11.0f} {med[6] / med[1]:6.2f}")
    print(f"python start-up alone: {med[7]:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
