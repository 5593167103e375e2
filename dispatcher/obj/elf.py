"""ELF object reader: bytes of a clang-built BPF object in, an ``ObjectSpec`` out.

Pure: no syscalls, no kernel state. Every malformed input ends in
``ObjectFileError`` naming the file.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

from dispatcher import caches, safeio
from dispatcher.errors import ObjectFileError
from dispatcher.obj.btf import Btf, BtfFormatError, BtfKind, BtfType
from dispatcher.obj.btf_ext import BtfExt
from dispatcher.obj.insn import OP_CALL, OP_LD_IMM64
from dispatcher.obj.metadata import dispatcher_version, parse_run_config, uint_member
from dispatcher.obj.spec import (
    FunctionSpec,
    MapSpec,
    ObjectSpec,
    ProgramSpec,
    RelocKind,
    RelocSpec,
    RunConfig,
)
from dispatcher.record import record
from dispatcher.uapi import (
    BPF_F_MMAPABLE,
    BPF_F_RDONLY_PROG,
    BPF_F_XDP_HAS_FRAGS,
    BPF_MAP_TYPE_ARRAY,
    BPF_PROG_TYPE_CGROUP_SKB,
    BPF_PROG_TYPE_EXT,
    BPF_PROG_TYPE_KPROBE,
    BPF_PROG_TYPE_LSM,
    BPF_PROG_TYPE_RAW_TRACEPOINT,
    BPF_PROG_TYPE_SCHED_ACT,
    BPF_PROG_TYPE_SCHED_CLS,
    BPF_PROG_TYPE_SK_SKB,
    BPF_PROG_TYPE_SOCKET_FILTER,
    BPF_PROG_TYPE_STRUCT_OPS,
    BPF_PROG_TYPE_SYSCALL,
    BPF_PROG_TYPE_TRACEPOINT,
    BPF_PROG_TYPE_TRACING,
    BPF_PROG_TYPE_UNSPEC,
    BPF_PROG_TYPE_XDP,
    BPF_XDP,
    BPF_XDP_CPUMAP,
    BPF_XDP_DEVMAP,
)

EM_BPF = 247
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_REL = 9
SHT_NOBITS = 8
SHF_EXECINSTR = 0x4
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10

_MAX_MAP_NAME = 15

# Section name -> (prog type, expected attach type, flags); prefix entries end with "/".
_XDP_SECTIONS: dict[str, tuple[int, int, int]] = {
    "xdp": (BPF_PROG_TYPE_XDP, BPF_XDP, 0),
    "xdp.frags": (BPF_PROG_TYPE_XDP, BPF_XDP, BPF_F_XDP_HAS_FRAGS),
    "xdp/devmap": (BPF_PROG_TYPE_XDP, BPF_XDP_DEVMAP, 0),
    "xdp.frags/devmap": (BPF_PROG_TYPE_XDP, BPF_XDP_DEVMAP, BPF_F_XDP_HAS_FRAGS),
    "xdp/cpumap": (BPF_PROG_TYPE_XDP, BPF_XDP_CPUMAP, 0),
    "xdp.frags/cpumap": (BPF_PROG_TYPE_XDP, BPF_XDP_CPUMAP, BPF_F_XDP_HAS_FRAGS),
}
# A few non-XDP families, only so ``inspect`` can name them.
_OTHER_PREFIXES: tuple[tuple[str, int], ...] = (
    ("tc", BPF_PROG_TYPE_SCHED_CLS), ("classifier", BPF_PROG_TYPE_SCHED_CLS),
    ("action", BPF_PROG_TYPE_SCHED_ACT), ("socket", BPF_PROG_TYPE_SOCKET_FILTER),
    ("kprobe/", BPF_PROG_TYPE_KPROBE), ("kretprobe/", BPF_PROG_TYPE_KPROBE),
    ("tracepoint/", BPF_PROG_TYPE_TRACEPOINT), ("tp/", BPF_PROG_TYPE_TRACEPOINT),
    ("raw_tracepoint/", BPF_PROG_TYPE_RAW_TRACEPOINT), ("raw_tp/", BPF_PROG_TYPE_RAW_TRACEPOINT),
    ("fentry/", BPF_PROG_TYPE_TRACING), ("fexit/", BPF_PROG_TYPE_TRACING),
    ("fmod_ret/", BPF_PROG_TYPE_TRACING), ("lsm/", BPF_PROG_TYPE_LSM),
    ("cgroup", BPF_PROG_TYPE_CGROUP_SKB), ("sk_", BPF_PROG_TYPE_SK_SKB),
    ("struct_ops", BPF_PROG_TYPE_STRUCT_OPS), ("syscall", BPF_PROG_TYPE_SYSCALL),
)

def classify_section(name: str) -> tuple[int, int, int, str] | None:
    """(prog_type, expected_attach_type, prog_flags, freplace target) for a code section;
    None if the name says nothing about the type (libbpf: "missing BPF prog type")."""
    if name in _XDP_SECTIONS:
        t, a, f = _XDP_SECTIONS[name]
        return t, a, f, ""
    for key in ("xdp.frags/devmap/", "xdp/devmap/", "xdp.frags/cpumap/", "xdp/cpumap/"):
        if name.startswith(key):
            t, a, f = _XDP_SECTIONS[key[:-1]]
            return t, a, f, ""
    for legacy, attach in (("xdp_devmap", BPF_XDP_DEVMAP), ("xdp_cpumap", BPF_XDP_CPUMAP)):
        # libbpf still accepts the pre-1.0 spellings "xdp_devmap/..", "xdp_cpumap/.."
        if name == legacy or name.startswith(legacy + "/"):
            return BPF_PROG_TYPE_XDP, attach, 0, ""
    if name == "freplace":
        return BPF_PROG_TYPE_EXT, 0, 0, ""
    if name.startswith("freplace/"):
        return BPF_PROG_TYPE_EXT, 0, 0, name[len("freplace/"):]
    if name.startswith("xdp"):
        # Permissive: pre-libbpf-1.0 spellings such as "xdp_prog" or "xdp/foo".
        frags = BPF_F_XDP_HAS_FRAGS if name.startswith("xdp.frags") else 0
        return BPF_PROG_TYPE_XDP, BPF_XDP, frags, ""
    for prefix, ptype in _OTHER_PREFIXES:
        if name.startswith(prefix):
            return ptype, 0, 0, ""
    return None


@record
class _Section:
    index: int
    name: str
    sh_type: int
    flags: int
    size: int
    info: int
    data: bytes


@record
class _Symbol:
    name: str
    value: int
    size: int
    shndx: int          # -1 for undefined, -2 for abs/common/other special
    bind: str           # STB_LOCAL / STB_GLOBAL / STB_WEAK
    type: str           # STT_FUNC / STT_OBJECT / STT_SECTION / STT_NOTYPE ...
    hidden: bool


_BINDS = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK"}
_TYPES = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION", 4: "STT_FILE"}


def _unused(name: str) -> bool:
    """Sections whose bytes a loader never needs (DWARF and relocations of debug info/BTF)."""
    return name.startswith((".debug", ".rel.debug", ".rel.BTF", ".llvm"))


def internal_map_name(obj_name: str, section: str) -> str:
    """Kernel name of a global-data map, following libbpf's convention."""
    if section.count(".") >= 2 or (section.startswith(".") and "." in section[1:]):
        name = section[:_MAX_MAP_NAME]
    else:
        pfx_len = _MAX_MAP_NAME - max(7, len(section))
        name = obj_name[:max(pfx_len, 0)] + section
        name = name[:_MAX_MAP_NAME]
    return sanitize_name(name)


