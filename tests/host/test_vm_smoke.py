"""Smoke test of the test machine itself (host tier and each VM kernel).

Checks what every other host-tier test relies on: the kernel we meant to
boot, bpffs mounted, and a working bpf(2) (bpftool is the oracle here, so
this file does not depend on the project's own syscall layer).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.host_kernel

BPFFS = Path("/sys/fs/bpf")


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


def test_running_the_expected_kernel() -> None:
    expected = os.environ.get("XDP_DISPATCH_VM_KERNEL")
    if not expected:
        pytest.skip("not in a VM run (XDP_DISPATCH_VM_KERNEL unset)")
    assert os.uname().release == expected


def test_bpffs_is_mounted() -> None:
    mounts = Path("/proc/mounts").read_text().splitlines()
    assert any(line.split()[1:3] == [str(BPFFS), "bpf"] for line in mounts), (
        f"bpffs not mounted on {BPFFS}: mount -t bpf bpf {BPFFS}"
    )


def test_can_create_and_pin_a_map() -> None:
    _needs_root()
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        pytest.skip("bpftool not installed")
    pin = BPFFS / f"xdpd_smoke_{os.getpid()}"
    try:
        subprocess.run(
            [
                bpftool,
                "map",
                "create",
                str(pin),
                "type",
                "array",
                "key",
                "4",
                "value",
                "8",
                "entries",
                "1",
                "name",
                "xdpd_smoke",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pin.exists()
        out = subprocess.run(
            [bpftool, "-j", "map", "show", "pinned", str(pin)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert '"name":"xdpd_smoke"' in out.replace(" ", "")
    finally:
        pin.unlink(missing_ok=True)
