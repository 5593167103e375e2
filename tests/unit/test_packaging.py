"""A normal (non-editable) install ships the whole package.

Source-tree tests import ``dispatcher`` from the checkout, so they pass even when an
install would miss a subpackage or a data file. This builds the tracked files (a copy of
``git ls-files``, as a clean clone has them) with pip into a target directory, then checks
the installed tree and runs it from a fresh interpreter that cannot see the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _tracked() -> list[str]:
    cp = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=60,
                        check=False)
    if cp.returncode != 0:
        pytest.skip("not a git checkout: no list of tracked files to build from")
    return [p for p in cp.stdout.decode().split("\0") if p]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """(install target, tracked files under dispatcher/)."""
    tmp = tmp_path_factory.mktemp("pkg")
    src, target = tmp / "src", tmp / "target"
    files = _tracked()
    for rel in files:
        if os.path.isfile(REPO / rel):       # a tracked file deleted in the work tree: skip
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    cp = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                         "--no-build-isolation", "--no-compile", "--target", str(target), "."],
                        cwd=src, capture_output=True, text=True, timeout=120, check=False,
                        env=env)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return target, [f for f in files if f.startswith("dispatcher/")]


def _packages(files: list[str]) -> list[str]:
    return sorted(os.path.dirname(f) for f in files if f.endswith("/__init__.py"))


def test_every_package_and_module_is_installed(installed: tuple[Path, list[str]]) -> None:
    target, files = installed
    pkgs = _packages(files)
    assert "dispatcher/chain/linked" in pkgs and "dispatcher/kernel" in pkgs  # saw the tree
    missing = [f for f in files if f.endswith(".py") and not (target / f).is_file()]
    assert missing == []
    installed_pkgs = sorted(p.parent.relative_to(target).as_posix()
                            for p in (target / "dispatcher").rglob("__init__.py"))
    assert installed_pkgs == pkgs


def test_data_files_are_installed(installed: tuple[Path, list[str]]) -> None:
    target, files = installed
    assert (target / "dispatcher/bpf/dispatcher.o").read_bytes()[:4] == b"\x7fELF"
    assert (target / "dispatcher/py.typed").is_file()
    data = [f for f in files if not f.endswith(".py")]
    assert [f for f in data if not (target / f).is_file()] == []


def _run(target: Path, code: str) -> subprocess.CompletedProcess[str]:
    # -I: no PYTHONPATH, no user site, and not the current directory; the checkout is
    # not on sys.path, the install target is (the venv's site-packages has the deps).
    wrapper = f"import sys\nsys.path.insert(0, {str(target)!r})\n{code}"
    return subprocess.run([sys.executable, "-I", "-c", wrapper], cwd=target, capture_output=True,
                          text=True, timeout=60, check=False)


def test_installed_package_imports_and_runs_status(installed: tuple[Path, list[str]]) -> None:
    target, files = installed
    modules = sorted(f[:-3].replace("/", ".").removesuffix(".__init__")
                     for f in files if f.endswith(".py") and not f.endswith("__main__.py"))
    code = ("import importlib, dispatcher\n"
            f"assert dispatcher.__file__.startswith({str(target)!r}), dispatcher.__file__\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            "from dispatcher.cli import main\n"
            "assert main(['status', 'lo']) == 0\n")
    cp = _run(target, code)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("CURRENT XDP PROGRAM STATUS:") and "\nlo " in cp.stdout


def test_installed_code_finds_the_packaged_dispatcher(installed: tuple[Path, list[str]]) -> None:
    target, _files = installed
    cp = _run(target, "from dispatcher.chain.freplace import program\n"
                      "assert program.dispatcher_object().programs\n")
    assert cp.returncode == 0, cp.stderr
