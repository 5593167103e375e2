"""Kernel numbers are defined once, in ``dispatcher.uapi``, and they are the kernel's.

The source scan keeps duplicates from coming back: a module that assigns a name that
``dispatcher.uapi`` defines, assigns a number to a name spelled like a kernel constant, or
compares a program/map/attach type against a bare number, fails here. The header check
compiles a C program against the system's kernel headers and compares every number.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dispatcher import uapi

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "dispatcher"

#: Every int constant of the module (the dict of command names is derived from them).
UAPI_INTS = {k: v for k, v in vars(uapi).items()
             if k.isupper() and isinstance(v, int) and not isinstance(v, bool)}
UAPI_NAMES = {k for k in vars(uapi) if k.isupper()}

# A name spelled like a kernel constant (the instruction-set encoding excepted, see below).
KERNEL_NAME = re.compile(r"^(BPF_|PROG_TYPE_|ATTACH_|MAP_TYPE_|XDP_FLAGS_|XDP_ATTACHED_|IFLA_"
                         r"|XDP_(ABORTED|DROP|PASS|TX|REDIRECT)$|IFNAMSIZ$|CLONE_NEW)")
# Attributes/variables that hold a program, map or attach type.
TYPE_ATTRS = {"prog_type", "map_type", "expected_attach_type", "attach_type", "ptype"}

#: The BPF instruction encoding (opcodes, BPF_PSEUDO_* source registers) is defined once,
#: beside the instruction codec (see the uapi docstring), which re-exports it.
INSN_MODULE = "dispatcher/obj/opcodes.py"

ALLOWLIST: set[str] = set()     # none: every module imports dispatcher.uapi


def _is_int_literal(node: ast.expr) -> bool:
    """An int written out (``6``, ``0x20``, ``1 << 3``, ``4 | 2``), not computed from names."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and not isinstance(node.value, bool)
    if isinstance(node, ast.UnaryOp):
        return _is_int_literal(node.operand)
    if isinstance(node, ast.BinOp):
        return _is_int_literal(node.left) and _is_int_literal(node.right)
    if isinstance(node, ast.Tuple):
        return bool(node.elts) and all(_is_int_literal(e) for e in node.elts)
    return False


def _targets(node: ast.AST) -> list[tuple[str, ast.expr | None]]:
    """(name, value) for each plain name an assignment binds."""
    if isinstance(node, ast.Assign):
        out: list[tuple[str, ast.expr | None]] = []
        for t in node.targets:
            if isinstance(t, ast.Name):
                out.append((t.id, node.value))
            elif isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                out += [(e.id, v) for e, v in zip(t.elts, node.value.elts, strict=False)
                        if isinstance(e, ast.Name)]
            elif isinstance(t, ast.Tuple):
                out += [(e.id, None) for e in t.elts if isinstance(e, ast.Name)]
        return out
    if isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
        return [(node.target.id, node.value)]
    return []


def _names_type(node: ast.expr) -> bool:
    return ((isinstance(node, ast.Attribute) and node.attr in TYPE_ATTRS)
            or (isinstance(node, ast.Name) and node.id in TYPE_ATTRS))


def violations(path: Path, rel: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=rel)
    out = []
    for node in ast.walk(tree):
        for name, value in _targets(node):
            if name in UAPI_NAMES:
                out.append(f"{rel}:{node.lineno}: assigns {name}, which dispatcher.uapi defines")
            elif (rel != INSN_MODULE and KERNEL_NAME.match(name) and value is not None
                  and _is_int_literal(value)):
                out.append(f"{rel}:{node.lineno}: defines kernel number {name} "
                           "(define it in dispatcher.uapi and import it)")
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_names_type(s) for s in sides) and any(
                    _is_int_literal(s) and not (isinstance(s, ast.Constant) and s.value == 0)
                    for s in sides):
                out.append(f"{rel}:{node.lineno}: compares a type against a bare number "
                           "(use the dispatcher.uapi name)")
    return out


def scan() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel == "dispatcher/uapi.py":
            continue
        v = violations(path, rel)
        if v:
            found[rel] = v
    return found


def test_kernel_numbers_are_defined_only_in_uapi() -> None:
    found = scan()
    outside = {f: v for f, v in found.items() if f not in ALLOWLIST}
    assert outside == {}, "\n".join(line for v in outside.values() for line in v)


