"""The ELF reader against readelf (oracle) on our examples and Debian's xdp-tools objects."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from dispatcher.errors import ObjectFileError
from dispatcher.obj.elf import parse_object, read_object
from dispatcher.obj.link import extern_problem, link_program
from dispatcher.obj.spec import RelocKind
from dispatcher.uapi import BPF_PROG_TYPE_XDP
from tests.objects import all_objects, example, ids

OBJECTS = all_objects()
readelf = shutil.which("readelf")
needs_readelf = pytest.mark.skipif(readelf is None, reason="readelf (binutils) not installed: no oracle")


def _readelf_sections(path: str) -> dict[str, tuple[int, str]]:
    out = subprocess.run([readelf or "readelf", "-S", "-W", path], check=True, capture_output=True,
                         text=True).stdout
    secs = {}
    for m in re.finditer(r"\[\s*(\d+)\]\s+(\S+)\s+(\S+)\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s*(\S*)",
                         out):
        secs[m.group(2)] = (int(m.group(4), 16), m.group(5))
    return secs


def _readelf_funcs(path: str) -> list[tuple[str, int, int, str, int]]:
    out = subprocess.run([readelf or "readelf", "-s", "-W", path], check=True, capture_output=True,
                         text=True).stdout
    res = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 8 and f[3] == "FUNC":
            res.append((f[7], int(f[1], 16), int(f[2]), f[4], int(f[6])))
    return res


@needs_readelf
@pytest.mark.parametrize("path", OBJECTS, ids=ids(OBJECTS))
def test_functions_and_sections_match_readelf(path: str) -> None:
    spec = read_object(path)
    secs = _readelf_sections(path)
    funcs = {(f.name, f.section): f for f in spec.functions}
    rfuncs = _readelf_funcs(path)
    assert len(rfuncs) == len(spec.functions)
    sec_by_index = {}
    out = subprocess.run([readelf or "readelf", "-S", "-W", path], capture_output=True, text=True).stdout
    for m in re.finditer(r"\[\s*(\d+)\]\s+(\S+)", out):
        sec_by_index[int(m.group(1))] = m.group(2)
    for name, value, size, _bind, ndx in rfuncs:
        f = funcs[(name, sec_by_index[ndx])]
        assert f.start * 8 == value
        assert len(f.insns) == size
    # Every executable non-.text section's global functions are programs.
    exec_secs = {n for n, (size, flg) in secs.items() if "X" in flg and size > 0}
    assert {p.section for p in spec.programs} <= exec_secs
    # Global-data maps have their section's size.
    for m in spec.maps:
        if m.kind == "data":
            assert m.value_size == secs[m.section][0]
    lic = secs.get("license")
    assert (spec.license != "") == (lic is not None)


@pytest.mark.parametrize("path", OBJECTS, ids=ids(OBJECTS))
def test_every_program_links(path: str) -> None:
    spec = read_object(path)
    for prog in spec.programs:
        if prog.prog_type != BPF_PROG_TYPE_XDP:
            continue
        if extern_problem(spec, prog):   # calls a kfunc: refused with that reason
            with pytest.raises(ObjectFileError, match="references extern symbol"):
                link_program(spec, prog, {m.name: 7 for m in spec.maps})
            continue
        linked = link_program(spec, prog, {m.name: 7 for m in spec.maps})
        assert linked.insn_count >= prog.function.insn_count
        if spec.btf_ext is not None:
            # one func_info per placed function, the first at 0
            assert [fi[0] for fi in linked.func_info] == [start for _n, start in linked.pieces]
            assert linked.line_info[0].insn_off == 0


def test_subprograms_are_appended_and_calls_patched() -> None:
    spec = read_object(example("xdp_subprogs"))
    assert sorted(p.name for p in spec.programs) == ["xdp_sub_a", "xdp_sub_b"]
    prog = spec.program(name="xdp_sub_b")
    linked = link_program(spec, prog, {})
    names = [n for n, _ in linked.pieces]
    assert names[0] == "xdp_sub_b" and sorted(names[1:]) == ["count_bytes", "verdict_for"]
    starts = {n: s for n, s in linked.pieces}
    from dispatcher.obj.insn import decode
    insns = decode(linked.insns)
    targets = sorted(i + ins.imm + 1 for i, ins in enumerate(insns) if ins.is_pseudo_call)
    assert targets == sorted(starts[n] for n in ("count_bytes", "verdict_for"))


def test_maps_and_global_data() -> None:
    spec = read_object(example("xdp_globals"))
    kinds = {m.section: m for m in spec.maps if m.kind == "data"}
    assert set(kinds) >= {".rodata", ".data", ".bss"}
    assert kinds[".rodata"].freeze and kinds[".rodata"].flags & 0x80
    assert not kinds[".data"].freeze
    assert kinds[".bss"].data == bytes(kinds[".bss"].value_size)
    prog = spec.programs[0]
    kinds_used = {r.kind for r in prog.function.relocs}
    assert RelocKind.DATA in kinds_used


def test_pinned_lpm_map() -> None:
    spec = read_object(example("xdp_blocklist"))
    m = spec.map_by_name("blocklist")
    assert m is not None and m.type_name == "lpm_trie" and m.pinning == 1
    assert m.flags & 1  # BPF_F_NO_PREALLOC


def test_run_config_metadata() -> None:
    spec = read_object(example("xdp_runcfg"))
    rc = spec.programs[0].run_config
    assert rc.declared and rc.priority == 10
    assert rc.action_names == ("XDP_DROP", "XDP_PASS")
    plain = read_object(example("xdp_pass")).programs[0].run_config
    assert (plain.priority, plain.action_names, plain.declared) == (50, ("XDP_PASS",), False)


def test_frags_section() -> None:
    spec = read_object(example("xdp_frags"))
    assert spec.programs[0].section == "xdp.frags" and spec.programs[0].frags


def test_dispatcher_marker_of_libxdp() -> None:
    spec = read_object("/usr/lib/x86_64-linux-gnu/bpf/xdp-dispatcher.o")
    assert spec.dispatcher_version == 2 and spec.xdp_metadata
    assert {p.name for p in spec.programs} >= {"xdp_dispatcher"}


def test_program_selection_errors() -> None:
    spec = read_object(example("xdp_pass"))
    with pytest.raises(ObjectFileError, match="no program named 'nope'"):
        spec.program(name="nope")
    with pytest.raises(ObjectFileError, match="no program in section 'tc'"):
        spec.program(section="tc")


def test_bad_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ObjectFileError, match="no such file"):
        read_object(str(tmp_path / "missing.o"))
    txt = tmp_path / "notelf.o"
    txt.write_text("hello")
    with pytest.raises(ObjectFileError, match="not an ELF file"):
        read_object(str(txt))
    with pytest.raises(ObjectFileError, match="not BPF"):
        read_object("/bin/true")
    with open(example("xdp_counter"), "rb") as f:
        data = f.read()
    with pytest.raises(ObjectFileError, match="malformed or truncated|truncated"):
        parse_object(data[: len(data) // 2], "half.o")


def test_read_object_parses_each_content_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dispatcher.obj import elf

    p = str(tmp_path / "o.o")
    shutil.copy(example("xdp_pass"), p)
    a = elf.read_object(p)
    assert elf.read_object(p) is a                       # same bytes: the same spec
    shutil.copy(example("xdp_counter"), p)
    b = elf.read_object(p)
    assert b is not a and [x.name for x in b.programs] == ["xdp_counter"]
    for k in range(elf._PARSED_MAX + 5):                 # bounded
        q = str(tmp_path / f"{k}.o")
        shutil.copy(example("xdp_pass"), q)
        elf.read_object(q)
    assert len(elf._PARSED) == elf._PARSED_MAX
    (tmp_path / "o.o").unlink()
    with pytest.raises(ObjectFileError, match="no such file"):
        elf.read_object(p)