def sanitize_name(name: str) -> str:
    return "".join(c if (c.isalnum() and c.isascii()) or c in "_." else "_" for c in name)[:_MAX_MAP_NAME]


def is_data_section(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in (".data", ".rodata", ".bss"))


#: Parsed objects by (path, bytes), most recently used last: a long-running user of the API
#: (or one apply reading an object for several interfaces) parses each content once.
#: Specs are immutable, so sharing them is safe; the bytes themselves are the key.
_PARSED: dict[tuple[str, bytes], ObjectSpec] = {}
_PARSED_MAX = 32
caches.register("obj.elf.parsed", _PARSED.clear)


def read_bytes(path: str) -> bytes:
    """An object file's bytes; ObjectFileError names the path when it cannot be read, is
    not a regular file (a device or FIFO is never read from) or is larger than
    ``safeio.MAX_OBJECT_BYTES``. A file others can change is warned about (refused in
    strict mode) when running as root."""
    try:
        data, st = safeio.read_regular(path, safeio.MAX_OBJECT_BYTES)
        safeio.check_input(path, st, ObjectFileError)
    except safeio.NotRegularError as e:
        raise ObjectFileError(f"{path}: {e.reason}") from None
    except FileNotFoundError:
        raise ObjectFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ObjectFileError(f"{path}: is a directory, not a BPF object file") from None
    except OSError as e:
        if _on_bpffs(path):      # a pinned program or link cannot be read (EIO)
            raise _pinned(path) from None
        raise ObjectFileError(f"{path}: cannot read: {e.strerror}") from None
    if not data.startswith(b"\x7fELF") and _on_bpffs(path):   # a map pin reads as text
        raise _pinned(path)
    return data