def test_allowlist_has_no_stale_entries() -> None:
    # a converted (or removed) file must leave the allowlist, so that it cannot regress
    found = scan()
    assert sorted(f for f in ALLOWLIST if f not in found) == []


def test_scan_catches_each_kind_of_duplicate(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("BPF_F_RDONLY_PROG = 0x80\n"          # a uapi name
                   "PROG_TYPE_XDP = 6\n"                # a kernel-looking name with a number
                   "ok = p.prog_type == 6\n"            # a bare type number
                   "fine = x.prog_type == 0\n"          # 0 (unset) is not a kernel name
                   "ALIAS = uapi.BPF_XDP\n")            # an alias is not a definition
    got = violations(src, "dispatcher/m.py")
    assert [g.split(":")[1] for g in got] == ["1", "2", "3"], got


def test_uapi_is_a_leaf() -> None:
    tree = ast.parse((PKG / "uapi.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(n) for n in imports] == ["from __future__ import annotations"]


def test_command_names_cover_exactly_the_commands() -> None:
    assert uapi.BPF_CMD_NAMES[uapi.BPF_PROG_LOAD] == "BPF_PROG_LOAD"
    assert uapi.BPF_CMD_NAMES[uapi.BPF_LINK_DETACH] == "BPF_LINK_DETACH"
    assert all(not n.startswith(("BPF_PROG_TYPE_", "BPF_MAP_TYPE_"))
               for n in uapi.BPF_CMD_NAMES.values())


#: Names that linux/bpf.h gained after 6.1 (the oldest headers this check accepts).
NEWER_THAN_6_1 = {"BPF_MAP_TYPE_CGRP_STORAGE", "BPF_F_XDP_DEV_BOUND_ONLY",
                  "BPF_PROG_TYPE_NETFILTER", "BPF_LINK_TYPE_NETFILTER", "BPF_LINK_TYPE_TCX",
                  "BPF_LINK_TYPE_UPROBE_MULTI", "BPF_LINK_TYPE_NETKIT", "BPF_MAP_TYPE_ARENA"}

HEADERS = ("linux/bpf.h", "linux/if_link.h", "linux/if.h", "linux/magic.h", "linux/sched.h")


def _compile_and_run(names: list[str], tmp: Path) -> tuple[int, str, str]:
    c = tmp / "u.c"
    c.write_text("".join(f"#include <{h}>\n" for h in HEADERS) + "#include <stdio.h>\n"
                 "int main(void) {\n"
                 + "".join(f'  printf("%s %lld\\n", "{n}", (long long)({n}));\n' for n in names)
                 + "  return 0;\n}\n")
    exe = tmp / "u"
    cp = subprocess.run(["cc", "-o", str(exe), str(c)], capture_output=True, text=True,
                        timeout=60, check=False, env={**os.environ, "LC_ALL": "C"})
    if cp.returncode:
        return cp.returncode, "", cp.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=10, check=True)
    return 0, run.stdout, ""


@pytest.mark.skipif(shutil.which("cc") is None
                    or not all(os.path.exists(f"/usr/include/{h}") for h in HEADERS),
                    reason="needs a C compiler and the kernel UAPI headers (linux-libc-dev)")
def test_numbers_match_the_kernel_headers(tmp_path: Path) -> None:
    names = sorted(UAPI_INTS)
    rc, out, err = _compile_and_run(names, tmp_path)
    missing: list[str] = []
    if rc:
        # names newer than the installed headers: compare the rest, and say which
        missing = sorted(set(re.findall(r"'(\w+)' undeclared", err)) & set(names))
        assert missing, err
        rc, out, err = _compile_and_run([n for n in names if n not in missing], tmp_path)
        assert rc == 0, err
    got = dict(line.split() for line in out.splitlines())
    wrong = {n: (UAPI_INTS[n], int(v)) for n, v in got.items() if int(v) != UAPI_INTS[n]}
    assert wrong == {}, "uapi value != header value: " + repr(wrong)
    # only names newer than 6.1's headers may be missing (older headers: install newer ones)
    assert set(missing) <= NEWER_THAN_6_1, missing
    assert len(got) > 150
