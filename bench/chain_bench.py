"""Chain benchmarks, ours vs libxdp's xdp-loader, side by side in ONE run (use the VM:
freplace is needed). Run as root:

    python bench/chain_bench.py [--rounds 5] [--repeat 1000000]

Data path: BPF_PROG_TEST_RUN ns/packet (64-byte frame) of our dispatcher chain, of
libxdp's, and of our linked chain (components inlined, and called), with the same 1, 3
and 10 trivial XDP_PASS components, and of the component attached directly. Every configuration is loaded afresh in each round, rounds in
shuffled order; medians are compared (software emulation varies ±40% per load).
Also the xlated instruction count of each dispatcher.

Control path: wall time of `xdp-dispatch load` of 10 objects in one command vs
`xdp-loader load` of the same 10; `status`; `unload --all` (ours as scripts/install.sh
installs the command: python -I -S, see scripts/write-launcher.sh; with --python-m
also through `python -m dispatcher`); the in-process API doing the same (warm: a long-running user);
and the Python interpreter's bare start-up (`-c pass`, with -S, with -I -S).
`--only control --profile` adds where the time goes (imports and cProfile).
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
from collections.abc import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.launcher import launcher  # noqa: E402
from dispatcher import api  # noqa: E402
from dispatcher.kernel import bpf, netlink  # noqa: E402
from dispatcher.kernel.fd import OwnedFd  # noqa: E402

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
    if kind in ("ours", "ours-counts", "ours-timing"):   # -counts/-timing: fexit (issue 14)
        stats = kind.removeprefix("ours-") if "-" in kind else None
        api.load(IF_A, [PASS] * n, mode="skb", dispatch="freplace", stats=stats)
    elif kind in ("linked", "linked-calls"):          # counts off: as the others count nothing
        api.load(IF_A, [PASS] * n, mode="skb", dispatch="linked", stats="off",
                 inline=kind == "linked")
    elif kind == "linked-counts":                     # the default for linked chains
        api.load(IF_A, [PASS] * n, mode="skb", dispatch="linked", stats="counts")
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
    ap.add_argument("--count", type=int, default=10,
                    help="objects per control-path load (1 on kernels without freplace)")
    ap.add_argument("--only", choices=["data", "control"], help="run one part only")
    ap.add_argument("--python-m", action="store_true",
                    help="also time the CLI run as `python -m dispatcher` (the checkout, slower)")
    ap.add_argument("--profile", action="store_true",
                    help="also show where the control path's time goes (imports, cProfile)")
    args = ap.parse_args()
    subprocess.run(["ip", "link", "del", IF_A], capture_output=True)
    subprocess.run(["ip", "link", "add", IF_A, "type", "veth", "peer", "name", IF_B], check=True)
    subprocess.run(["ip", "link", "set", IF_A, "up"], check=True)
    try:
        if args.only != "control":
            data(args)
        if args.only != "data":
            control(args)
        return 0
    finally:
        try:
            teardown()
        except Exception:
            pass
        subprocess.run(["ip", "link", "del", IF_A], capture_output=True)


def data(args: argparse.Namespace) -> None:
    kinds = ("ours", "libxdp", "linked", "linked-calls", "ours-counts", "ours-timing",
             "linked-counts")
    configs = [("direct", 1)] + [(k, n) for n in (1, 3, 10) for k in kinds]
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
    print(f"{'config':18s} {'ns/pkt':>8s} {'min':>6s} {'max':>6s} {'xlated':>7s}")
    for c in configs:
        v = ns[c]
        print(f"{c[0] + ' N=' + str(c[1]):18s} {statistics.median(v):8.0f} {min(v):6d} "
              f"{max(v):6d} {insns[c]:7d}")
    med = {c: statistics.median(v) for c, v in ns.items()}
    for n in (1, 3, 10):
        lx = med[("libxdp", n)]
        print(f"N={n:<2d} ratio to libxdp: ours (freplace) {med[('ours', n)] / lx:.2f}, "
              f"linked inlined {med[('linked', n)] / lx:.2f}, "
              f"linked with calls {med[('linked-calls', n)] / lx:.2f}")
    for k in kinds:
        per_slot = (med[(k, 10)] - med[(k, 1)]) / 9
        print(f"per slot beyond the first, {k}: {per_slot:.1f} ns")
    for k in ("ours-counts", "ours-timing"):      # the price of opt-in counters (fexit)
        print(f"{k} vs no stats, per component per packet: " + ", ".join(
            f"N={n} {(med[(k, n)] - med[('ours', n)]) / n:.1f} ns" for n in (1, 3, 10)))
    print(f"linked with counts N=10 / libxdp N=10 (no counts): "
          f"{med[('linked-counts', 10)] / med[('libxdp', 10)]:.2f}")


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def control(args: argparse.Namespace) -> int:
    """Wall time of each control-path command: ours (the installed launcher, and
    `python -m dispatcher`), xdp-loader's, our in-process API; interpreter start-up alone."""
    with tempfile.TemporaryDirectory(dir="/run" if os.access("/run", os.W_OK) else None) as tmp:
        xdpd = launcher(tmp)
        ours_cmds = {"cli": [xdpd]}
        if args.python_m:
            ours_cmds["cli_m"] = [sys.executable, "-m", "dispatcher"]
        # warm the in-process API once (imports, packaged dispatcher parse, probes), as in a
        # long-running user of the library
        objs = [PASS] * args.count
        api.load(IF_A, objs, mode="skb")
        teardown()
        samples: dict[str, list[float]] = {}

        def add(key: str, t: float) -> None:
            samples.setdefault(key, []).append(t * 1e3)

        for _ in range(args.rounds):
            for kind, cmd in ours_cmds.items():
                add(f"{kind}_load", sh(*cmd, "load", IF_A, *objs, "-m", "skb"))
                add(f"{kind}_status", sh(*cmd, "status", IF_A))
                add(f"{kind}_unload", sh(*cmd, "unload", IF_A, "--all"))
            add("lx_load", sh("xdp-loader", "load", "-m", "skb", IF_A, *objs))
            add("lx_status", sh("xdp-loader", "status", IF_A))
            add("lx_unload", sh("xdp-loader", "unload", IF_A, "--all"))
            add("api_load", timed(lambda: api.load(IF_A, objs, mode="skb")))
            add("api_status", timed(lambda: api.status(IF_A)))
            add("api_unload", timed(lambda: api.unload(IF_A, all=True)))
            add("py", sh(sys.executable, "-c", "pass"))
            add("py_S", sh(sys.executable, "-S", "-c", "pass"))
            add("py_IS", sh(sys.executable, "-I", "-S", "-c", "pass"))
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"\nControl path, wall ms, median of {args.rounds} (kernel {os.uname().release})")
        print("ours = the xdp-dispatch command as scripts/install.sh writes it (python -I -S); "
              "start-up = `python -I -S -c pass`")
        print(f"{'operation':28s} {'ours':>7s} {'xdp-loader':>10s} {'ratio':>6s} "
              f"{'ours-start-up':>13s} {'ratio':>6s} {'API':>7s} {'ratio':>6s}"
              + (f" {'python -m':>9s}" if args.python_m else ""))
        rows = (f"load {args.count} objects (1 command)", "status", "unload --all")
        for label, op in zip(rows, ("load", "status", "unload"), strict=True):
            o, lx, a = med[f"cli_{op}"], med[f"lx_{op}"], med[f"api_{op}"]
            rest = o - med["py_IS"]
            print(f"{label:28s} {o:7.0f} {lx:10.0f} {o / lx:6.2f} {rest:13.0f} {rest / lx:6.2f} "
                  f"{a:7.1f} {a / lx:6.2f}"
                  + (f" {med[f'cli_m_{op}']:9.0f}" if args.python_m else ""))
        print(f"python start-up: `python -c pass` {med['py']:.0f} ms, `python -S -c pass` "
              f"{med['py_S']:.0f} ms, `python -I -S -c pass` {med['py_IS']:.0f} ms")
        if args.profile:
            profile(xdpd, objs)
    return 0


