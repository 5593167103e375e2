"""Where the test suite finds BPF objects: our examples and Debian's xdp-tools objects."""

from __future__ import annotations

import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES_DIR = os.path.join(REPO, "bpf", "examples")
DEBIAN_BPF_DIR = "/usr/lib/x86_64-linux-gnu/bpf"


def example_objects() -> list[str]:
    return sorted(glob.glob(os.path.join(EXAMPLES_DIR, "*.o")))


def debian_objects() -> list[str]:
    return sorted(glob.glob(os.path.join(DEBIAN_BPF_DIR, "*.o")))


def all_objects() -> list[str]:
    return example_objects() + debian_objects()


def example(name: str) -> str:
    return os.path.join(EXAMPLES_DIR, name if name.endswith(".o") else name + ".o")


def ids(paths: list[str]) -> list[str]:
    return [os.path.basename(p) for p in paths]