def _pinned(path: str) -> ObjectFileError:
    return ObjectFileError(f"{path}: is a pinned BPF object (program, link or map) on bpffs, "
                           "not an object file",
                           hint="give the object file (.o) the program was loaded from")


def _on_bpffs(path: str) -> bool:
    """Whether ``path`` lies on a mounted BPF filesystem, by the mount table (this module
    makes no syscalls beyond reading files)."""
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split() for ln in f]
    except OSError:
        return False
    real = os.path.realpath(path)
    best, fstype = "", ""
    for fields in mounts:
        if "-" not in fields:
            continue
        point = fields[4].replace("\\040", " ")
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, fstype = point, fields[fields.index("-") + 1]
    return fstype == "bpf"


def read_object(path: str) -> ObjectSpec:
    """Read and parse an object file from disk (a content seen before is not parsed again)."""
    return parse_cached(read_bytes(path), path)


def parse_cached(data: bytes, path: str) -> ObjectSpec:
    """``parse_object``, remembering the last few results by (path, bytes)."""
    key = (path, data)
    spec = _PARSED.pop(key, None)
    if spec is None:
        spec = parse_object(data, path)
    _PARSED[key] = spec
    while len(_PARSED) > _PARSED_MAX:
        del _PARSED[next(iter(_PARSED))]
    return spec


def parse_object(data: bytes, path: str = "<bytes>") -> ObjectSpec:
    """Parse the bytes of a BPF ELF object."""
    if len(data) < 4 or data[:4] != b"\x7fELF":
        raise ObjectFileError(f"{path}: not an ELF file (a BPF object compiled with clang -target bpf is expected)")
    try:
        return _Parser(data, path).parse()
    except ObjectFileError:
        raise
    except BtfFormatError as e:
        raise ObjectFileError(f"{path}: bad BTF: {e.message}") from None
    except Exception as e:  # pyelftools raises many kinds on truncated/mutated input
        raise ObjectFileError(f"{path}: malformed or truncated ELF object ({type(e).__name__}: {e})") from None


