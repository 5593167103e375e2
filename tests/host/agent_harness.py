"""Runs ``xdp-dispatch agent`` as a subprocess (exactly as the container's entry does) and
reads its JSON log; interfaces live in a private netns named in the config."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.host import nettools
from tests.objects import EXAMPLES_DIR, REPO

THREE = [("count", "xdp_counter.o", 10), ("icmp", "xdp_drop_icmp.o", 20),
         ("pass", "xdp_pass.o", 30)]


# Under the VMs' emulation the agent starts ~25x slower (Python start-up) and runs ~4x
# slower: its waits stretch by this much there.
SLOWER = 8 if os.environ.get("XDP_DISPATCH_VM_KERNEL") else 1


def config_text(netns: str | None, pattern: str, progs: list[tuple[str, str, int]] = THREE,
                extra: str = "", dispatch: str = "linked") -> str:
    lines = ["version: 1", extra, "interfaces:", f'  - name: "{pattern}"', "    mode: skb",
             f"    dispatch: {dispatch}"]
    if netns:
        lines.append(f"    netns: {netns}")
    lines.append("    programs:")
    for name, obj, prio in progs:
        lines += [f"      - name: {name}", f"        object: {os.path.join(EXAMPLES_DIR, obj)}",
                  f"        priority: {prio}"]
    return "\n".join(x for x in lines if x) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AgentProc:
    def __init__(self, config: str, env: dict[str, str], log: Path, *extra: str,
                 resync: float = 300) -> None:
        self.port = free_port()
        self.log_path = log
        e = dict(os.environ)
        e.update(env)
        e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
        self.fh = open(log, "ab")  # noqa: SIM115  (closed in stop)
        self.start_offset = log.stat().st_size
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "agent", config, "--log-format", "json",
             "--listen", f"127.0.0.1:{self.port}", "--resync", str(resync), *extra],
            stdout=self.fh, stderr=self.fh, env=e, cwd=REPO)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        with open(self.log_path, "rb") as f:
            f.seek(self.start_offset)
            for raw in f.read().decode().splitlines():
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    out.append({"event": "raw", "msg": raw})
        return out

    def wait(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 20) -> None:
        end = time.monotonic() + timeout * SLOWER
        while time.monotonic() < end:
            if pred(self.lines()):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.lines()}")
            time.sleep(0.02)
        raise AssertionError(f"timed out; log: {self.lines()}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            e.close()
            return int(e.code), body
        except OSError:
            return 0, ""

    def started(self) -> None:
        self.wait(lambda ls: any(x["event"] == "reconcile" and x.get("trigger") == "start"
                                 for x in ls))

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.fh.close()
        return int(self.proc.returncode)


def count(lines: list[dict[str, Any]], event: str, **match: object) -> int:
    return sum(1 for x in lines if x["event"] == event
               and all(x.get(k) == v for k, v in match.items()))


class Netns:
    """A private netns for the agent's interfaces (names there collide with nobody's)."""

    def __init__(self) -> None:
        self.name = f"xa-{secrets.token_hex(3)}"
        nettools.ip("netns", "add", self.name)

    def add_pair(self, name: str, peer: str) -> None:
        nettools.ip("link", "add", name, "type", "veth", "peer", "name", peer, netns=self.name)
        nettools.ip("link", "set", name, "up", netns=self.name)

    def delete(self, name: str) -> None:
        nettools.ip("link", "del", name, netns=self.name)

    def xdp(self, name: str) -> int:
        from dispatcher.kernel import netlink

        return netlink.read_xdp_by_name(name, netns=self.name).prog_id

    def destroy(self) -> None:
        nettools.ip("netns", "del", self.name, check=False)
