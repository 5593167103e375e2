"""Inlined linked chains vs called ones vs one program attached directly (issue 12).
Run as root:

    python bench/inline_bench.py [--rounds 9] [--repeat 1000000]

BPF_PROG_TEST_RUN, 64-byte IPv4/UDP frame: ``direct`` is xdp_pass loaded alone (the
harness floor plus one trivial program); ``inlined N`` / ``called N`` are N x xdp_pass
linked into one program with the entries inlined into main or called as bpf-to-bpf
subprograms, counts off and on (N = 1, 3, 10). Each configuration is built afresh per
round, rounds shuffled; min and median ns/packet. Per slot = (chain - direct) / N.
Targets (host): inlined 10-chain <= 1.2 x direct; <= 1 ns per slot; with counts <= 2 ns.
Also prints the verifier's processed-instruction count (prog_info.verified_insns).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dispatcher.chain.linked import build, combine  # noqa: E402
from dispatcher.kernel import bpf, loader  # noqa: E402
from dispatcher.obj.elf import read_object  # noqa: E402

PASS = os.path.join(REPO, "bpf", "examples", "xdp_pass.o")
PKT = bytes(6) + bytes(6) + b"\x08\x00" + bytes.fromhex("450000320000000040110000c0000201c0000202") \
    + bytes.fromhex("04d2162e001e0000") + bytes(22)
Config = tuple[str, int, bool]          # (direct | inlined | called, N, counts)


def chain(n: int) -> list[combine.LinkComponent]:
    obj = read_object(PASS)
    prog = obj.programs[0]
    sha = build.file_sha256(PASS)
    return [combine.LinkComponent(obj, prog, f"p{i}", i, 1 << 2, sha) for i in range(n)]


def run(c: Config, repeat: int, root: str) -> tuple[int, int]:
    """(ns/packet, verified insns) of one fresh build of ``c``."""
    kind, n, counts = c
    if kind == "direct":
        obj = read_object(PASS)
        lo, p = loader.load_object_program(obj, obj.programs[0], pin_root=root)
        try:
            r = bpf.prog_test_run(p.fd.fd, PKT, repeat=repeat)
            return r.duration_ns, bpf.prog_info(p.fd.fd).verified_insns
        finally:
            p.fd.close()
            lo.close()
    with build.build(chain(n), pin_root=root, stats=counts, inline=kind == "inlined") as b:
        assert all(s.inlined for s in b.combined.slots) == (kind == "inlined")
        r = bpf.prog_test_run(b.prog.fd, PKT, repeat=repeat)
        assert r.retval == 2, r.retval
        return r.duration_ns, bpf.prog_info(b.prog.fd).verified_insns


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=1_000_000)
    args = ap.parse_args()
    configs: list[Config] = [("direct", 1, False)] + [
        (k, n, s) for k in ("inlined", "called") for n in (1, 3, 10) for s in (False, True)]
    ns: dict[Config, list[int]] = {c: [] for c in configs}
    verified: dict[Config, int] = {}
    rng = random.Random(12)
    with tempfile.TemporaryDirectory(dir="/sys/fs/bpf") as root:
        for _ in range(args.rounds):
            order = configs[:]
            rng.shuffle(order)
            for c in order:
                t, v = run(c, args.repeat, root)
                ns[c].append(t)
                verified[c] = v
    direct_min = min(ns[configs[0]])
    direct_med = statistics.median(ns[configs[0]])
    print(f"BPF_PROG_TEST_RUN ns/packet, 64-byte frame, {args.repeat} repeats, {args.rounds} "
          f"fresh builds each, shuffled (kernel {os.uname().release})")
    print(f"{'config':22s} {'min':>6s} {'median':>7s} {'x direct':>9s} {'per slot':>9s} "
          f"{'verified':>9s}")
    for c in configs:
        kind, n, counts = c
        name = "direct xdp_pass" if kind == "direct" else \
            f"{kind} N={n}{' counts' if counts else ''}"
        med = statistics.median(ns[c])
        per = "" if kind == "direct" else f"{(med - direct_med) / n:9.2f}"
        print(f"{name:22s} {min(ns[c]):6d} {med:7.0f} {med / direct_med:9.2f} {per:>9s} "
              f"{verified[c]:9d}")
    print(f"(direct min {direct_min} ns; per slot from medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
