"""How fast ``xdp-dispatch agent`` reacts, and what it costs idle. Run as root (under the
host-tier flock when others share the machine):

    flock /tmp/xdp-host.lock python bench/agent_bench.py [--n 50] [--burst 200] [--idle 60]

The agent runs as a subprocess (as the container's entry) on a config naming a private
netns with ``xb*`` -> a 3-program linked chain (counter, drop_icmp, pass), skb mode.

1. Reaction: ``--n`` veth pairs created one by one; for each, from the RTM_NEWLINK
   that announces it (seen by this script's own monitor) to its XDP program being
   attached (polled every 0.2 ms). Median and p95. Target: <= 100 ms median.
2. Config edit -> applied: rename-swap a config with one priority changed; from the
   rename to the new chain on the interface, minus the debounce. Median of 5.
3. Burst: ``--burst`` veth pairs created at once (one `ip -batch`); total time until
   every one has its chain, and ms per interface (flat = no re-planning of every
   interface per event).
4. Idle: the agent's CPU time over ``--idle`` seconds with no events (/proc stat), as
   % of one core (target <= 0.5 %), and its resident memory (VmRSS).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dispatcher.kernel import netlink  # noqa: E402
from tests.host.agent_harness import THREE, config_text, free_port  # noqa: E402

DEBOUNCE = 0.2


def ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True)


def attached(ns: str, name: str) -> int:
    try:
        return netlink.read_xdp_by_name(name, ns).prog_id
    except Exception:
        return 0


def wait_attached(ns: str, name: str, old: int = 0, timeout: float = 30) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pid = attached(ns, name)
        if pid and pid != old:
            return time.monotonic()
        time.sleep(0.0002)
    raise SystemExit(f"{name}: no chain after {timeout}s")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--idle", type=float, default=60)
    args = ap.parse_args()
    ns = f"xb-{secrets.token_hex(3)}"
    tmp = tempfile.mkdtemp(prefix="agent-bench-")
    bpffs = f"/sys/fs/bpf/agent-bench-{secrets.token_hex(3)}"
    os.makedirs(bpffs)
    env = dict(os.environ, XDP_DISPATCH_STATE_DIR=os.path.join(tmp, "state"),
               LIBXDP_BPFFS=bpffs, PYTHONPATH=REPO)
    cfg = os.path.join(tmp, "config.yaml")
    with open(cfg, "w") as f:
        f.write(config_text(ns, "xb*"))
    ip("netns", "add", ns)
    log = open(os.path.join(tmp, "agent.log"), "wb")  # noqa: SIM115
    agent = subprocess.Popen([sys.executable, "-m", "dispatcher", "agent", cfg, "--listen",
                              f"127.0.0.1:{free_port()}", "--debounce", str(DEBOUNCE)],
                             stdout=log, stderr=log, env=env, cwd=REPO)
    def edit(n: int) -> None:
        """Rename-swap configs with one priority changed: rename -> xb0 relinked."""
        edits = []
        for k in range(5):
            old = attached(ns, "xb0")
            progs = [("count", "xdp_counter.o", 40 + k + 10 * n), *THREE[1:]]
            swp = cfg + ".swp"
            with open(swp, "w") as f:
                f.write(config_text(ns, "xb*", progs))
            t0 = time.monotonic()
            os.rename(swp, cfg)
            edits.append(wait_attached(ns, "xb0", old=old) - t0)
            time.sleep(0.3 + 0.05 * n)     # let every interface be relinked
        med = statistics.median(edits)
        print(f"config edit -> xb0 relinked ({n} interface{'s' if n > 1 else ''}, one transaction): "
              f"median {med * 1e3:.0f} ms including the {DEBOUNCE * 1e3:.0f} ms debounce "
              f"({(med - DEBOUNCE) * 1e3:.0f} ms after it)")

    try:
        time.sleep(1.5)
        mon = netlink.LinkMonitor(ns)
        # 1. reaction, one by one
        times = []
        for i in range(args.n):
            name = f"xb{i}"
            ip("link", "add", name, "type", "veth", "peer", "name", f"xq{i}", ns=ns)
            seen = None
            while seen is None:
                for ev in mon.read():
                    if ev.state.ifname == name and not ev.gone:
                        seen = time.monotonic()
                        break
                else:
                    time.sleep(0.0002)
            times.append(wait_attached(ns, name) - seen)
            if i == 0:
                edit(1)
        times.sort()
        p95 = times[max(0, int(round(0.95 * len(times))) - 1)]
        print(f"reaction (RTM_NEWLINK -> chain attached), {args.n} interfaces: "
              f"median {statistics.median(times) * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms, "
              f"max {times[-1] * 1e3:.1f} ms")
        # 2. config edit -> applied, with all of them
        edit(args.n)
        # 3. burst
        batch = os.path.join(tmp, "batch")
        with open(batch, "w") as f:
            for i in range(args.burst):
                f.write(f"link add xbb{i} type veth peer name xqq{i}\n")
        t0 = time.monotonic()
        subprocess.run(["ip", "-n", ns, "-batch", batch], check=True, capture_output=True)
        created = time.monotonic()
        pending = {f"xbb{i}" for i in range(args.burst)}
        while pending:
            links = {x.ifname: x.prog_id for x in netlink.list_links(ns)}
            pending = {n for n in pending if not links.get(n)}
            if time.monotonic() - t0 > 300:
                raise SystemExit(f"burst: {len(pending)} without a chain after 300 s")
            time.sleep(0.01)
        total = time.monotonic() - t0
        print(f"burst: {args.burst} veths created in {(created - t0) * 1e3:.0f} ms; all "
              f"chained after {total:.2f} s ({total / args.burst * 1e3:.1f} ms per interface)")
        mon.close()
        # 4. idle
        time.sleep(2)
        c0, t0 = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(args.idle)
        c1, t1 = cpu_seconds(agent.pid), time.monotonic()
        print(f"idle: {100 * (c1 - c0) / (t1 - t0):.3f} % of one core over {t1 - t0:.0f} s; "
              f"RSS {rss_mib(agent.pid):.1f} MiB "
              f"(with {args.n + args.burst} interfaces managed)")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)
        log.close()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["rm", "-rf", bpffs, tmp], capture_output=True)


if __name__ == "__main__":
    main()
