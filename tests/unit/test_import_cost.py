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
    assert heavy(mods, (*STATUS_FORBIDDEN, "pyroute2", "dispatcher.api", "dispatcher.obj",
                        "dispatcher.kernel", "ctypes")) == []


def test_import_dispatcher_is_light() -> None:
    mods = modules_after("import dispatcher")
    assert [m for m in mods if m.startswith("dispatcher.")] == []
    assert heavy(mods, ("pyroute2", "ctypes", "argparse", "json")) == []


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
