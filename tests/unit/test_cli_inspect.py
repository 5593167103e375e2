"""`xdp-dispatch inspect` and bad object files: one clear line, non-zero exit, no traceback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.cli import assert_one_line_error, run_cli
from tests.objects import example


def test_inspect_json() -> None:
    cp = run_cli("inspect", example("xdp_runcfg"), "--json", check=True)
    d = json.loads(cp.stdout)
    assert d["license"] == "GPL" and d["btf"] is True
    (p,) = d["programs"]
    assert p["name"] == "xdp_runcfg" and p["section"] == "xdp" and p["type"] == "xdp"
    assert p["run_config"] == {"priority": 10, "chain_call_actions": ["XDP_DROP", "XDP_PASS"],
                               "declared": True}


def test_inspect_text_lists_maps() -> None:
    cp = run_cli("inspect", example("xdp_blocklist"), check=True)
    assert "blocklist" in cp.stdout and "lpm_trie" in cp.stdout and "by_name" in cp.stdout


@pytest.mark.skipif(shutil.which("llvm-objdump") is None, reason="llvm-objdump not installed: no oracle")
def test_disasm_has_source_lines_like_objdump() -> None:
    cp = run_cli("inspect", example("xdp_drop_icmp"), "--disasm", check=True)
    ours = [ln.split(": ", 1)[1] for ln in cp.stdout.splitlines() if re.match(r"^\s*\d+: ", ln)]
    src_ours = {ln[2:].strip() for ln in cp.stdout.splitlines() if ln.startswith("; ")}
    od = subprocess.run(["llvm-objdump", "-S", "--no-show-raw-insn", example("xdp_drop_icmp")],
                        capture_output=True, text=True, check=True).stdout
    src_od = {ln[2:].strip() for ln in od.splitlines() if ln.startswith("; ")}
    # BTF line_info and DWARF (objdump's source) name nearly the same lines; BTF also marks
    # each function's signature line.
    assert src_ours and len(src_ours & src_od) >= 0.8 * len(src_ours), (src_ours - src_od)
    n_od = sum(1 for ln in od.splitlines() if ln.strip()[:1].isdigit() and ":" in ln and "\t" in ln)
    assert len(ours) == n_od


def test_not_elf(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "x.o"
    f.write_text("not an object")
    assert_one_line_error(run_cli("inspect", str(f)), "x.o", "not an ELF file")


def test_other_machine() -> None:
    assert_one_line_error(run_cli("inspect", "/bin/true"), "not BPF")


def test_missing_file() -> None:
    assert_one_line_error(run_cli("inspect", "/nonexistent/prog.o"), "/nonexistent/prog.o", "no such file")


def test_truncated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open(example("xdp_counter"), "rb") as src:
        data = src.read()
    f = tmp_path / "trunc.o"
    f.write_bytes(data[:700])
    assert_one_line_error(run_cli("inspect", str(f)), "trunc.o")


@pytest.mark.skipif(shutil.which("llvm-objcopy") is None, reason="llvm-objcopy not installed")
def test_maps_without_btf(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "nobtf.o"
    subprocess.run(["llvm-objcopy", "--remove-section=.BTF", "--remove-section=.BTF.ext",
                    example("xdp_counter"), str(out)], check=True)
    assert_one_line_error(run_cli("inspect", str(out)), "nobtf.o", "need BTF")


def test_unknown_program_name() -> None:
    assert_one_line_error(run_cli("inspect", example("xdp_pass"), "--disasm", "-n", "nope"),
                          "no program named 'nope'")


def test_usage_error_exit_code() -> None:
    cp = run_cli("frobnicate")
    assert cp.returncode == 2 and "Traceback" not in cp.stderr


def test_check_and_schema_verbs() -> None:
    import os

    from tests.objects import REPO

    cp = run_cli("check", os.path.join(REPO, "configs", "lo-pass-counter.yaml"), check=True)
    assert "ok" in cp.stdout
    bad = os.path.join(REPO, "tests", "unit", "bad_configs", "priority_out_of_range.yaml")
    cp = run_cli("check", bad)
    assert cp.returncode == 2 and "Traceback" not in cp.stderr
    assert "priority_out_of_range.yaml:" in cp.stderr and "priority" in cp.stderr
    schema = json.loads(run_cli("schema", check=True).stdout)
    assert "interfaces" in json.dumps(schema)
