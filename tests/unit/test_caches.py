"""``dispatcher.caches.reset_all()`` empties every module-level cache, and no cache is
left out of the registry."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from dispatcher import caches
from dispatcher.config import applied
from dispatcher.kernel import bpf, netlink, probes
from dispatcher.obj import elf

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = str(REPO / "bpf" / "examples" / "xdp_pass.o")

UNREGISTERED_ALLOWLIST: set[str] = set()     # none: every cache is registered


def test_reset_all_empties_every_cache() -> None:
    elf.read_object(EXAMPLE)
    probes._cache["x"] = probes.Probe("x", True)
    applied._code_stamp()
    netlink._pyroute2()
    bpf._memlock_bumped = True
    bpf._nr_bpf()
    bpf.possible_cpus()
    assert elf._PARSED and probes._cache and applied._STAMP and netlink._P2 is not None
    assert bpf._nr_bpf.cache_info().currsize == bpf.possible_cpus.cache_info().currsize == 1

    caches.reset_all()

    assert elf._PARSED == {} and probes._cache == {} and applied._STAMP == []
    assert netlink._P2 is None and bpf._memlock_bumped is False
    assert bpf._nr_bpf.cache_info().currsize == bpf.possible_cpus.cache_info().currsize == 0
    # and they fill again as before
    assert elf.read_object(EXAMPLE).programs and applied._code_stamp() == applied._STAMP[0]


def test_registry_names_the_caches_of_the_imported_modules() -> None:
    assert {"obj.elf.parsed", "kernel.probes.results", "config.applied.code_stamp",
            "kernel.netlink.pyroute2_classes", "kernel.bpf.memlock_bumped",
            "kernel.bpf.nr_bpf", "kernel.bpf.possible_cpus"} <= set(caches.names())


def _cached_functions(tree: ast.Module) -> list[str]:
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for d in node.decorator_list:
                f = d.func if isinstance(d, ast.Call) else d
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name in ("cache", "lru_cache"):
                    out.append(node.name)
    return out


def test_every_functools_cache_is_registered() -> None:
    missing = []
    for path in sorted((REPO / "dispatcher").rglob("*.py")):
        src = path.read_text()
        rel = path.relative_to(REPO).as_posix()
        for fn in _cached_functions(ast.parse(src)):
            if f"{fn}.cache_clear" not in src and f"{rel}:{fn}" not in UNREGISTERED_ALLOWLIST:
                missing.append(f"{rel}:{fn}")
    assert missing == [], "register with dispatcher.caches.register(name, fn.cache_clear)"


def test_unregistered_allowlist_is_current() -> None:
    for entry in UNREGISTERED_ALLOWLIST:
        rel, fn = entry.split(":")
        src = (REPO / rel).read_text()
        assert fn in _cached_functions(ast.parse(src)) and f"{fn}.cache_clear" not in src, entry


def test_code_stamp_covers_the_whole_package() -> None:
    # the stamp walks the package root: a changed chain/ or kernel/ file re-plans too
    assert os.path.samefile(applied._PKG, REPO / "dispatcher")
