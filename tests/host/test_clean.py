"""`clean` never unpins a live chain: not one attached in another network namespace
(bpffs is shared by all of them, the ifindex is per namespace), not one a change has
pinned and is about to swap in (the protocol lock is held from pinning to the swap).
freplace chains (their components live only through the pins): the VM tier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.host import nettools
from tests.objects import REPO, example

pytestmark = pytest.mark.freplace


def pin_dirs(root: str) -> list[str]:
    x = os.path.join(root, "xdp")
    return sorted(n for n in os.listdir(x) if n.startswith("dispatch-")) if os.path.isdir(x) else []


def components(iface: str, netns: str | None = None) -> list[int]:
    args = ["status", iface, "--json"] + (["--netns", netns] if netns else [])
    st = json.loads(run_cli(*args, check=True).stdout)
    return [p["id"] for p in st["interfaces"][0]["programs"]]


def test_clean_keeps_a_chain_attached_in_another_netns(netns_veth, private: str) -> None:  # type: ignore[no-untyped-def]
    v = netns_veth
    run_cli("load", v.peer_if, example("xdp_counter"), example("xdp_drop_icmp"), "-m", "skb",
            "--netns", v.netns, check=True)
    before = components(v.peer_if, v.netns)
    dirs = pin_dirs(private)
    assert len(before) == 2 and len(dirs) == 1
    # the root netns has no interface with that ifindex running that dispatcher
    out = run_cli("clean", check=True).stdout
    assert "removed" not in out
    assert pin_dirs(private) == dirs and components(v.peer_if, v.netns) == before
    assert not nettools.ping(v.host_ip, count=1, netns=v.netns)   # still drops ICMP
    run_cli("unload", v.peer_if, "--all", "--netns", v.netns, check=True)
    assert nettools.ping(v.host_ip, count=1, netns=v.netns)       # positive control
    out = run_cli("clean", check=True).stdout                       # now it is stale
    assert pin_dirs(private) == []


def test_clean_waits_for_a_change_between_pinning_and_swap(netns_veth, private: str,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    v = netns_veth
    run_cli("load", v.host_if, example("xdp_counter"), "-m", "skb", check=True)
    [old] = pin_dirs(private)
    ready = tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=REPO, XDP_DISPATCH_FAULT=f"pinned@{v.host_if}:pause20",
               XDP_DISPATCH_FAULT_READY=str(ready))
    change = subprocess.Popen([sys.executable, "-m", "dispatcher", "load", v.host_if,
                               example("xdp_drop_icmp"), "-m", "skb"], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        while not ready.exists():
            assert change.poll() is None and time.monotonic() < end, change.communicate()
            time.sleep(0.02)
        assert len(pin_dirs(private)) == 2          # the new dispatcher is pinned, not attached
        t0 = time.monotonic()
        cenv = {k: v for k, v in env.items() if not k.startswith("XDP_DISPATCH_FAULT")}
        cleaner = subprocess.Popen([sys.executable, "-m", "dispatcher", "clean"], env=cenv,
                                   cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        time.sleep(1.0)
        assert cleaner.poll() is None, cleaner.communicate()    # it waits for the lock
        ready.unlink()                                            # the change goes on
        out, err = change.communicate(timeout=60)
        assert change.returncode == 0, err
        c_out, c_err = cleaner.communicate(timeout=60)
        assert cleaner.returncode == 0, c_err
        assert time.monotonic() - t0 >= 1.0
        # The new dispatcher's pins are never touched. The old one's go with the commit,
        # which takes the lock again to unpin them after the swap: a clean that gets the
        # lock in between finds them unattached and removes them first (seen on 7.2).
        removed = [ln.split()[-1] for ln in c_out.splitlines() if ln.startswith("removed")]
        assert all(os.path.basename(r) == old for r in removed), (old, c_out)
        ids = components(v.host_if)
        assert len(ids) == 2 and len(pin_dirs(private)) == 1
        assert not nettools.ping(v.peer_ip, count=1)              # the new chain runs
    finally:
        if change.poll() is None:
            change.kill()
            change.communicate()
        run_cli("unload", v.host_if, "--all")
