"""Run the CLI as a subprocess, the way users do."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.objects import REPO


def run_cli(*args: str, check: bool = False, env: dict[str, str] | None = None,
            prefix: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    if env:
        e.update(env)
    cp = subprocess.run([*prefix, sys.executable, "-m", "dispatcher", *args], capture_output=True,
                        text=True, env=e, cwd=REPO, timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError(f"xdp-dispatch {' '.join(args)} failed ({cp.returncode}): {cp.stderr}")
    return cp


def assert_one_line_error(cp: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A user error: non-zero exit, no traceback, a single error line (plus an optional hint)."""
    assert cp.returncode != 0, cp.stdout
    assert "Traceback" not in cp.stderr, cp.stderr
    lines = [ln for ln in cp.stderr.splitlines() if ln.strip()]
    err = [ln for ln in lines if ln.startswith("xdp-dispatch: error:")]
    assert len(err) == 1, cp.stderr
    others = [ln for ln in lines if not ln.startswith(("xdp-dispatch: error:", "xdp-dispatch: hint:"))]
    assert not others, cp.stderr
    for frag in fragments:
        assert frag in err[0], (frag, err[0])
