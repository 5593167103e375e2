"""``apply`` benchmarks, ours vs libxdp's xdp-loader where there is a counterpart, in ONE
run (use the VM: chains need freplace). Run as root:

    python bench/apply_bench.py [--rounds 5] [--only new,reapply,change,scale]
                                [--max-ifaces 32] [--scale-rounds 3]

* new:     `xdp-dispatch apply` of a file with a new 10-program chain vs `xdp-loader load`
           of the same 10 objects in one command (target <= 1.5x wall); the in-process
           API and the bare Python start-up are reported separately.
* reapply: `apply` of the unchanged file (nothing to do) vs the first apply (target <= 0.5x).
* change:  `apply` of a file where 1 of the 10 programs changed (an upgrade: reloaded, the
           other 9 re-linked) vs xdp-loader's `unload -i ID` + `load` of it (target <= 1.0x).
* scale:   `apply` of 3 programs on each of 1, 2, 4, 8, 16, 32 veth interfaces (one file,
           one command) from nothing: total and per-interface time (target: linear growth).

Every timed command is a fresh process of the command as installed (bench/launcher.py),
as users run it; rounds alternate ours and xdp-loader's; medians are reported (software
emulation varies a lot per load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.launcher import launcher  # noqa: E402
from dispatcher import api  # noqa: E402

XDPD: list[str] = [sys.executable, "-m", "dispatcher"]   # main() sets the installed launcher

EX = os.path.join(REPO, "bpf", "examples")
TEN = [os.path.join(EX, n) for n in ["xdp_pass.o", "xdp_counter.o", "xdp_drop_icmp.o",
                                      "xdp_runcfg.o", "xdp_pass_long.o"] * 2]
THREE = [os.path.join(EX, n) for n in ["xdp_counter.o", "xdp_drop_icmp.o", "xdp_pass.o"]]
UPGRADED = os.path.join(EX, "xdp_pass.o")      # replaces TEN[2] (xdp_drop_icmp) in "change"
IF_A, IF_B = "xdpab0", "xdpab1"
ALL = ("new", "reapply", "change", "scale")


def sh(*cmd: str) -> float:
    t = time.perf_counter()
    cp = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if cp.returncode not in (0, 2) or "error" in cp.stderr:
        raise SystemExit(f"{' '.join(cmd)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return dt


def cli(*args: str) -> float:
    return sh(*XDPD, *args)


def write_cfg(path: str, chains: dict[str, list[str]]) -> str:
    lines = ["version: 1", "interfaces:"]
    for iface, objs in chains.items():
        lines += [f"  - name: {iface}", "    mode: skb", "    programs:"]
        for k, o in enumerate(objs):
            lines += [f"      - name: p{k}",
                      f"        object: {o}", f"        priority: {10 + k}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def unload_all(*ifaces: str) -> None:
    for i in ifaces:
        try:
            api.unload(i, all=True)
        except Exception:
            pass


def veth(name: str, peer: str) -> None:
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)


def timed_api(cfg: str) -> float:
    t = time.perf_counter()
    api.apply_config(cfg)
    return time.perf_counter() - t


def med(v: list[float]) -> float:
    return statistics.median(v) * 1e3


def prog_id_of(iface: str, name: str, nth: int = 0) -> int:
    (st,) = api.status(iface)
    return [c.id for c in st.programs if c.name == name][nth]


def bench_new_reapply_change(tmp: str, rounds: int, which: set[str]) -> None:
    cfg = write_cfg(os.path.join(tmp, "ten.yaml"), {IF_A: TEN})
    changed = TEN[:2] + [UPGRADED] + TEN[3:]
    cfg2 = write_cfg(os.path.join(tmp, "ten2.yaml"), {IF_A: changed})
    r: dict[str, list[float]] = {k: [] for k in (
        "ours_new", "lx_new", "api_new", "py", "import", "ours_re", "ours_chg", "lx_chg",
        "api_first", "api_re", "api_chg")}
    for _ in range(rounds):
        if "new" in which or "reapply" in which:
            r["ours_new"].append(cli("apply", cfg))
            if "reapply" in which:
                r["ours_re"].append(cli("apply", cfg))
            unload_all(IF_A)
        if "reapply" in which:
            r["api_first"].append(timed_api(cfg))
            r["api_re"].append(timed_api(cfg))
            unload_all(IF_A)
        if "new" in which:
            r["lx_new"].append(sh("xdp-loader", "load", "-m", "skb", IF_A, *TEN))
            unload_all(IF_A)
            r["api_new"].append(timed_api(cfg))
            unload_all(IF_A)
            r["py"].append(sh(sys.executable, "-I", "-S", "-c", "pass"))
            paths = [os.path.join(os.path.dirname(XDPD[0]), "pkg"), sysconfig.get_path("purelib")]
            r["import"].append(sh(sys.executable, "-I", "-S", "-c",
                                  f"import sys; sys.path[:0] = {paths!r}; "
                                  "import dispatcher.cli, dispatcher.config.apply"))
        if "change" in which:
            cli("apply", cfg)
            r["ours_chg"].append(cli("apply", cfg2))
            r["api_chg"].append(timed_api(cfg))
            unload_all(IF_A)
            sh("xdp-loader", "load", "-m", "skb", IF_A, *TEN)
            pid = prog_id_of(IF_A, "xdp_drop_icmp")
            t = sh("xdp-loader", "unload", IF_A, "-i", str(pid))
            t += sh("xdp-loader", "load", "-m", "skb", "-p", "12", IF_A, UPGRADED)
            r["lx_chg"].append(t)
            unload_all(IF_A)
    print(f"\napply, 10-program chain on one veth (skb), wall ms, median of {rounds} "
          f"(kernel {os.uname().release})")
    print(f"{'operation':44s} {'ours':>8s} {'xdp-loader':>11s} {'ratio':>6s} {'target':>7s}")
    if "new" in which:
        o, lx = med(r["ours_new"]), med(r["lx_new"])
        print(f"{'apply new 10-program chain (1 command)':44s} {o:8.0f} {lx:11.0f} "
              f"{o / lx:6.2f} {'<=1.5':>7s}")
        a = med(r["api_new"])
        print(f"{'  same, in-process API (no start-up)':44s} {a:8.0f} {lx:11.0f} {a / lx:6.2f}")
        print(f"{'  python start-up alone (-I -S -c pass)':44s} {med(r['py']):8.0f}")
        print(f"{'  python start-up + our imports':44s} {med(r['import']):8.0f}")
    if "reapply" in which:
        o, re = med(r["ours_new"]), med(r["ours_re"])
        print(f"{'re-apply unchanged file (vs first apply)':44s} {re:8.0f} {o:11.0f} "
              f"{re / o:6.2f} {'<=0.5':>7s}")
        o, re = med(r["api_first"]), med(r["api_re"])
        print(f"{'  same, in-process API':44s} {re:8.0f} {o:11.0f} {re / o:6.2f}")
    if "change" in which:
        o, lx = med(r["ours_chg"]), med(r["lx_chg"])
        print(f"{'change 1 of 10 (apply vs unload+load)':44s} {o:8.0f} {lx:11.0f} "
              f"{o / lx:6.2f} {'<=1.0':>7s}")
        a = med(r["api_chg"])
        print(f"{'  same (and back), in-process API':44s} {a:8.0f} {lx:11.0f} {a / lx:6.2f}")


def profile_change(tmp: str) -> None:
    """Where the in-process change of 1 of 10 spends its time (cProfile, cumulative)."""
    import cProfile
    import io
    import pstats

    cfg = write_cfg(os.path.join(tmp, "ten.yaml"), {IF_A: TEN})
    cfg2 = write_cfg(os.path.join(tmp, "ten2.yaml"), {IF_A: TEN[:2] + [UPGRADED] + TEN[3:]})
    api.apply_config(cfg)
    api.apply_config(cfg2)      # warm: both files' objects parsed once
    pr = cProfile.Profile()
    pr.enable()
    api.apply_config(cfg)
    pr.disable()
    unload_all(IF_A)
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("cumulative").print_stats(45)
    print("\ncProfile of the in-process change of 1 of 10:")
    print(out.getvalue())


def bench_scale(tmp: str, rounds: int, max_ifaces: int) -> None:
    counts = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= max_ifaces]
    names = [f"xdpas{i}" for i in range(max(counts))]
    for i, name in enumerate(names):
        veth(name, f"xdpas{i}p")
    try:
        rows: list[tuple[int, float]] = []
        api_rows: list[tuple[int, float]] = []
        for n in counts:
            cfg = write_cfg(os.path.join(tmp, f"scale{n}.yaml"), {x: THREE for x in names[:n]})
            ts, ta = [], []
            for _ in range(rounds):
                ts.append(cli("apply", cfg))
                unload_all(*names[:n])
                ta.append(timed_api(cfg))
                unload_all(*names[:n])
            rows.append((n, med(ts)))
            api_rows.append((n, med(ta)))
        _scale_table(f"apply of 3 programs per interface, 1 command, wall ms, median of {rounds}",
                     rows)
        _scale_table("same, in-process API (no start-up)", api_rows)
    finally:
        for name in names:
            subprocess.run(["ip", "link", "del", name], capture_output=True)


def _scale_table(title: str, rows: list[tuple[int, float]]) -> None:
    print(f"\n{title}")
    print(f"{'interfaces':>10s} {'total':>8s} {'per iface':>10s} {'marginal/iface':>15s}")
    prev: tuple[int, float] | None = None
    for n, t in rows:
        marg = f"{(t - prev[1]) / (n - prev[0]):15.0f}" if prev else f"{'':15s}"
        print(f"{n:10d} {t:8.0f} {t / n:10.0f} {marg}")
        prev = (n, t)
    if len(rows) >= 3:
        # Linear growth: the marginal cost per interface of the last step is close to the
        # first step's; a quadratic term would make it grow with n.
        first = (rows[1][1] - rows[0][1]) / (rows[1][0] - rows[0][0])
        last = (rows[-1][1] - rows[-2][1]) / (rows[-1][0] - rows[-2][0])
        print(f"marginal cost per interface: {first:.0f} ms (n={rows[0][0]}->{rows[1][0]}) "
              f"vs {last:.0f} ms (n={rows[-2][0]}->{rows[-1][0]}); "
              f"least-squares slope {_slope(rows):.0f} ms/interface")


def _slope(rows: list[tuple[int, float]]) -> float:
    xs = [float(n) for n, _ in rows]
    ys = [t for _, t in rows]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / \
        sum((x - mx) ** 2 for x in xs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scale-rounds", type=int, default=3)
    ap.add_argument("--max-ifaces", type=int, default=32)
    ap.add_argument("--profile", action="store_true",
                    help="also print cProfile of the in-process change of 1 of 10")
    ap.add_argument("--only", default=",".join(ALL),
                    help=f"comma-separated subset of {', '.join(ALL)}")
    args = ap.parse_args()
    which = {w.strip() for w in args.only.split(",") if w.strip()}
    if not which <= set(ALL):
        ap.error(f"--only: unknown bench(es) {', '.join(sorted(which - set(ALL)))}")
    run = "/run" if os.access("/run", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="xdpd-apply-bench-", dir=run) as tmp:
        os.environ["XDP_DISPATCH_STATE_DIR"] = os.path.join(tmp, "state")
        XDPD[:] = [launcher(tmp)]
        steps: list[Callable[[], None]] = []
        if which & {"new", "reapply", "change"}:
            steps.append(lambda: bench_new_reapply_change(tmp, args.rounds, which))
        if "scale" in which:
            steps.append(lambda: bench_scale(tmp, args.scale_rounds, args.max_ifaces))
        if args.profile:
            steps.append(lambda: profile_change(tmp))
        veth(IF_A, IF_B)
        try:
            for s in steps:
                s()
        finally:
            unload_all(IF_A)
            subprocess.run(["ip", "link", "del", IF_A], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