class _Parser:
    def __init__(self, data: bytes, path: str) -> None:
        self.data = data
        self.path = path
        self.name = os.path.basename(path).split(".", 1)[0] or "obj"

    def err(self, msg: str) -> ObjectFileError:
        return ObjectFileError(f"{self.path}: {msg}")

    # -- low level -----------------------------------------------------------------
    def _load_elf(self) -> None:
        from elftools.elf.elffile import ELFFile

        elf = ELFFile(io.BytesIO(self.data))
        machine = elf["e_machine"]
        if machine not in ("EM_BPF", EM_BPF):
            raise self.err(f"ELF object for machine {machine}, not BPF (compile with clang -target bpf)")
        if not elf.little_endian:
            raise self.err("big-endian BPF object; this host is little-endian (use -target bpfel)")
        if elf.elfclass != 64:
            raise self.err("32-bit ELF; BPF objects are ELF64")
        self.sections: list[_Section] = []
        symtab = None
        for idx, sec in enumerate(elf.iter_sections()):
            sh_type = sec["sh_type"]
            tnum = {"SHT_PROGBITS": SHT_PROGBITS, "SHT_SYMTAB": SHT_SYMTAB, "SHT_REL": SHT_REL,
                    "SHT_NOBITS": SHT_NOBITS}.get(sh_type, -1) if isinstance(sh_type, str) else int(sh_type)
            if tnum == SHT_NOBITS or _unused(sec.name):
                payload = b""
            elif tnum in (SHT_PROGBITS, SHT_REL, SHT_SYMTAB):
                payload = sec.data()
                if len(payload) != sec["sh_size"]:
                    raise self.err(f"section {sec.name} is truncated")
            else:
                payload = b""
            self.sections.append(_Section(idx, sec.name, tnum, int(sec["sh_flags"]), int(sec["sh_size"]),
                                          int(sec["sh_info"]), payload))
            if tnum == SHT_SYMTAB:
                symtab = sec
        if symtab is None:
            raise self.err("no symbol table (.symtab); was the object stripped?")
        self.symbols = self._symbols(elf, symtab)
        self.by_name = {s.name: s for s in self.sections}

    def _symbols(self, elf: Any, symtab: Any) -> list[_Symbol]:
        """Decode Elf64_Sym entries with struct (pyelftools' per-symbol parsing is the
        slowest part of reading an object); names come from the linked string table."""
        data = symtab.data()
        strtab = elf.get_section(symtab["sh_link"]).data()
        if len(data) % 24:
            raise self.err("symbol table size is not a multiple of 24")
        out = []
        for name_off, info, other, shndx, value, size in struct.iter_unpack("<IBBHQQ", data):
            if name_off >= len(strtab) and name_off:
                raise self.err(f"symbol name offset {name_off} is outside the string table")
            end = strtab.find(b"\0", name_off)
            name = strtab[name_off:end if end >= 0 else len(strtab)].decode("utf-8", "replace")
            ndx = -1 if shndx == 0 else (-2 if shndx >= 0xFF00 else shndx)
            out.append(_Symbol(name, value, size, ndx, _BINDS.get(info >> 4, "STB_OTHER"),
                               _TYPES.get(info & 0xF, "STT_OTHER"), (other & 3) in (1, 2)))
        return out

    def section_at(self, idx: int) -> _Section:
        if not 0 <= idx < len(self.sections):
            raise self.err(f"symbol refers to section index {idx}, which does not exist")
        return self.sections[idx]

    # -- top level -----------------------------------------------------------------
    def parse(self) -> ObjectSpec:
        self._load_elf()
        license = self._license()
        kern_version = 0
        if (v := self.by_name.get("version")) and len(v.data) == 4:
            kern_version = struct.unpack("<I", v.data)[0]
        btf, btf_ext = self._btf()
        functions = self._functions()
        maps = self._maps(btf)
        functions = self._relocate(functions, maps)
        programs = self._programs(functions, btf)
        version = dispatcher_version(btf) if btf else 0
        data_secs = tuple(m.section for m in maps if m.kind == "data")
        return ObjectSpec(path=self.path, name=self.name, license=license,
                          programs=programs, maps=maps, functions=tuple(functions),
                          btf=btf, btf_ext=btf_ext, data_sections=data_secs,
                          xdp_metadata=version > 0, dispatcher_version=version,
                          kern_version=kern_version)

    def _license(self) -> str:
        sec = self.by_name.get("license")
        if sec is None:
            return ""
        return sec.data.split(b"\0", 1)[0].decode("ascii", "replace")

    def _btf(self) -> tuple[Btf | None, BtfExt | None]:
        sec = self.by_name.get(".BTF")
        if sec is None:
            return None, None
        btf = Btf.parse(sec.data)
        sizes = {s.name: s.size for s in self.sections if s.sh_type in (SHT_PROGBITS, SHT_NOBITS)}
        glob: dict[str, tuple[int, bool]] = {}
        for s in self.symbols:
            if s.type == "STT_OBJECT" and s.bind in ("STB_GLOBAL", "STB_WEAK") and s.shndx >= 0:
                glob[s.name] = (s.value, s.hidden)
        btf = btf.fixup_datasecs(sizes, glob).without_externs()
        ext_sec = self.by_name.get(".BTF.ext")
        ext = BtfExt.parse(ext_sec.data, btf) if ext_sec is not None else None
        return btf, ext

    # -- code ------------------------------------------------------------------------
    def _code_sections(self) -> Iterator[_Section]:
        for s in self.sections:
            if s.sh_type == SHT_PROGBITS and s.flags & SHF_EXECINSTR and s.size > 0:
                if s.size % 8:
                    raise self.err(f"code section {s.name} has a size ({s.size}) that is not a multiple of 8")
                yield s

    def _functions(self) -> list[FunctionSpec]:
        funcs: list[FunctionSpec] = []
        for sec in self._code_sections():
            syms = sorted((s for s in self.symbols if s.shndx == sec.index and s.type == "STT_FUNC"),
                          key=lambda s: s.value)
            if not syms:
                raise self.err(f"code section {sec.name} has no function symbol")
            for sym in syms:
                if sym.value % 8 or sym.value + sym.size > sec.size:
                    raise self.err(f"function {sym.name} lies outside its section {sec.name}")
                size = sym.size if sym.size else sec.size - sym.value
                funcs.append(FunctionSpec(
                    name=sym.name, section=sec.name, start=sym.value // 8,
                    insns=sec.data[sym.value:sym.value + size],
                    is_global=sym.bind in ("STB_GLOBAL", "STB_WEAK") and not sym.hidden))
        return funcs

    def _relocate(self, funcs: list[FunctionSpec], maps: tuple[MapSpec, ...]) -> list[FunctionSpec]:
        code = {s.index: s for s in self._code_sections()}
        maps_by_off = {(m.section, m.offset): m for m in maps if m.kind in ("btf", "legacy")}
        data_maps = {m.section for m in maps if m.kind == "data"}
        per_func: dict[tuple[str, int], list[RelocSpec]] = {}
        func_index = {(f.section, f.start): f for f in funcs}
        for rel in self.sections:
            if rel.sh_type != SHT_REL or rel.info not in code:
                continue
            target_sec = code[rel.info]
            if len(rel.data) % 16:
                raise self.err(f"relocation section {rel.name} is truncated")
            for r_offset, r_info in struct.iter_unpack("<QQ", rel.data):
                sym_idx, r_type = r_info >> 32, r_info & 0xFFFFFFFF
                if sym_idx >= len(self.symbols):
                    raise self.err(f"{rel.name}: relocation refers to symbol #{sym_idx}, which does not exist")
                if r_offset % 8 or r_offset + 8 > target_sec.size:
                    raise self.err(f"{rel.name}: relocation offset {r_offset} is outside {target_sec.name}")
                sym = self.symbols[sym_idx]
                idx = r_offset // 8
                owner = _owner(funcs, target_sec.name, idx)
                if owner is None:
                    raise self.err(f"{rel.name}: relocation at insn {idx} is in no function")
                code_byte, regs = target_sec.data[r_offset], target_sec.data[r_offset + 1]
                src = regs >> 4
                (imm,) = struct.unpack_from("<i", target_sec.data, r_offset + 4)
                reloc = self._classify(sym, r_type, code_byte, src, imm, idx - owner.start,
                                       maps_by_off, data_maps, target_sec.name)
                per_func.setdefault((owner.section, owner.start), []).append(reloc)
        out = []
        for f in funcs:
            relocs = tuple(sorted(per_func.get((f.section, f.start), []), key=lambda r: r.insn))
            out.append(FunctionSpec(f.name, f.section, f.start, f.insns, f.is_global, relocs))
        del func_index
        return out

    def _classify(self, sym: _Symbol, r_type: int, code: int, src: int, imm: int, insn: int,
                  maps_by_off: dict[tuple[str, int], MapSpec], data_maps: set[str],
                  sec_name: str) -> RelocSpec:
        where = f"relocation in {sec_name} against '{sym.name or '<section>'}'"
        if sym.shndx == -1:
            return RelocSpec(insn, RelocKind.EXTERN, sym.name)
        if sym.shndx < 0:
            raise self.err(f"{where}: unsupported symbol kind")
        tsec = self.section_at(sym.shndx)
        if code == OP_CALL:
            if r_type != R_BPF_64_32 or src != 1:
                raise self.err(f"{where}: unexpected relocation type {r_type} on a call")
            if not tsec.flags & SHF_EXECINSTR:
                raise self.err(f"{where}: call into non-code section {tsec.name}")
            target = sym.value // 8 + imm + 1
            return RelocSpec(insn, RelocKind.CALL, sym.name, target_section=tsec.name, target_insn=target)
        if code != OP_LD_IMM64:
            raise self.err(f"{where}: relocation on an instruction (opcode 0x{code:02x}) that is neither a call nor ld_imm64")
        if r_type not in (R_BPF_64_64,):
            raise self.err(f"{where}: unsupported relocation type {r_type}")
        if src == 4 or tsec.flags & SHF_EXECINSTR:
            target = (sym.value + imm) // 8
            return RelocSpec(insn, RelocKind.FUNC_ADDR, sym.name, target_section=tsec.name, target_insn=target)
        if tsec.name in (".maps", "maps"):
            m = maps_by_off.get((tsec.name, sym.value))
            if m is None:
                raise self.err(f"{where}: no map is defined at offset {sym.value} of {tsec.name}")
            return RelocSpec(insn, RelocKind.MAP, sym.name, map_name=m.name)
        if tsec.name in data_maps:
            return RelocSpec(insn, RelocKind.DATA, sym.name, map_name=tsec.name, offset=imm + sym.value)
        if is_data_section(tsec.name):
            raise self.err(f"{where}: data section {tsec.name} is empty")
        raise self.err(f"{where}: reference to unsupported section {tsec.name}")

    def _programs(self, funcs: list[FunctionSpec], btf: Btf | None) -> tuple[ProgramSpec, ...]:
        progs = []
        hidden_or_local = {(s.shndx, s.value) for s in self.symbols
                           if s.type == "STT_FUNC" and (s.bind == "STB_LOCAL")}
        for f in funcs:
            if f.section == ".text":
                continue
            # A section that names no type still holds a program (listed by inspect; its
            # type may be chosen with --prog-type / prog_type, as bpftool's "type xdp").
            cls = classify_section(f.section) or (BPF_PROG_TYPE_UNSPEC, 0, 0, "")
            sec = self.by_name[f.section]
            if (sec.index, f.start * 8) in hidden_or_local:
                continue  # static function in a program section: a subprogram
            ptype, attach, flags, target = cls
            run_cfg = parse_run_config(btf, f.name, self.path) if btf else RunConfig()
            progs.append(ProgramSpec(name=f.name, section=f.section, prog_type=ptype,
                                     expected_attach_type=attach, prog_flags=flags, function=f,
                                     run_config=run_cfg, attach_func=target))
        return tuple(progs)

    # -- maps --------------------------------------------------------------------------
    def _maps(self, btf: Btf | None) -> tuple[MapSpec, ...]:
        maps: list[MapSpec] = []
        if ".maps" in self.by_name:
            if btf is None:
                raise self.err("BTF-defined maps (.maps) need BTF, but the object has no .BTF section")
            maps.extend(_btf_maps(btf, self.by_name[".maps"].size, self.err))
        if "maps" in self.by_name:
            maps.extend(self._legacy_maps(self.by_name["maps"]))
        for sec in self.sections:
            if not is_data_section(sec.name) or sec.size == 0:
                continue
            if sec.sh_type not in (SHT_PROGBITS, SHT_NOBITS):
                continue
            maps.append(self._data_map(sec, btf))
        return tuple(maps)

    def _legacy_maps(self, sec: _Section) -> list[MapSpec]:
        syms = sorted((s for s in self.symbols if s.shndx == sec.index and s.type in ("STT_OBJECT", "STT_NOTYPE") and s.name),
                      key=lambda s: s.value)
        if not syms:
            return []
        rec = sec.size // len(syms)
        if rec < 20:
            raise self.err(f"legacy maps section: record size {rec} is too small")
        out = []
        for s in syms:
            if s.value + 20 > sec.size:
                raise self.err(f"legacy map {s.name} lies outside the maps section")
            mtype, ks, vs, me, fl = struct.unpack_from("<5I", sec.data, s.value)
            pinning = 0
            if rec >= 28 and s.value + 28 <= sec.size:
                pinning = struct.unpack_from("<I", sec.data, s.value + 24)[0]
            out.append(MapSpec(name=s.name, kernel_name=sanitize_name(s.name), map_type=mtype,
                               key_size=ks, value_size=vs, max_entries=me, flags=fl,
                               pinning=1 if pinning else 0, section="maps", offset=s.value,
                               kind="legacy"))
        return out

    def _data_map(self, sec: _Section, btf: Btf | None) -> MapSpec:
        value_type = 0
        has_global = False
        if btf is not None:
            ds = btf.find(sec.name, BtfKind.DATASEC)
            if ds is not None:
                value_type = ds
                for si in btf.types[ds].secinfos:
                    var = btf.types[si.type_id]
                    if var.kind == BtfKind.VAR and var.linkage != 0:
                        has_global = True
        rodata = sec.name.startswith(".rodata")
        flags = BPF_F_RDONLY_PROG if rodata else 0
        if has_global:
            flags |= BPF_F_MMAPABLE
        data = bytes(sec.size) if sec.sh_type == SHT_NOBITS else sec.data
        return MapSpec(name=sec.name, kernel_name=internal_map_name(self.name, sec.name),
                       map_type=BPF_MAP_TYPE_ARRAY, key_size=4, value_size=sec.size, max_entries=1,
                       flags=flags, btf_value_type_id=value_type, section=sec.name, data=data,
                       freeze=rodata, kind="data")


