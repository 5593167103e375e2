"""What each test tier must have. Where a tier requires a thing, a test skipped for lack
of it is a failure (tests/conftest.py turns the skip into one), so interop tests cannot
vanish from CI because a tool or object went missing.

Tiers: ``vm`` when XDP_DISPATCH_VM_KERNEL is set (tests/vm/guest.sh), ``host`` when
XDP_DISPATCH_TIER=host (scripts/test.sh's host tier), else none: a developer's run skips
as before, with the reason.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from tests.objects import DEBIAN_BPF_DIR


@dataclass(frozen=True)
class Requirement:
    what: str                          # for messages
    skipped_for_lack: re.Pattern[str]  # skip reasons that mean "this is missing"
    present: Callable[[], bool] | None = None   # None: only the skip tells (a kernel feature)


REQUIREMENTS = {
    "xdp-loader": Requirement(
        "libxdp's xdp-loader (Debian xdp-tools)",
        re.compile(r"\bxdp-loader\b.*\bnot installed"),
        lambda: shutil.which("xdp-loader") is not None),
    "bpftool": Requirement(
        "bpftool", re.compile(r"\bbpftool\b.*\bnot installed"),
        lambda: shutil.which("bpftool") is not None),
    "debian-objects": Requirement(
        f"Debian's xdp-tools BPF objects ({DEBIAN_BPF_DIR}/*.o)",
        re.compile(r"\bobjects\b.*\bnot installed"),
        lambda: bool(glob.glob(os.path.join(DEBIAN_BPF_DIR, "*.o")))),
    "readelf": Requirement(
        "binutils' readelf (tests/host/config_oracle.py)", re.compile(r"\breadelf\b.*\bnot installed"),
        lambda: shutil.which("readelf") is not None),
    "clang": Requirement(
        "clang (builds test objects)", re.compile(r"\bclang\b.*\bnot installed"),
        lambda: shutil.which("clang") is not None),
    "llvm-objcopy": Requirement(
        "llvm-objcopy (strips BTF for a test)", re.compile(r"\bllvm-objcopy\b.*\bnot installed"),
        lambda: shutil.which("llvm-objcopy") is not None),
    "freplace": Requirement(
        "a kernel that allows freplace (BPF_PROG_TYPE_EXT)",
        re.compile(r"refuses freplace|freplace probe inconclusive")),
}

TIERS: dict[str, tuple[str, ...]] = {
    "unit": (),
    # scripts/test.sh installs all of these (the VMs run on the host's root filesystem)
    "host": ("xdp-loader", "bpftool", "debian-objects", "readelf", "clang", "llvm-objcopy"),
    "vm": ("xdp-loader", "bpftool", "debian-objects", "readelf", "clang", "llvm-objcopy",
           "freplace"),
}


def tier() -> str | None:
    if os.environ.get("XDP_DISPATCH_VM_KERNEL"):
        return "vm"
    t = os.environ.get("XDP_DISPATCH_TIER")
    return t if t in TIERS else None


def required() -> tuple[str, ...]:
    t = tier()
    return TIERS[t] if t else ()


def required_but_skipped(reason: str) -> str | None:
    """The requirement of this tier that a skip with ``reason`` says is missing, if any."""
    for name in required():
        if REQUIREMENTS[name].skipped_for_lack.search(reason):
            return name
    return None
