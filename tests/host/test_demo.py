"""The README's main job, scripts/demo.sh, end to end on this kernel.

It applies configs/lo-pass-counter.yaml to `lo`, shows the chain, pings through it,
re-applies (nothing must change), shows drift and unloads. On a kernel with freplace
the chain is a protocol-v2 dispatcher; without, a linked chain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.host_kernel, pytest.mark.once]


def _lo_has_xdp() -> bool:
    out = subprocess.run(["ip", "-d", "link", "show", "lo"], capture_output=True, text=True,
                         check=True).stdout
    return "prog/xdp" in out


def test_demo_applies_shows_and_removes_the_lo_chain() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (the demo attaches XDP programs to lo)")
    if _lo_has_xdp():
        pytest.skip("lo already runs an XDP program; the demo refuses to touch it")
    cli = Path(sys.executable).with_name("xdp-dispatch")
    env = dict(os.environ, XDP_DISPATCH=str(cli))
    res = subprocess.run(["bash", str(REPO / "scripts/demo.sh")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "Applied." in out
    # status shows both slots of the chain, in priority order
    rows = [ln.split() for ln in out.splitlines() if ln.startswith(" =>")]
    # (a linked chain shows the config's names; a dispatcher the programs' own)
    if "(linked chain)" in out:
        assert [r[1:3] for r in rows[:2]] == [["10", "pass"], ["20", "counter"]]
    else:
        assert "(dispatcher v2)" in out
        assert [r[1:3] for r in rows[:2]] == [["10", "xdp_pass"], ["20", "xdp_counter"]]
    assert "3 received" in out                     # packets went through the chain
    assert "Nothing to change." in out             # the second apply is idempotent
    assert "No drift." in out
    assert not _lo_has_xdp()                       # and the demo cleaned up after itself
