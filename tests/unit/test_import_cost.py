"""The control path stays cheap to start: what `status` and `--help` import, the lazily built
argument parser, and the installed launcher (scripts/write-launcher.sh).

Every command pays for its imports before doing anything (about 26x more under the VM's
software emulation than here), so modules that only some commands need are imported by
those commands. These tests run the real code path in a fresh interpreter and list
``sys.modules`` afterwards.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from dispatcher import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Never needed to show the state of interfaces: pyroute2's asyncio socket layer (and the ssl,
# multiprocessing, concurrent.futures it brings), the config stack (pydantic, yaml), the ELF
# reader, the object linker and loader, the chain-changing and chain-linking code (hashlib
# loads OpenSSL), and shutil/tempfile (argparse's terminal-size query, writing records).
STATUS_FORBIDDEN = (
    "asyncio", "ssl", "multiprocessing", "concurrent.futures", "pyroute2.iproute",
    "pyroute2.netlink.nlsocket", "pyroute2.netlink.core", "pyroute2.netlink.rtnl",
    "pyroute2.config", "pydantic", "yaml", "elftools", "dispatcher.obj.elf",
    "dispatcher.obj.btf", "dispatcher.obj.btf_ext", "dispatcher.obj.spec", "dispatcher.obj.link",
    "dispatcher.obj.insn", "dispatcher.kernel.loader", "dispatcher.chain.freplace", "dispatcher.chain.router",
    "dispatcher.kernel.probes", "dispatcher.config.model", "dispatcher.config.apply", "dispatcher.chain.linked",
    "dispatcher.chain.linked.backend", "dispatcher.chain.linked.combine", "hashlib", "shutil", "tempfile",
)


# Removing a chain never builds one: no ELF reader, linker, loader or OpenSSL
# (tests/host/test_status_imports.py).
UNLOAD_FORBIDDEN = ("pydantic", "yaml", "elftools", "dispatcher.obj.elf", "dispatcher.obj.link",
                    "dispatcher.kernel.loader", "dispatcher.chain.linked.build",
                    "dispatcher.chain.linked.combine", "dispatcher.config.model", "hashlib", "asyncio")

# Re-applying an unchanged config from its apply record: no YAML/pydantic, no ELF reader, no
# chain-changing code (tests/host/test_applied.py).
REAPPLY_FORBIDDEN = ("pydantic", "yaml", "elftools", "dispatcher.config.model",
                     "dispatcher.config.apply", "dispatcher.obj.elf", "dispatcher.chain.router",
                     "dispatcher.kernel.loader", "dispatcher.chain.linked.build")

# `--help` builds the parser only.
HELP_FORBIDDEN = (*STATUS_FORBIDDEN, "pyroute2", "dispatcher.api", "dispatcher.obj",
                  "dispatcher.kernel", "ctypes")

# `import dispatcher` re-exports the API lazily.
IMPORT_FORBIDDEN = ("pyroute2", "ctypes", "argparse", "json")

LISTS = {"STATUS_FORBIDDEN": STATUS_FORBIDDEN, "UNLOAD_FORBIDDEN": UNLOAD_FORBIDDEN,
         "REAPPLY_FORBIDDEN": REAPPLY_FORBIDDEN, "HELP_FORBIDDEN": HELP_FORBIDDEN,
         "IMPORT_FORBIDDEN": IMPORT_FORBIDDEN}


def _exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:       # a parent package is missing
        return False


@pytest.mark.parametrize("list_name", sorted(LISTS))
def test_every_listed_module_exists(list_name: str) -> None:
    # a renamed or removed module would make "is not imported" pass for ever
    missing = [m for m in LISTS[list_name] if not _exists(m)]
    assert missing == [], f"{list_name} names modules that do not exist: {missing}"


def test_missing_module_is_noticed() -> None:
    assert not _exists("dispatcher.no_such_module") and not _exists("no_such_pkg.sub")
    assert _exists("dispatcher.chain.state") and _exists("pyroute2.netlink")


def modules_after(code: str, *python_flags: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after running ``code`` (its stdout discarded;
    the wrapper itself imports nothing)."""
    wrapper = ("import os, sys\n"
               "_out = sys.stdout\n"
               "sys.stdout = open(os.devnull, 'w')\n"
               f"{code}\n"
               "_out.write(repr(sorted(sys.modules)))\n")
    cp = subprocess.run([sys.executable, *python_flags, "-c", wrapper], cwd=REPO,
                        capture_output=True, text=True, timeout=60, check=False)
    assert cp.returncode == 0, cp.stderr
    mods = ast.literal_eval(cp.stdout)
    assert isinstance(mods, list)
    return set(mods)


def heavy(mods: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in mods if any(m == f or m.startswith(f + ".") for f in forbidden))


def test_status_imports_only_what_it_needs() -> None:
    # `status lo` runs the real path: an RTM_GETLINK through pyroute2's message classes,
    # bpffs and ownership lookups, the rendering (lo has no XDP program: no root needed)
    mods = modules_after("from dispatcher.cli import main\n"
                         "assert main(['status', 'lo']) == 0")
    assert "pyroute2.netlink" in mods and "dispatcher.chain.observe" in mods  # it did run
    assert heavy(mods, STATUS_FORBIDDEN) == []


def test_status_json_imports_only_what_it_needs() -> None:
    mods = modules_after("from dispatcher.cli import main\n"
                         "assert main(['status', 'lo', '--json']) == 0")
    assert heavy(mods, STATUS_FORBIDDEN) == []


