"""The `xdp-dispatch` command as users get it, for the benchmarks that time commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launcher(tmpdir: str, tree: str = REPO) -> str:
    """The `xdp-dispatch` command as scripts/install.sh writes it, running a copy of the
    package of ``tree`` (default: this checkout) in ``tmpdir`` (tmpfs: an installed package
    is on a local disk, while the VM sees the checkout over 9p), byte-compiled as pip does."""
    pkg = os.path.join(tmpdir, "pkg")
    shutil.copytree(os.path.join(tree, "dispatcher"), os.path.join(pkg, "dispatcher"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", pkg], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    path = os.path.join(tmpdir, "xdp-dispatch")
    subprocess.run(["bash", os.path.join(REPO, "scripts/write-launcher.sh"), sys.executable, path,
                    pkg], check=True)
    return path
