"""Cost of per-component counters in linked chains, and of reading them. Run as root:

    python bench/stats_bench.py [--rounds 9] [--repeat 1000000] [--ifaces 10]

1. BPF_PROG_TEST_RUN, 64-byte IPv4/UDP frame: N x xdp_pass linked with counts off and
   on (N = 1, 3, 10), each built afresh per round, rounds shuffled; min and median
   ns/packet, and the extra per slot ((on - off) / N). Target: <= 2 ns per slot.
2. ``stats`` and ``metrics`` in-process over ``--ifaces`` veths in a private netns, each
   running a 10-component linked chain with counts: ms per call (best of 20).
   Target: <= 10 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dispatcher import stats as dstats  # noqa: E402
from dispatcher.chain import router  # noqa: E402
from dispatcher.chain.linked import build, combine  # noqa: E402
from dispatcher.chain.model import NewProgram, request  # noqa: E402
from dispatcher.kernel import bpf, netlink  # noqa: E402
from dispatcher.obj.elf import read_object  # noqa: E402

PASS = os.path.join(REPO, "bpf", "examples", "xdp_pass.o")
PKT = bytes(6) + bytes(6) + b"\x08\x00" + bytes.fromhex("450000320000000040110000c0000201c0000202") \
    + bytes.fromhex("04d2162e001e0000") + bytes(22)
NS = "xdpd-statsbench"


def chain(n: int) -> list[combine.LinkComponent]:
    obj = read_object(PASS)
    prog = obj.programs[0]
    sha = build.file_sha256(PASS)
    return [combine.LinkComponent(obj, prog, f"p{i}", i, 1 << 2, sha) for i in range(n)]


def cost(rounds: int, repeat: int, root: str) -> None:
    configs = [(n, s) for n in (1, 3, 10) for s in (False, True)]
    ns: dict[tuple[int, bool], list[int]] = {c: [] for c in configs}
    rng = random.Random(14)
    for _ in range(rounds):
        order = configs[:]
        rng.shuffle(order)
        for n, s in order:
            with build.build(chain(n), pin_root=root, stats=s) as b:
                r = bpf.prog_test_run(b.prog.fd, PKT, repeat=repeat)
                assert r.retval == 2
                ns[(n, s)].append(r.duration_ns)
    print(f"BPF_PROG_TEST_RUN ns/packet, 64-byte frame, {repeat} repeats, {rounds} fresh "
          f"builds each (kernel {os.uname().release})")
    print(f"{'N':>3s} {'off min':>8s} {'off med':>8s} {'on min':>7s} {'on med':>7s} "
          f"{'extra/slot min':>15s} {'extra/slot med':>15s}")
    for n in (1, 3, 10):
        off, on = ns[(n, False)], ns[(n, True)]
        print(f"{n:3d} {min(off):8d} {statistics.median(off):8.0f} {min(on):7d} "
              f"{statistics.median(on):7.0f} {(min(on) - min(off)) / n:15.2f} "
              f"{(statistics.median(on) - statistics.median(off)) / n:15.2f}")


def reading(ifaces: int, root: str) -> None:
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        obj = read_object(PASS)
        sha = build.file_sha256(PASS)
        for i in range(ifaces):
            a = f"sb{i}a"
            subprocess.run(["ip", "-n", NS, "link", "add", a, "type", "veth", "peer", "name",
                            f"sb{i}b"], check=True)
            subprocess.run(["ip", "-n", NS, "link", "set", a, "up"], check=True)
            router.change(request(a, mode="skb", netns=NS, root=root, stats="counts", add=[
                NewProgram(obj, obj.programs[0], k, 1 << 2, label=f"c{k}", sha256=sha)
                for k in range(10)]))
            xs = netlink.read_xdp(netlink.ifindex_of(a, netns=NS), netns=NS)
            with bpf.prog_get_fd_by_id(xs.skb_prog_id) as fd:   # every component: PASS
                bpf.prog_test_run(fd.fd, PKT, repeat=1000)
        for fn, name in ((lambda: dstats.text(dstats.collect(None, NS)), "stats"),
                         (lambda: dstats.prometheus(dstats.collect(None, NS)), "metrics")):
            fn()
            best = float("inf")
            for _ in range(20):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            ifs = dstats.collect(None, NS)
            comps = sum(len(i.components) for i in ifs)
            print(f"{name}: {best * 1000:.2f} ms for {len(ifs)} interfaces x "
                  f"{comps // max(len(ifs), 1)} components (best of 20, in-process)")
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=1_000_000)
    ap.add_argument("--ifaces", type=int, default=10)
    args = ap.parse_args()
    from dispatcher.kernel import bpffs

    bpffs.ensure_bpffs(bpffs.DEFAULT_BPFFS)
    root = tempfile.mkdtemp(prefix="xdpd-statsbench-", dir=bpffs.DEFAULT_BPFFS)
    try:
        cost(args.rounds, args.repeat, root)
        reading(args.ifaces, root)
    finally:
        subprocess.run(["rm", "-rf", root], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
