"""Linked chains: BPF_PROG_TEST_RUN ns/packet vs the components run directly, and (where
the kernel allows freplace, i.e. in the VM) vs our freplace chain and libxdp's. Run as
root:

    python bench/linked_bench.py [--rounds 5] [--repeat 1000000]

Configurations (64-byte IPv4 frame), each loaded afresh per round, rounds shuffled,
medians compared:

* ``direct``: one xdp_pass attached alone (the harness floor plus one program);
* ``linked N``: N x xdp_pass linked into one program (``--dispatch linked``);
* ``freplace N`` / ``libxdp N``: the same N as our dispatcher chain / xdp-loader's
  (only where freplace works; skipped with a note elsewhere);
* ``real``: xdp_counter + xdp_drop_icmp + xdp_globals linked, vs the sum of the three
  attached directly one after another.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dispatcher import api  # noqa: E402
from dispatcher.chain.freplace.program import freplace as freplace_probe  # noqa: E402
from dispatcher.kernel import bpf, netlink  # noqa: E402

EX = os.path.join(REPO, "bpf", "examples")
PASS = os.path.join(EX, "xdp_pass.o")
REAL = [os.path.join(EX, n + ".o") for n in ("xdp_counter", "xdp_drop_icmp", "xdp_globals")]
IF_A, IF_B = "xdplbench0", "xdplbench1"
PKT = bytes(6) + bytes(6) + b"\x08\x00" + bytes.fromhex("450000320000000040110000c0000201c0000202") \
    + bytes.fromhex("04d2162e001e0000") + bytes(22)


def measure(repeat: int) -> int:
    xs = netlink.read_xdp(netlink.ifindex_of(IF_A))
    with bpf.prog_get_fd_by_id(xs.skb_prog_id) as fd:
        r = bpf.prog_test_run(fd.fd, PKT, repeat=repeat)
        assert r.retval == 2, r.retval
        return r.duration_ns


def build(kind: str, n: int, objs: list[str] | None = None) -> None:
    objs = objs or [PASS] * n
    if kind == "direct":
        api.load_plain(IF_A, objs[0], mode="skb")
    elif kind == "linked":
        api.load(IF_A, objs, mode="skb", dispatch="linked")
    elif kind == "freplace":
        api.load(IF_A, objs, mode="skb", dispatch="freplace")
    elif kind == "libxdp":
        subprocess.run(["xdp-loader", "load", "-m", "skb", IF_A, *objs], check=True,
                       capture_output=True)
    else:
        raise ValueError(kind)


def teardown() -> None:
    api.unload(IF_A, all=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1_000_000)
    args = ap.parse_args()
    fr = freplace_probe().supported
    subprocess.run(["ip", "link", "del", IF_A], capture_output=True)
    subprocess.run(["ip", "link", "add", IF_A, "type", "veth", "peer", "name", IF_B], check=True)
    subprocess.run(["ip", "link", "set", IF_A, "up"], check=True)
    try:
        configs: list[tuple[str, int, tuple[str, ...]]] = [("direct", 1, (PASS,))]
        for n in (1, 3, 10):
            configs.append(("linked", n, (PASS,) * n))
            if fr:
                configs.append(("freplace", n, (PASS,) * n))
                if shutil.which("xdp-loader"):
                    configs.append(("libxdp", n, (PASS,) * n))
        configs.append(("linked", 3, tuple(REAL)))
        configs += [("direct", 1, (o,)) for o in REAL]
        ns: dict[tuple[str, int, tuple[str, ...]], list[int]] = {c: [] for c in configs}
        rng = random.Random(7)
        for _ in range(args.rounds):
            order = configs[:]
            rng.shuffle(order)
            for c in order:
                build(c[0], c[1], list(c[2]))
                try:
                    ns[c].append(measure(args.repeat))
                finally:
                    teardown()
        med = {c: statistics.median(v) for c, v in ns.items()}
        print(f"BPF_PROG_TEST_RUN ns/packet, {args.repeat} repeats, median of {args.rounds} "
              f"fresh loads (kernel {os.uname().release}"
              f"{'' if fr else '; freplace refused: linked and direct only'})")
        floor = med[("direct", 1, (PASS,))]
        print(f"{'config':22s} {'ns/pkt':>8s} {'min':>6s} {'vs N x direct':>14s} "
              f"{'per slot':>9s}")
        for c in configs:
            if c[0] == "direct" and c[2] != (PASS,):
                continue
            name = f"{c[0]} N={c[1]}" + (" real" if c[2] == tuple(REAL) else "")
            direct_sum = (sum(med[("direct", 1, (o,))] for o in REAL) if c[2] == tuple(REAL)
                          else floor * c[1])
            per_slot = (med[c] - direct_sum + (c[1] - 1) * floor) / c[1] \
                if c[0] != "direct" else 0.0
            print(f"{name:22s} {med[c]:8.0f} {min(ns[c]):6d} {med[c] / direct_sum:14.2f} "
                  f"{per_slot:9.1f}")
        if fr:
            for n in (1, 3, 10):
                lk = med[("linked", n, (PASS,) * n)]
                fp = med[("freplace", n, (PASS,) * n)]
                line = f"ratio linked/freplace N={n}: {lk / fp:.2f}"
                if ("libxdp", n, (PASS,) * n) in med:
                    line += f"   linked/libxdp: {lk / med[('libxdp', n, (PASS,) * n)]:.2f}"
                print(line)
        print("per slot = (chain - sum of direct runs + (N-1) harness floors) / N: what one "
              "slot adds beyond its component's own work")
        return 0
    finally:
        try:
            teardown()
        except Exception:
            pass
        subprocess.run(["ip", "link", "del", IF_A], capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
