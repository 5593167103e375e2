"""The committed BPF objects must match their sources.

Every bpf/examples/*.c is rebuilt (and every bpf/*.c, whose object ships in
dispatcher/bpf/) with the project's compile script into a temporary
directory and compared with the committed object, section by section.
Debug sections (.debug_*, .rel.debug_*) are ignored: their content may
depend on the build machine. Everything the loader reads (code, relocations,
maps, BTF, BTF.ext, symbols) must be identical.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

REPO = Path(__file__).resolve().parents[2]
BPF_CC = REPO / "scripts" / "bpf-cc.sh"

# (source, committed object), both relative to the repository root.
PAIRS: list[tuple[str, str]] = [
    (f"bpf/examples/{src.name}", f"bpf/examples/{src.stem}.o")
    for src in sorted((REPO / "bpf" / "examples").glob("*.c"))
] + [
    (f"bpf/{src.name}", f"dispatcher/bpf/{src.stem}.o")
    for src in sorted((REPO / "bpf").glob("*.c"))
]

needs_clang = pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed")


def _is_debug(name: str) -> bool:
    return name.startswith((".debug_", ".rel.debug_", ".rela.debug_"))


def _sections(path: Path) -> list[tuple[str, int, bytes]]:
    """(name, size, content) of every non-debug section, in file order."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        return [
            (sec.name, int(sec["sh_size"]), b"" if sec["sh_type"] == "SHT_NOBITS" else sec.data())
            for sec in elf.iter_sections()
            if not _is_debug(sec.name)
        ]


def test_there_are_example_sources() -> None:
    assert any(src.startswith("bpf/examples/") for src, _ in PAIRS)


@needs_clang
@pytest.mark.parametrize(("src", "obj"), PAIRS, ids=[src for src, _ in PAIRS])
def test_object_is_fresh(src: str, obj: str, tmp_path: Path) -> None:
    committed = REPO / obj
    assert committed.is_file(), f"missing object {obj}: run make bpf"

    rebuilt = tmp_path / Path(obj).name
    proc = subprocess.run(
        ["bash", str(BPF_CC), src, str(rebuilt)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"compiling {src} failed:\n{proc.stderr}"

    want = _sections(rebuilt)
    have = _sections(committed)
    names_want = [name for name, _, _ in want]
    names_have = [name for name, _, _ in have]
    assert names_have == names_want, f"stale object: run make bpf ({obj}: sections differ)"
    for (name, size_have, data_have), (_, size_want, data_want) in zip(have, want, strict=True):
        assert (size_have, data_have) == (size_want, data_want), (
            f"stale object: run make bpf ({obj}: section {name} differs)"
        )