def _owner(funcs: list[FunctionSpec], section: str, idx: int) -> FunctionSpec | None:
    for f in funcs:
        if f.section == section and f.start <= idx < f.start + f.insn_count:
            return f
    return None


# -- BTF-defined maps ---------------------------------------------------------------------

def _ptr_target(btf: Btf, type_id: int) -> int | None:
    t = btf.types[type_id]
    if t.kind != BtfKind.PTR:
        return None
    return t.size_or_type


def _map_from_struct(btf: Btf, name: str, struct_id: int, offset: int,
                     err: Callable[[str], ObjectFileError], inner_ok: bool = True) -> MapSpec:
    st = btf.types[btf.skip_mods_and_typedefs(struct_id)]
    if st.kind != BtfKind.STRUCT:
        raise err(f"map '{name}': definition is not a struct")
    vals: dict[str, Any] = {"type": 0, "max_entries": 0, "map_flags": 0, "numa_node": 0,
                            "pinning": 0, "map_extra": 0}
    key_size = value_size = None
    key_id = value_id = 0
    inner: MapSpec | None = None
    for m in st.members:
        if m.name in ("type", "max_entries", "map_flags", "numa_node", "pinning", "key_size",
                      "value_size", "map_extra"):
            v = uint_member(btf, m.type_id)
            if v is None and m.name == "map_extra":
                v = _enum_value(btf, m.type_id)
            if v is None:
                raise err(f"map '{name}': member '{m.name}' is not an __uint() value")
            if m.name == "key_size":
                if key_size is not None and key_size != v:
                    raise err(f"map '{name}': key size given twice ({key_size} and {v})")
                key_size = v
            elif m.name == "value_size":
                if value_size is not None and value_size != v:
                    raise err(f"map '{name}': value size given twice ({value_size} and {v})")
                value_size = v
            else:
                vals[m.name] = v
        elif m.name in ("key", "value"):
            tgt = _ptr_target(btf, m.type_id)
            if tgt is None:
                raise err(f"map '{name}': member '{m.name}' is not a __type() pointer")
            size = btf.resolve_size(tgt)
            if m.name == "key":
                if key_size is not None and key_size != size:
                    raise err(f"map '{name}': key size given twice ({key_size} and {size})")
                key_size, key_id = size, tgt
            else:
                if value_size is not None and value_size != size:
                    raise err(f"map '{name}': value size given twice ({value_size} and {size})")
                value_size, value_id = size, tgt
        elif m.name == "values":
            arr = btf.types[btf.skip_mods_and_typedefs(m.type_id)]
            if arr.kind != BtfKind.ARRAY or arr.array is None:
                raise err(f"map '{name}': 'values' must be an array")
            ptr = btf.types[btf.skip_mods_and_typedefs(arr.array.elem_type)]
            if ptr.kind != BtfKind.PTR:
                raise err(f"map '{name}': 'values' must be an array of pointers")
            target = btf.types[btf.skip_mods_and_typedefs(ptr.size_or_type)]
            if target.kind == BtfKind.STRUCT and inner_ok:
                inner = _map_from_struct(btf, name + ".inner", ptr.size_or_type, 0, err, inner_ok=False)
            value_size = 4
        else:
            raise err(f"map '{name}': unknown map attribute '{m.name}'")
    return MapSpec(name=name, kernel_name=sanitize_name(name), map_type=vals["type"],
                   key_size=key_size or 0, value_size=value_size or 0,
                   max_entries=vals["max_entries"], flags=vals["map_flags"],
                   pinning=vals["pinning"], numa_node=vals["numa_node"],
                   map_extra=vals["map_extra"], btf_key_type_id=key_id,
                   btf_value_type_id=value_id, inner=inner, section=".maps", offset=offset,
                   kind="btf")


def _enum_value(btf: Btf, type_id: int) -> int | None:
    t = btf.types[btf.skip_mods_and_typedefs(type_id)]
    if t.kind in (BtfKind.ENUM, BtfKind.ENUM64) and len(t.enum_values) == 1:
        return t.enum_values[0].value
    return None


def _btf_maps(btf: Btf, section_size: int, err: Callable[[str], ObjectFileError]) -> list[MapSpec]:
    ds_id = btf.find(".maps", BtfKind.DATASEC)
    if ds_id is None:
        raise err("section .maps has no BTF description (DATASEC .maps missing)")
    out = []
    for si in btf.types[ds_id].secinfos:
        var: BtfType = btf.types[si.type_id]
        if var.kind != BtfKind.VAR:
            raise err(".maps DATASEC entry is not a variable")
        if var.linkage not in (1, 0):
            raise err(f"map '{var.name}': unsupported linkage")
        if si.offset + si.size > section_size:
            raise err(f"map '{var.name}': lies outside the .maps section")
        out.append(_map_from_struct(btf, var.name, var.size_or_type, si.offset, err))
    return out
