"""dispatcher.obj.btf / btf_ext against real objects, with bpftool and readelf as oracles.

Objects: every xdp-tools object in /usr/lib/x86_64-linux-gnu/bpf/, every
bpf/examples/*.o, and a few C programs compiled here (when clang is installed) that
cover the BTF kinds clang 14 can emit: maps of every BTF encoding, .data/.bss/.rodata,
hidden/static/extern variables, bitfields, unions, FLOAT, FWD, RESTRICT, DECL_TAG,
TYPE_TAG, varargs FUNC_PROTO and CO-RE relocations. ENUM64 and signed enums (which
clang 14 cannot emit) are checked on hand-built BTF.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from dispatcher.obj.btf import (
    FUNC_GLOBAL,
    FUNC_STATIC,
    VAR_GLOBAL_ALLOCATED,
    VAR_GLOBAL_EXTERN,
    VAR_STATIC,
    Btf,
    BtfArray,
    BtfEnumValue,
    BtfFormatError,
    BtfKind,
    BtfMember,
    BtfParam,
    BtfType,
    BtfVarSecinfo,
)
from dispatcher.obj.btf_ext import (
    BtfExt,
    CoreReloKind,
    CoreReloRec,
    LineInfoRec,
    encode_core_relos,
    encode_func_info,
    encode_line_info,
)
from dispatcher.record import replace

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_OBJS = sorted(Path("/usr/lib/x86_64-linux-gnu/bpf").glob("*.o"))
EXAMPLE_OBJS = sorted((ROOT / "bpf" / "examples").glob("*.o"))
BPFTOOL = shutil.which("bpftool")
READELF = shutil.which("readelf")
CLANG = shutil.which("clang")

# --------------------------------------------------------------------------- C sources
COMMON_H = r"""
typedef unsigned int __u32;
typedef unsigned long long __u64;
#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __array(name, val) typeof(val) *name[]
struct xdp_md { __u32 data; __u32 data_end; __u32 data_meta; __u32 ingress_ifindex;
                __u32 rx_queue_index; __u32 egress_ifindex; };
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *)6;
static long (*bpf_tail_call)(void *ctx, void *map, __u32 index) = (void *)12;
char _license[] SEC("license") = "GPL";
"""

C_PROGRAMS = {
    # BTF-defined maps (plain, pinned, map-in-map, prog array), global data of every
    # linkage, .kconfig/.ksyms externs, global and static subprograms, two sections.
    "maps_data": r"""
#include "common.h"
struct val { __u64 packets; __u64 bytes; };
struct inner { __uint(type, 2); __uint(max_entries, 4); __type(key, __u32); __type(value, __u32); };
struct inner inner_a SEC(".maps");
struct {
    __uint(type, 1); __uint(max_entries, 16); __type(key, __u32); __type(value, struct val);
    __uint(pinning, 1); __uint(map_flags, 1);
} stats SEC(".maps");
struct {
    __uint(type, 12); __uint(max_entries, 2); __type(key, __u32);
    __array(values, struct inner);
} outer SEC(".maps") = { .values = { &inner_a } };
struct {
    __uint(type, 3); __uint(max_entries, 4); __type(key, __u32);
    __array(values, int (void *));
} jmp SEC(".maps");
int counter = 3;
static int scounter = 5;
int zeroed;
__attribute__((visibility("hidden"))) int hidden_var;
const volatile __u32 cfg_a = 7;
const volatile __u32 cfg_b = 9;
extern int LINUX_KERNEL_VERSION __attribute__((section(".kconfig"), weak));
extern int bpf_fake_kfunc(int) __attribute__((section(".ksyms"), weak));
__attribute__((noinline)) int global_sub(struct xdp_md *ctx) { return ctx->data + scounter++; }
static __attribute__((noinline)) int static_sub(int x) { return x * cfg_b; }
SEC("xdp") int prog_a(struct xdp_md *ctx)
{
    __u32 k = 0;
    struct val *v = bpf_map_lookup_elem(&stats, &k);
    static const char fmt[] = "hi %d";
    counter++; zeroed++; hidden_var++;
    if (!v) return 2;
    v->packets++;
    bpf_trace_printk(fmt, sizeof(fmt), counter);
    if (LINUX_KERNEL_VERSION > 1 && bpf_fake_kfunc) bpf_fake_kfunc(1);
    return global_sub(ctx) + static_sub(cfg_a);
}
SEC("xdp.frags") int prog_b(struct xdp_md *ctx)
{
    __u32 k = 0;
    void *in = bpf_map_lookup_elem(&outer, &k);
    bpf_tail_call(ctx, &jmp, 0);
    return in ? 1 : 2;
}
""",
    # Type zoo: bitfields, unions, FLOAT, enums (negative, 64-bit), FWD, DECL_TAG on
    # type/member/var/func/arg, TYPE_TAG, RESTRICT, varargs FUNC_PROTO, 2-D arrays.
    "types": r"""