def profile(xdpd: str, objs: list[str]) -> None:
    """Where the time goes: the slowest imports of the launcher's `status`, and cProfile
    of the in-process API."""
    import cProfile
    import io
    import pstats

    api.load(IF_A, objs, mode="skb")
    try:
        r = subprocess.run([sys.executable, "-X", "importtime", "-I", "-S", xdpd, "status", IF_A],
                           capture_output=True, text=True, check=True)
    finally:
        teardown()
    rows = []
    for line in r.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[0].startswith("import time:") and "self" not in parts[0]:
            rows.append((int(parts[0].split(":")[1]), int(parts[1]), parts[2].rstrip()))
    print(f"\nimports of `status` (self us, cumulative us): {len(rows)} modules, "
          f"{sum(r[0] for r in rows) / 1e3:.0f} ms in all")
    for self_us, cum_us, name in sorted(rows, reverse=True)[:25]:
        print(f"{self_us:8d} {cum_us:8d} {name}")
    for label, fn in ((f"load {len(objs)}", lambda: api.load(IF_A, objs, mode="skb")),
                      ("status", lambda: api.status(IF_A)),
                      ("unload --all", lambda: api.unload(IF_A, all=True))):
        pr = cProfile.Profile()
        pr.enable()
        fn()
        pr.disable()
        out = io.StringIO()
        pstats.Stats(pr, stream=out).sort_stats("cumulative").print_stats(30)
        print(f"\ncProfile of API {label}:")
        print(out.getvalue())


if __name__ == "__main__":
    raise SystemExit(main())
