"""The package's architecture holds: pyproject's import-linter contracts are kept, and no
two modules import each other, directly or through others (an import cycle).

``make lint`` runs the same contracts; running them here puts them in every test run (CI).
The cycle check is per module, so it also sees cycles through the root package, which
import-linter's ``acyclic_siblings`` (cycles between the children of a package) does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[2]

#: Today's cycles, each as its set of modules (lead burns these down with the chain rewrite;
#: issue 10 wants none). A cycle that goes away must leave this list.
KNOWN_CYCLES: list[frozenset[str]] = []      # none: keep it so


def cycles(graph: grimp.ImportGraph) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    for root in sorted(adj):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            succ = adj.get(v, [])
            if i < len(succ):
                work.append((v, i + 1))
                w = succ[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


def test_no_import_cycles_but_the_known_ones() -> None:
    found = cycles(grimp.build_graph("dispatcher", cache_dir=None))
    new = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert new == [], f"import cycles: {new}"
    assert gone == [], f"no longer cycles (remove from KNOWN_CYCLES): {gone}"


def test_cycle_finder_finds_cycles() -> None:
    g = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c", "p.d"):
        g.add_module(m)
    g.add_import(importer="p.a", imported="p.b")
    g.add_import(importer="p.b", imported="p.c")
    g.add_import(importer="p.c", imported="p.a")
    g.add_import(importer="p.c", imported="p.d")
    assert cycles(g) == [frozenset({"p.a", "p.b", "p.c"})]


def test_import_linter_contracts_are_kept() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c",
                                             "import sys; from importlinter.cli import "
                                             "lint_imports_command as c; sys.exit(c())"]
    cp = subprocess.run([*cmd, "--no-cache"], cwd=REPO, capture_output=True, text=True,
                        timeout=120, check=False, env={**os.environ, "NO_COLOR": "1"})
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    assert "0 broken" in cp.stdout