#include "common.h"
#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __user __attribute__((btf_type_tag("user")))
struct bits { unsigned int a:3; unsigned int b:5; int c; unsigned long long d:40; signed char e:2; };
union u { int i; float f; double d; char s[8]; struct { short lo, hi; } parts; };
enum small { S_A = 1, S_B = -2 };
enum big { B_A = 0x100000000ULL, B_B = 1 };
struct opaque;
struct tagged { int x __tag("member"); struct opaque *op; } __tag("type");
typedef int (*vfp)(int, const char *, ...);
typedef int __user *uptr;
struct all {
    struct bits b; union u un; enum small es; enum big eb; struct tagged t;
    vfp fp; uptr up; int *restrict rp; const volatile long cv; _Bool flag; char m[2][3];
    float fl; double dbl; unsigned __int128 wide;
};
struct all all_var __tag("var");
volatile float fval;
__attribute__((noinline)) int __tag("fn") sub(struct all *a __tag("arg"), int n)
{ return a->b.a + a->b.d + n + a->m[1][2] + a->es; }
SEC("xdp") int prog(struct xdp_md *ctx) { return sub(&all_var, ctx->data) + *(volatile int *)&fval; }
""",
    # CO-RE relocations of several kinds.
    "core": r"""
#include "common.h"
struct xdp_md___local { __u32 data; __u32 data_end; } __attribute__((preserve_access_index));
struct gone { int a; int b; } __attribute__((preserve_access_index));
enum color { RED = 1, GREEN = 2 };
SEC("xdp") int core_prog(struct xdp_md___local *ctx)
{
    int r = 0;
    r += __builtin_preserve_field_info(((struct gone *)0)->b, 2);
    r += __builtin_preserve_field_info(((struct gone *)0)->b, 1);
    r += __builtin_preserve_type_info(*(struct gone *)0, 0);
    r += __builtin_preserve_type_info(*(struct gone *)0, 1);
    r += __builtin_preserve_enum_value(*(typeof(enum color) *)GREEN, 1);
    r += __builtin_btf_type_id(*(struct gone *)0, 1);
    return (ctx->data_end - ctx->data) + r;
}
""",
}


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if CLANG is None:
        pytest.skip("clang is not installed: cannot compile the BTF test programs")
    d = tmp_path_factory.mktemp("btf_c")
    (d / "common.h").write_text(COMMON_H)
    out: dict[str, Path] = {}
    for name, src in C_PROGRAMS.items():
        (d / f"{name}.c").write_text(src)
        obj = d / f"{name}.o"
        r = subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-c", f"{name}.c", "-o",
                            obj.name], cwd=d, capture_output=True, text=True)
        assert r.returncode == 0, f"clang failed on {name}.c:\n{r.stderr}"
        out[name] = obj
    return out


OBJ_IDS = ([f"sys:{p.name}" for p in SYSTEM_OBJS] + [f"ex:{p.name}" for p in EXAMPLE_OBJS]
           + [f"c:{n}" for n in C_PROGRAMS])


@pytest.fixture(params=OBJ_IDS)
def obj(request: pytest.FixtureRequest) -> Path:
    kind, name = str(request.param).split(":", 1)
    if kind == "sys":
        return Path("/usr/lib/x86_64-linux-gnu/bpf") / name
    if kind == "ex":
        return ROOT / "bpf" / "examples" / name
    compiled: dict[str, Path] = request.getfixturevalue("compiled")
    return compiled[name]


class Elf:
    """What the tests need from an object file, read with pyelftools."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as fh:
            elf = ELFFile(fh)
            btf = elf.get_section_by_name(".BTF")
            ext = elf.get_section_by_name(".BTF.ext")
            self.btf = btf.data() if btf is not None else None
            self.ext = ext.data() if ext is not None else None
            self.sections = {s.name: s["sh_size"] for s in elf.iter_sections()
                             if s["sh_type"] in ("SHT_PROGBITS", "SHT_NOBITS")}
            self.globals: dict[str, tuple[int, bool]] = {}
            self.funcs: dict[str, set[tuple[int, str]]] = {}
            symtab = elf.get_section_by_name(".symtab")
            assert isinstance(symtab, SymbolTableSection)
            for s in symtab.iter_symbols():
                typ, bind = s["st_info"]["type"], s["st_info"]["bind"]
                shndx = s["st_shndx"]
                if typ == "STT_OBJECT" and bind in ("STB_GLOBAL", "STB_WEAK") \
                        and isinstance(shndx, int):
                    hidden = s["st_other"]["visibility"] in ("STV_HIDDEN", "STV_INTERNAL")
                    self.globals[s.name] = (s["st_value"], hidden)
                if typ == "STT_FUNC" and isinstance(shndx, int):
                    sec = elf.get_section(shndx).name
                    self.funcs.setdefault(sec, set()).add((s["st_value"], s.name))


def load(path: Path) -> tuple[Elf, Btf]:
    e = Elf(path)
    if e.btf is None:
        pytest.skip(f"{path.name} has no .BTF section")
    return e, Btf.parse(e.btf)