def test_help_imports_no_netlink_and_no_object_layer() -> None:
    mods = modules_after("from dispatcher.cli import main\n"
                         "try:\n"
                         "    main(['--help'])\n"
                         "except SystemExit as e:\n"
                         "    assert e.code == 0")
    assert heavy(mods, HELP_FORBIDDEN) == []


def test_import_dispatcher_is_light() -> None:
    mods = modules_after("import dispatcher")
    assert [m for m in mods if m.startswith("dispatcher.")] == []
    assert heavy(mods, IMPORT_FORBIDDEN) == []


def imports_dataclasses(path: str) -> bool:
    """Whether the module's code imports ``dataclasses`` anywhere it can run (blocks under
    ``if TYPE_CHECKING:`` never run)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING",
                                                                  "typing.TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import) and any(a.name == "dataclasses" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "dataclasses":
            return True
        todo.extend(ast.iter_child_nodes(node))
    return False


#: record.replace() hands dataclass instances to dataclasses.replace: that import runs only
#: when a dataclass instance exists, i.e. when dataclasses is imported already.
DATACLASSES_EXEMPT = {"dispatcher.record"}


def test_status_path_uses_record_not_dataclasses() -> None:
    # the policy in dispatcher/record.py: what `status` imports builds its value classes
    # with @record, so a short command never pays for dataclasses (and inspect)
    mods = modules_after("from dispatcher.cli import main\n"
                         "assert main(['status', 'lo']) == 0\n"
                         "assert main(['status', 'lo', '--json']) == 0")
    assert "dataclasses" not in mods and "inspect" not in mods
    ours = sorted(m for m in mods if m == "dispatcher" or m.startswith("dispatcher."))
    assert "dispatcher.chain.state" in ours and "dispatcher.render" in ours  # it did run
    offenders = []
    for m in ours:
        spec = importlib.util.find_spec(m)
        assert spec is not None and spec.origin is not None, m
        if m not in DATACLASSES_EXEMPT and imports_dataclasses(spec.origin):
            offenders.append(m)
    assert offenders == [], f"on the status path, use @record instead: {offenders}"


def test_dataclasses_check_can_fail() -> None:
    from dispatcher.obj import insn, spec

    assert imports_dataclasses(insn.__file__) and not imports_dataclasses(spec.__file__)


def test_heavy_check_can_fail() -> None:
    # the check itself sees a heavy import when there is one
    mods = modules_after("from dispatcher.cli import main\n"
                         "import dispatcher.obj.elf\n"
                         "main(['status', 'lo'])")
    assert "dispatcher.obj.elf" in heavy(mods, STATUS_FORBIDDEN)


ARGVS = [
    ["status"], ["status", "eth0", "--json", "--netns", "ns1"], ["--debug", "status", "lo"],
    ["load", "eth0", "a.o", "b.o", "-m", "skb", "-p", "7", "-A", "XDP_PASS,XDP_DROP"],
    ["load", "eth0", "a.o", "-s", "xdp", "--force", "-v", "--verifier-log", "log.txt"],
    ["unload", "eth0", "--all"], ["unload", "eth0", "-i", "3", "-i", "4", "--netns", "x"],
    ["inspect", "x.o", "--disasm", "-n", "prog"], ["clean"], ["features", "lo", "--json"],
    ["plan", "c.yaml", "--json", "--exclusive"], ["apply", "c.yaml", "--dry-run"],
    ["schema"], ["check", "c.yaml"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: " ".join(a))
def test_parser_for_one_command_parses_like_the_whole_parser(argv: list[str]) -> None:
    only = cli._only_command(argv)
    assert only == next(a for a in argv if a != "--debug")
    whole = cli._build_parser().parse_args(argv)
    assert cli._build_parser(only).parse_args(argv) == whole
    assert isinstance(whole, argparse.Namespace)


@pytest.mark.parametrize("argv", [[], ["-h"], ["--help"], ["bogus"], ["--deb", "status"],
                                  ["--", "status"], ["-h", "status"]])
def test_anything_else_gets_the_whole_parser(argv: list[str]) -> None:
    assert cli._only_command(argv) is None


def test_every_command_has_a_handler_and_a_parser() -> None:
    sub = next(a for a in cli._build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(cli._COMMANDS)


@pytest.mark.parametrize("columns", [None, "", "0", "-3", "abc", "40", "200"])
def test_columns_like_shutil(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli._columns() == shutil.get_terminal_size().columns


def test_help_text_wraps_at_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    text = cli._build_parser().format_help()
    assert max(len(line) for line in text.splitlines()) <= 48
    monkeypatch.setenv("COLUMNS", "300")
    assert max(len(line) for line in cli._build_parser().format_help().splitlines()) > 50


def test_launcher_runs_without_site(tmp_path: os.PathLike[str]) -> None:
    out = os.path.join(tmp_path, "xdp-dispatch")
    subprocess.run(["bash", os.path.join(REPO, "scripts/write-launcher.sh"), sys.executable, out,
                    REPO], check=True, timeout=60)
    with open(out) as f:
        first = f.readline()
    assert first == f"#!{sys.executable} -IS\n"
    assert os.access(out, os.X_OK)
    cp = subprocess.run([out, "status", "lo"], capture_output=True, text=True, timeout=60,
                        check=False, env={**os.environ, "PYTHONPATH": "/nonexistent"})
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("CURRENT XDP PROGRAM STATUS:")
    assert "\nlo " in cp.stdout
    # the interpreter the launcher runs has no site module
    with open(out) as f:
        body = f.read().split("\n", 1)[1]
    mods = modules_after(body.replace("entry()", "from dispatcher.cli import main\n"
                                                 "main(['status', 'lo'])"), "-I", "-S")
    assert "site" not in mods and heavy(mods, STATUS_FORBIDDEN) == []