def bpftool_dump(path: Path) -> str:
    if BPFTOOL is None:
        pytest.skip("bpftool is not installed (it is the oracle for this test)")
    r = subprocess.run([BPFTOOL, "btf", "dump", "file", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.rstrip("\n")


def readelf_symbols(path: Path) -> dict[str, tuple[int, str]]:
    """name -> (value, visibility) of defined OBJECT symbols, from `readelf -sW`."""
    if READELF is None:
        pytest.skip("readelf is not installed (it is the oracle for this test)")
    r = subprocess.run([READELF, "-sW", str(path)], capture_output=True, text=True,
                       check=True)
    out: dict[str, tuple[int, str]] = {}
    for line in r.stdout.splitlines():
        f = line.split()
        if len(f) == 8 and f[0].endswith(":") and f[3] == "OBJECT" and f[6] != "UND":
            out[f[7]] = (int(f[1], 16), f[5])
    return out


# --------------------------------------------------------------------------- real objects
def test_collected_objects() -> None:
    if not SYSTEM_OBJS and not EXAMPLE_OBJS and CLANG is None:
        pytest.skip("no BPF objects installed and no clang to build any")
    assert OBJ_IDS


def test_parse_matches_bpftool(obj: Path) -> None:
    _, btf = load(obj)
    expected = bpftool_dump(obj)
    assert len(btf.types) - 1 == len(re.findall(r"^\[\d+\] ", expected, re.M))
    assert btf.dump() == expected


def test_header_lines_match_bpftool(obj: Path) -> None:
    """Per type: same id, kind and name as bpftool (pinpoints a failure of the full dump)."""
    _, btf = load(obj)
    heads = [ln for ln in bpftool_dump(obj).splitlines() if ln.startswith("[")]
    for tid, line in enumerate(heads, 1):
        assert btf.format_type(tid).split("\n")[0] == line
        m = re.match(r"\[(\d+)\] (\w+) '([^']*)'", line)
        assert m is not None
        t = btf.types[tid]
        assert int(m.group(1)) == tid
        assert t.kind.name == m.group(2).replace("UNKNOWN", "UNKN")
        assert (t.name or "(anon)") == m.group(3)


def test_encode_roundtrip(obj: Path) -> None:
    e, btf = load(obj)
    assert btf.encode() == e.btf
    assert Btf.parse(btf.encode()) == btf


def test_btf_ext_func_info_matches_symbols(obj: Path) -> None:
    e, btf = load(obj)
    if e.ext is None:
        pytest.skip(f"{obj.name} has no .BTF.ext")
    ext = BtfExt.parse(e.ext, btf)
    assert ext.func_info_rec_size == 8
    assert ext.line_info_rec_size == 16
    got = {sec: {(r.insn_off, btf.types[r.type_id].name) for r in recs}
           for sec, recs in ext.func_info.items()}
    # Oracle: one func_info per STT_FUNC symbol, at its st_value, naming it.
    assert got == e.funcs
    for recs in ext.func_info.values():
        for r in recs:
            assert btf.types[r.type_id].kind == BtfKind.FUNC
            assert r.insn_off % 8 == 0


def test_btf_ext_line_info(obj: Path) -> None:
    e, btf = load(obj)
    if e.ext is None:
        pytest.skip(f"{obj.name} has no .BTF.ext")
    ext = BtfExt.parse(e.ext, btf)
    assert set(ext.line_info) == set(ext.func_info)
    for sec, recs in ext.line_info.items():
        offs = [r.insn_off for r in recs]
        assert offs == sorted(offs)
        assert all(o % 8 == 0 and o < e.sections[sec] for o in offs)
        # clang puts a line_info at the start of every function
        assert {r.insn_off for r in ext.func_info[sec]} <= set(offs)
        for r in recs:
            assert btf.string_at(r.file_name_off)
            assert r.line == r.line_col >> 10 and r.col == r.line_col & 0x3FF


def test_btf_ext_core_relos(obj: Path) -> None:
    e, btf = load(obj)
    if e.ext is None:
        pytest.skip(f"{obj.name} has no .BTF.ext")
    ext = BtfExt.parse(e.ext, btf)
    for sec, recs in ext.core_relos.items():
        for r in recs:
            assert r.insn_off % 8 == 0 and r.insn_off < e.sections[sec]
            assert r.kind in set(CoreReloKind)
            assert 0 < r.type_id < len(btf.types)
            assert re.fullmatch(r"\d+(:\d+)*", btf.string_at(r.access_str_off))


def test_known_core_relo_counts(compiled: dict[str, Path]) -> None:
    xdpdump = Path("/usr/lib/x86_64-linux-gnu/bpf/xdpdump_bpf.o")
    if xdpdump.exists():
        e, btf = load(xdpdump)
        assert e.ext is not None
        ext = BtfExt.parse(e.ext, btf)
        assert sum(len(v) for v in ext.core_relos.values()) == 20  # loader.md 3.5
    e, btf = load(compiled["core"])
    assert e.ext is not None
    ext = BtfExt.parse(e.ext, btf)
    kinds = {CoreReloKind(r.kind) for r in ext.core_relos["xdp"]}
    assert {CoreReloKind.FIELD_BYTE_OFFSET, CoreReloKind.FIELD_EXISTS,
            CoreReloKind.FIELD_BYTE_SIZE, CoreReloKind.TYPE_EXISTS, CoreReloKind.TYPE_SIZE,
            CoreReloKind.ENUMVAL_VALUE, CoreReloKind.TYPE_ID_TARGET} <= kinds


# --------------------------------------------------------------------------- fix-ups
def test_fixup_datasecs(obj: Path, tmp_path: Path) -> None:
    e, btf = load(obj)
    fixed = btf.fixup_datasecs(e.sections, e.globals)
    syms = readelf_symbols(obj)
    assert len(fixed.types) == len(btf.types)
    assert len(fixed.encode()) == len(btf.encode())
    for tid, t in enumerate(fixed.types):
        if t.kind != BtfKind.DATASEC or t.name in (".kconfig", ".ksyms"):
            if t.kind == BtfKind.DATASEC:
                assert t == btf.types[tid]
            continue
        assert t.size == e.sections[t.name] != 0
        offs = [s.offset for s in t.secinfos]
        assert offs == sorted(offs)
        for s in t.secinfos:
            var = fixed.types[s.type_id]
            orig = btf.types[s.type_id]
            assert var.kind == BtfKind.VAR
            assert s.offset + s.size <= t.size
            if orig.linkage == VAR_GLOBAL_ALLOCATED:
                value, vis = syms[var.name]
                assert s.offset == value
                want = VAR_STATIC if vis in ("HIDDEN", "INTERNAL") else VAR_GLOBAL_ALLOCATED
                assert var.linkage == want
            else:
                assert var == orig
    # the result is still valid BTF to libbpf
    raw = tmp_path / "fixed.btf"
    raw.write_bytes(fixed.encode())
    assert fixed.dump() == bpftool_dump(raw)


def test_fixup_maps_data_details(compiled: dict[str, Path]) -> None:
    e, btf = load(compiled["maps_data"])
    fixed = btf.fixup_datasecs(e.sections, e.globals)

    def secinfo(sec: str) -> dict[str, BtfVarSecinfo]:
        ds = fixed.types[fixed.find(sec, BtfKind.DATASEC) or 0]
        return {fixed.types[s.type_id].name: s for s in ds.secinfos}

    maps = secinfo(".maps")
    assert [maps[n].offset for n in ("inner_a", "outer", "stats", "jmp")] == [0, 32, 64, 112]
    assert fixed.types[fixed.find("hidden_var", BtfKind.VAR) or 0].linkage == VAR_STATIC
    assert btf.types[btf.find("hidden_var", BtfKind.VAR) or 0].linkage == VAR_GLOBAL_ALLOCATED
    assert secinfo(".bss")["hidden_var"].offset == 4
    assert secinfo(".data")["scounter"].offset == 4  # static: clang's offset kept
    assert secinfo(".rodata")["cfg_b"].offset == 4
    kc = fixed.types[fixed.find(".kconfig", BtfKind.DATASEC) or 0]
    assert kc.size == 0  # externs left for the loader
    assert fixed.types[kc.secinfos[0].type_id].linkage == VAR_GLOBAL_EXTERN
    # the input is untouched (immutability)
    assert btf.encode() == e.btf
    # fixing up twice changes nothing more
    assert fixed.fixup_datasecs(e.sections, e.globals) == fixed


def test_fixup_errors(compiled: dict[str, Path]) -> None:
    e, btf = load(compiled["maps_data"])
    sizes = dict(e.sections)
    del sizes[".bss"]
    with pytest.raises(BtfFormatError, match=r"\.bss"):
        btf.fixup_datasecs(sizes, e.globals)
    with pytest.raises(BtfFormatError, match=r"\.bss"):
        btf.fixup_datasecs({**e.sections, ".bss": 0}, e.globals)
    glob = dict(e.globals)
    del glob["stats"]
    with pytest.raises(BtfFormatError, match="stats"):
        btf.fixup_datasecs(e.sections, glob)
    # a DATASEC with a size already set and no ELF section is left alone
    ds = btf.find(".bss", BtfKind.DATASEC)
    assert ds is not None
    sized = btf.with_type(ds, replace(btf.types[ds], size_or_type=8))
    out = sized.fixup_datasecs(sizes, e.globals)
    assert out.types[ds] == sized.types[ds]


def test_fixup_without_changes_returns_same() -> None:
    btf = Btf.from_parts([BtfType(BtfKind.INT, name_off=1, size_or_type=4,
                                  int_encoding=32)], b"\0int\0")
    assert btf.fixup_datasecs({}, {}) is btf


# --------------------------------------------------------------------------- lookups
def test_find_and_resolve(compiled: dict[str, Path]) -> None:
    _, btf = load(compiled["types"])
    all_id = btf.find("all", BtfKind.STRUCT)
    assert all_id is not None
    assert btf.find("all") == all_id
    assert btf.find("all", BtfKind.UNION) is None
    assert btf.find("no_such_type") is None
    assert btf.find_all("__ARRAY_SIZE_TYPE__") == [btf.find("__ARRAY_SIZE_TYPE__")]
    assert len(btf.find_all("", BtfKind.PTR)) == len(
        [t for t in btf.types if t.kind == BtfKind.PTR])
    assert btf.resolve_size(all_id) == 128
    members = {m.name: m for m in btf.types[all_id].members}
    assert btf.resolve_size(members["m"].type_id) == 6  # char[2][3]
    assert btf.resolve_size(members["cv"].type_id) == 8  # const volatile long
    assert btf.resolve_size(members["fp"].type_id) == 8  # typedef -> ptr
    assert btf.resolve_size(members["up"].type_id) == 8  # typedef -> ptr -> type_tag
    assert btf.resolve_size(members["fl"].type_id) == 4  # FLOAT
    assert btf.resolve_size(members["wide"].type_id) == 16
    assert btf.resolve_size(members["eb"].type_id) == 8  # ENUM of size 8
    var = btf.find("all_var", BtfKind.VAR)
    assert var is not None and btf.resolve_size(var) == 128
    cv = members["cv"].type_id
    assert btf.types[btf.skip_mods_and_typedefs(cv)].name == "long"
    up = btf.types[btf.skip_mods_and_typedefs(members["up"].type_id)]
    assert up.kind == BtfKind.PTR
    assert btf.types[btf.skip_mods_and_typedefs(up.type_id)].name == "int"  # past TYPE_TAG
    bits = btf.types[btf.find("bits", BtfKind.STRUCT) or 0]
    assert bits.kflag
    d = bits.members[3]
    assert (bits.member_bit_offset(d), bits.member_bitfield_size(d)) == (64, 40)
    for bad in ("sub", "opaque"):  # FUNC, FWD
        with pytest.raises(BtfFormatError):
            btf.resolve_size(btf.find(bad) or 0)
    with pytest.raises(BtfFormatError, match="void"):
        btf.resolve_size(0)
    with pytest.raises(BtfFormatError):
        btf.resolve_size(len(btf.types))
    fp = btf.types[btf.skip_mods_and_typedefs(members["fp"].type_id)]
    proto = btf.types[fp.type_id]
    assert proto.kind == BtfKind.FUNC_PROTO and proto.params[-1].type_id == 0  # varargs


def test_resolve_loops_and_overflow() -> None:
    strs = b"\0a\0b\0"
    loop = Btf.from_parts([BtfType(BtfKind.TYPEDEF, name_off=1, size_or_type=2),
                           BtfType(BtfKind.TYPEDEF, name_off=3, size_or_type=1)], strs)
    with pytest.raises(BtfFormatError, match="loop"):
        loop.resolve_size(1)
    with pytest.raises(BtfFormatError, match="loop"):
        loop.skip_mods_and_typedefs(2)
    big = Btf.from_parts([
        BtfType(BtfKind.INT, name_off=1, size_or_type=8, int_encoding=64),
        BtfType(BtfKind.ARRAY, array=BtfArray(1, 1, 0x10000)),
        BtfType(BtfKind.ARRAY, array=BtfArray(2, 1, 0x10000)),
    ], strs)
    assert big.resolve_size(2) == 0x80000
    with pytest.raises(BtfFormatError, match="overflow"):
        big.resolve_size(3)


def test_string_at() -> None:
    btf = Btf.from_parts([], b"\0abc\0")
    assert btf.string_at(0) == ""
    assert btf.string_at(1) == "abc"
    assert btf.string_at(2) == "bc"
    with pytest.raises(BtfFormatError):
        btf.string_at(5)
    with pytest.raises(BtfFormatError):
        btf.string_at(-1)


# --------------------------------------------------------------------------- modification
def test_with_func_linkage(compiled: dict[str, Path], tmp_path: Path) -> None:
    e, btf = load(compiled["maps_data"])
    fid = btf.find("global_sub", BtfKind.FUNC)
    assert fid is not None and btf.types[fid].linkage == FUNC_GLOBAL
    st = btf.with_func_linkage(fid, FUNC_STATIC)
    assert st.types[fid].linkage == FUNC_STATIC and st.types[fid].vlen == FUNC_STATIC
    assert btf.types[fid].linkage == FUNC_GLOBAL
    assert st.types[:fid] == btf.types[:fid] and st.types[fid + 1:] == btf.types[fid + 1:]
    raw = tmp_path / "st.btf"
    raw.write_bytes(st.encode())
    dump = bpftool_dump(raw)
    assert f"[{fid}] FUNC 'global_sub' type_id={btf.types[fid].type_id} linkage=static" in dump
    assert dump == st.dump()
    with pytest.raises(BtfFormatError, match="not FUNC"):
        btf.with_func_linkage(1, FUNC_STATIC)


def test_with_type(compiled: dict[str, Path]) -> None:
    _, btf = load(compiled["types"])
    sid = btf.find("bits", BtfKind.STRUCT)
    assert sid is not None
    t = btf.types[sid]
    new = replace(t, members=t.members[:2])
    out = btf.with_type(sid, new)
    assert out.types[sid].members == t.members[:2]
    assert out.format_type(sid).startswith(f"[{sid}] STRUCT 'bits' size=16 vlen=2")
    assert Btf.parse(out.encode()).types[sid].vlen == 2
    assert len(out.encode()) == len(btf.encode()) - 3 * 12
    # a new name offset refreshes the name
    other = btf.types[btf.find("all") or 0]
    renamed = btf.with_type(sid, replace(t, name_off=other.name_off))
    assert renamed.types[sid].name == "all"
    with pytest.raises(BtfFormatError):
        btf.with_type(0, new)
    with pytest.raises(BtfFormatError):
        btf.with_type(len(btf.types), new)
    with pytest.raises(BtfFormatError):
        btf.with_type(sid, replace(t, members=(BtfMember("x", 0, len(btf.types), 0),)))
    with pytest.raises(BtfFormatError):
        btf.with_type(sid, replace(t, name_off=len(btf.strings)))


def test_add_string() -> None:
    btf = Btf.from_parts([], b"\0abc\0")
    same, off = btf.add_string("abc")
    assert same is btf and off == 1
    assert btf.add_string("") == (btf, 0)
    grown, off = btf.add_string("bc")  # a suffix is not reused
    assert off == 5 and grown.strings == b"\0abc\0bc\0" and grown.string_at(off) == "bc"
    with pytest.raises(BtfFormatError):
        btf.add_string("a\0b")


def test_append(compiled: dict[str, Path], tmp_path: Path) -> None:
    _, a = load(compiled["maps_data"])
    _, b = load(compiled["types"])
    merged, id_base, str_base = a.append(b)
    assert id_base == len(a.types) - 1
    assert str_base == len(a.strings)
    assert len(merged.types) == len(a.types) + len(b.types) - 1
    assert merged.types[:len(a.types)] == a.types
    assert merged.strings == a.strings + b.strings
    for tid in range(1, len(b.types)):
        tb, tm = b.types[tid], merged.types[tid + id_base]
        assert tm.kind == tb.kind and tm.name == tb.name
        assert tm.name_off == (tb.name_off + str_base if tb.name_off else 0)
    # type ids shifted except void; text identical once ids are shifted back
    proto = merged.types[b.find("vfp") + id_base]  # type: ignore[operator]
    assert proto.type_id == b.types[b.find("vfp") or 0].type_id + id_base
    fp_proto = next(t for t in merged.types[len(a.types):] if t.kind == BtfKind.FUNC_PROTO
                    and t.params and t.params[-1].type_id == 0)
    assert fp_proto.params[0].type_id > id_base  # shifted, varargs 0 kept
    raw = tmp_path / "merged.btf"
    raw.write_bytes(merged.encode())
    assert merged.dump() == bpftool_dump(raw)
    assert Btf.parse(merged.encode()) == merged


# --------------------------------------------------------------------------- hand-built BTF
def _all_kinds() -> Btf:
    strs = b"\0int\0e64\0A\0B\0es\0X\0Y\0fw\0fu\0ch\0bo\0s\0m\0f\0p\0v\0.data\0tag\0fl\0"

    def off(s: str) -> int:
        return strs.index(b"\0" + s.encode() + b"\0") + 1

    types = [
        BtfType(BtfKind.INT, name_off=off("int"), size_or_type=4, int_encoding=(1 << 24) | 32),
        BtfType(BtfKind.ENUM64, name_off=off("e64"), size_or_type=8, kflag=True,
                enum_values=(BtfEnumValue("", off("A"), -5), BtfEnumValue("", off("B"), 1 << 40))),
        BtfType(BtfKind.ENUM64, size_or_type=8,
                enum_values=(BtfEnumValue("", off("A"), (1 << 64) - 1),)),
        BtfType(BtfKind.ENUM, name_off=off("es"), size_or_type=4, kflag=True,
                enum_values=(BtfEnumValue("", off("X"), -2), BtfEnumValue("", off("Y"), 7))),
        BtfType(BtfKind.FWD, name_off=off("fw")),
        BtfType(BtfKind.FWD, name_off=off("fu"), kflag=True),
        BtfType(BtfKind.RESTRICT, size_or_type=1),
        BtfType(BtfKind.INT, name_off=off("ch"), size_or_type=1, int_encoding=(2 << 24) | 8),
        BtfType(BtfKind.INT, name_off=off("bo"), size_or_type=1, int_encoding=(4 << 24) | 8),
        BtfType(BtfKind.STRUCT, name_off=off("s"), size_or_type=8, kflag=True,
                members=(BtfMember("", off("m"), 1, (3 << 24) | 5),)),
        BtfType(BtfKind.FUNC_PROTO, size_or_type=0, params=(BtfParam("", off("p"), 1),
                                                             BtfParam("", 0, 0))),
        BtfType(BtfKind.FUNC, name_off=off("f"), size_or_type=11, linkage=FUNC_GLOBAL),
        BtfType(BtfKind.VAR, name_off=off("v"), size_or_type=1, linkage=VAR_GLOBAL_ALLOCATED),
        BtfType(BtfKind.DATASEC, name_off=off(".data"), size_or_type=4,
                secinfos=(BtfVarSecinfo(13, 0, 4),)),
        BtfType(BtfKind.DECL_TAG, name_off=off("tag"), size_or_type=12, component_idx=0),
        BtfType(BtfKind.TYPE_TAG, name_off=off("tag"), size_or_type=1),
        BtfType(BtfKind.FLOAT, name_off=off("fl"), size_or_type=8),
        BtfType(BtfKind.ARRAY, array=BtfArray(1, 1, 3)),
        BtfType(BtfKind.UNION, name_off=off("fu"), size_or_type=4,
                members=(BtfMember("", off("m"), 1, 0),)),
        BtfType(BtfKind.PTR, size_or_type=0),
        BtfType(BtfKind.VOLATILE, size_or_type=1),
        BtfType(BtfKind.CONST, size_or_type=21),
        BtfType(BtfKind.TYPEDEF, name_off=off("X"), size_or_type=22),
    ]
    return Btf.from_parts(types, strs)


def test_all_kinds_against_bpftool(tmp_path: Path) -> None:
    btf = _all_kinds()
    assert {t.kind for t in btf.types[1:]} == set(BtfKind) - {BtfKind.UNKN}
    raw = tmp_path / "kinds.btf"
    raw.write_bytes(btf.encode())
    assert btf.dump() == bpftool_dump(raw)
    again = Btf.parse(raw.read_bytes())
    assert again == btf
    assert again.encode() == raw.read_bytes()
    assert again.types[2].enum_values[0].value == -5
    assert again.types[3].enum_values[0].value == (1 << 64) - 1
    assert again.types[4].enum_values[0].value == -2
    assert btf.resolve_size(23) == 4  # typedef -> const -> volatile -> int
    assert btf.resolve_size(18) == 12
    assert btf.resolve_size(20) == 8
    assert btf.resolve_size(14) == 4
    assert btf.format_type(0) == "[0] UNKNOWN '(anon)'"


def test_format_unknown_linkage(tmp_path: Path) -> None:
    btf = _all_kinds()
    odd = btf.with_type(12, replace(btf.types[12], linkage=5))
    odd = odd.with_type(13, replace(btf.types[13], linkage=7))
    raw = tmp_path / "odd.btf"
    raw.write_bytes(odd.encode())
    assert odd.dump() == bpftool_dump(raw)
    assert "linkage=(unknown)" in odd.format_type(12)


# --------------------------------------------------------------------------- malformed input
def _hdr(type_len: int, str_len: int, *, magic: int = 0xEB9F, version: int = 1,
         hdr_len: int = 24, type_off: int = 0, str_off: int | None = None) -> bytes:
    return struct.pack("<HBBIIIII", magic, version, 0, hdr_len, type_off, type_len,
                       type_len if str_off is None else str_off, str_len)


def _blob(types: bytes, strs: bytes = b"\0int\0") -> bytes:
    return _hdr(len(types), len(strs)) + types + strs


INT_T = struct.pack("<IIII", 1, 1 << 24, 4, 32)


@pytest.mark.parametrize("data, match", [
    (b"", "too short"),
    (_hdr(0, 1)[:20], "too short"),
    (_hdr(0, 1, magic=0x9FEB) + b"\0", "big-endian BTF not supported"),
    (_hdr(0, 1, magic=0x1234) + b"\0", "magic"),
    (_hdr(0, 1, version=2) + b"\0", "version"),
    (_hdr(0, 1, hdr_len=16) + b"\0", "header length"),
    (_hdr(0, 1, hdr_len=4000) + b"\0", "header length"),
    (_hdr(0, 1, hdr_len=28) + b"\1\0\0\0\0", "header extension"),
    (_hdr(16, 5) + INT_T, "beyond end"),
    (_hdr(0, 9) + b"\0int\0", "beyond end"),
    (_hdr(0, 0), "NUL"),
    (_blob(INT_T, b"\0int"), "NUL"),
    (_blob(INT_T, b"x\0int\0"), "NUL"),
    (_blob(struct.pack("<IIII", 99, 1 << 24, 4, 32)), "string offset 99"),
    (_blob(INT_T[:14]), "truncated"),
    (_blob(struct.pack("<III", 0, 2 << 24, 5)), "references type id 5"),
    (_blob(struct.pack("<III", 0, 20 << 24, 5)), "unsupported kind 20"),
    (_blob(struct.pack("<III", 0, 0, 0)), "unsupported kind 0"),
    (_blob(struct.pack("<III", 0, (2 << 24) | 0x10000, 0)), "info word"),
    (_blob(struct.pack("<III", 0, (4 << 24) | 2, 8) + struct.pack("<III", 1, 0, 0)),
     "truncated"),
    (_blob(struct.pack("<III", 0, (4 << 24) | 1, 8) + struct.pack("<III", 1, 7, 0)),
     "references type id 7"),
    (_blob(struct.pack("<III", 0, 3 << 24, 0) + struct.pack("<III", 0, 9, 1)),
     "references type id 9"),
    (_blob(struct.pack("<III", 0, (15 << 24) | 1, 4) + struct.pack("<III", 3, 0, 4)),
     "references type id 3"),
])
def test_parse_rejects(data: bytes, match: str) -> None:
    with pytest.raises(BtfFormatError, match=match):
        Btf.parse(data)


def test_parse_accepts_zero_header_extension_and_memoryview() -> None:
    strs = b"\0int\0"
    data = _hdr(len(INT_T), len(strs), hdr_len=32) + bytes(8) + INT_T + strs
    btf = Btf.parse(memoryview(data))
    assert btf.header_ext == bytes(8)
    assert btf.encode() == data
    assert btf.format_type(1) == "[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=(none)"


def test_encode_rejects_unencodable() -> None:
    btf = Btf.from_parts([BtfType(BtfKind.INT, size_or_type=4, int_encoding=32)], b"\0")
    with pytest.raises(BtfFormatError):
        btf.with_type(1, BtfType(BtfKind.INT, size_or_type=1 << 33)).encode()
    with pytest.raises(BtfFormatError):
        btf.with_type(1, BtfType(BtfKind.UNKN)).encode()
    with pytest.raises(BtfFormatError):
        Btf.from_parts([], b"x")


# --------------------------------------------------------------------------- BTF.ext
def _ext_blob(fi: bytes, li: bytes, co: bytes | None) -> bytes:
    hdr_len = 24 if co is None else 32
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, hdr_len, 0, len(fi), len(fi), len(li))
    if co is not None:
        hdr += struct.pack("<II", len(fi) + len(li), len(co))
    return hdr + fi + li + (co or b"")


def _ext_btf() -> Btf:
    # strings: 1 "xdp", 5 "f.c", 9 "return 0;", 19 "0:1"
    return Btf.from_parts([
        BtfType(BtfKind.INT, name_off=0, size_or_type=4, int_encoding=32),
        BtfType(BtfKind.FUNC_PROTO, size_or_type=1),
        BtfType(BtfKind.FUNC, name_off=1, size_or_type=2, linkage=FUNC_GLOBAL),
    ], b"\0xdp\0f.c\0return 0;\0" + b"0:1\0")


def test_btf_ext_hdr24_and_big_records() -> None:
    btf = _ext_btf()
    fi = struct.pack("<I", 12) + struct.pack("<II", 1, 2) + struct.pack("<III", 16, 3, 0xAAAA) \
        + struct.pack("<III", 0, 3, 0xBBBB)
    li = struct.pack("<I", 16) + struct.pack("<II", 1, 1) + struct.pack("<IIII", 0, 5, 9,
                                                                         (7 << 10) | 3)
    ext = BtfExt.parse(_ext_blob(fi, li, None), btf)
    assert ext.hdr_len == 24
    assert ext.func_info_rec_size == 12
    assert [(r.insn_off, r.type_id) for r in ext.func_info["xdp"]] == [(16, 3), (0, 3)]
    (lr,) = ext.line_info["xdp"]
    assert (lr.line, lr.col) == (7, 3)
    assert btf.string_at(lr.file_name_off) == "f.c"
    assert ext.core_relos == {}
    assert ext.sections() == ("xdp",)


def test_btf_ext_core_section() -> None:
    btf = _ext_btf()
    co = struct.pack("<I", 16) + struct.pack("<II", 1, 1) + struct.pack("<IIII", 8, 1, 19, 0)
    ext = BtfExt.parse(_ext_blob(b"", b"", co), btf)
    assert ext.core_relos["xdp"] == (CoreReloRec(8, 1, 19, 0),)
    assert ext.func_info == {} and ext.line_info == {}
    assert "core_relos=1" in repr(ext)


@pytest.mark.parametrize("blob, match", [
    (b"\x9f\xeb", "too short"),
    (struct.pack("<HBBI", 0x9FEB, 1, 0, 24) + bytes(16), "big-endian"),
    (struct.pack("<HBBI", 0x1111, 1, 0, 24) + bytes(16), "magic"),
    (struct.pack("<HBBI", 0xEB9F, 3, 0, 24) + bytes(16), "version"),
    (struct.pack("<HBBI", 0xEB9F, 1, 0, 20) + bytes(16), "header length"),
    (_ext_blob(struct.pack("<I", 4), b"", None), "record size"),
    (_ext_blob(struct.pack("<I", 10), b"", None), "record size"),
    (_ext_blob(b"\x08\0", b"", None), "too short"),
    (_ext_blob(struct.pack("<III", 8, 1, 0), b"", None), "zero records"),
    (_ext_blob(struct.pack("<II", 8, 1), b"", None), "truncated"),
    (_ext_blob(struct.pack("<IIII", 8, 1, 2, 0), b"", None), "run past"),
    (_ext_blob(struct.pack("<IIIII", 8, 99, 1, 0, 3), b"", None), "string offset"),
    (_ext_blob(struct.pack("<IIIII", 8, 0, 1, 0, 3), b"", None), "section name"),
    (_ext_blob(struct.pack("<IIIII", 8, 1, 1, 0, 4), b"", None), "type id 4"),
    (_ext_blob(b"", struct.pack("<III", 16, 1, 1) + struct.pack("<IIII", 0, 50, 9, 0), None),
     "string offset out of range"),
    (_ext_blob(b"", b"", struct.pack("<III", 16, 1, 1) + struct.pack("<IIII", 0, 1, 90, 0)),
     "out of range"),
])
def test_btf_ext_rejects(blob: bytes, match: str) -> None:
    with pytest.raises(BtfFormatError, match=match):
        BtfExt.parse(blob, _ext_btf())


def test_btf_ext_section_beyond_end() -> None:
    blob = bytearray(_ext_blob(struct.pack("<IIIII", 8, 1, 1, 0, 3), b"", None))
    struct.pack_into("<I", blob, 12, 400)
    with pytest.raises(BtfFormatError, match="beyond end"):
        BtfExt.parse(bytes(blob), _ext_btf())


def test_encoders() -> None:
    assert encode_func_info([(0, 3), (5, 7)]) == struct.pack("<IIII", 0, 3, 5, 7)
    recs = [LineInfoRec(0, 5, 9, (7 << 10) | 3), LineInfoRec(4, 5, 9, 8 << 10)]
    assert encode_line_info(recs) == struct.pack("<8I", 0, 5, 9, (7 << 10) | 3, 4, 5, 9, 8 << 10)
    assert encode_core_relos([CoreReloRec(8, 1, 19, 2)]) == struct.pack("<IIII", 8, 1, 19, 2)
    assert encode_func_info([]) == b""

    def gen() -> Iterator[tuple[int, int]]:
        yield (1, 2)

    assert encode_func_info(gen()) == struct.pack("<II", 1, 2)
    with pytest.raises(BtfFormatError):
        encode_func_info([(-1, 0)])
    with pytest.raises(BtfFormatError):
        encode_line_info([LineInfoRec(1 << 32, 0, 0, 0)])
    with pytest.raises(BtfFormatError):
        encode_core_relos([CoreReloRec(0, 0, 0, -1)])
