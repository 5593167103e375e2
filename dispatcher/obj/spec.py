"""Frozen blueprints parsed from a BPF ELF object (pure: no syscalls).

``*Spec`` values describe what an object file contains; turning them into
kernel objects happens in ``dispatcher.kernel.loader``.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from dispatcher import uapi
from dispatcher.errors import ObjectFileError
from dispatcher.obj.actions import XDP_ACTIONS as XDP_ACTIONS
from dispatcher.obj.actions import actions_to_names as actions_to_names
from dispatcher.obj.actions import names_to_actions as names_to_actions
from dispatcher.record import record, replace
from dispatcher.uapi import BPF_F_XDP_HAS_FRAGS as BPF_F_XDP_HAS_FRAGS  # for dispatcher/chain

if TYPE_CHECKING:  # annotations only: readers of attached programs need no BTF parser
    from dispatcher.obj.btf import Btf
    from dispatcher.obj.btf_ext import BtfExt

# Short aliases still imported by dispatcher/chain (the lead converts it to dispatcher.uapi;
# then these go). Numbers are defined in dispatcher.uapi only.
PROG_TYPE_XDP = uapi.BPF_PROG_TYPE_XDP
PROG_TYPE_EXT = uapi.BPF_PROG_TYPE_EXT
ATTACH_XDP = uapi.BPF_XDP
PROG_TYPE_UNSPEC = uapi.BPF_PROG_TYPE_UNSPEC   # the section names no type (libbpf: "missing BPF prog type")
ATTACH_XDP_DEVMAP = uapi.BPF_XDP_DEVMAP
ATTACH_XDP_CPUMAP = uapi.BPF_XDP_CPUMAP

#: Map type number -> the name output uses (the enum's name, lower case, as bpftool prints).
MAP_TYPE_NAMES = {v: k[len("BPF_MAP_TYPE_"):].lower() for k, v in vars(uapi).items()
                  if k.startswith("BPF_MAP_TYPE_")}

# enum bpf_prog_type -> the kernel's (and bpftool's) name of each program type.
PROG_TYPE_NAMES = {v: k[len("BPF_PROG_TYPE_"):].lower() for k, v in vars(uapi).items()
                   if k.startswith("BPF_PROG_TYPE_")}
# Types a user may choose (``--prog-type`` / ``prog_type:``) for a program whose section
# names none, as ``bpftool prog load ... type xdp`` does; this tool attaches XDP only.
CHOOSABLE_PROG_TYPES = {"xdp": PROG_TYPE_XDP}

DEFAULT_RUN_PRIO = 50
DEFAULT_CHAIN_CALL_ACTIONS = 1 << uapi.XDP_PASS


class RelocKind(Enum):
    CALL = "call"          # bpf-to-bpf call (pseudo call) to a function
    FUNC_ADDR = "func"     # ld_imm64 src=BPF_PSEUDO_FUNC (callback address)
    MAP = "map"            # ld_imm64 of a map (BTF-defined or legacy)
    DATA = "data"          # ld_imm64 of an address inside a global-data map
    EXTERN = "extern"      # reference to an undefined symbol (kfunc, ksym, kconfig)


@record
class RelocSpec:
    """One relocation, attached to the function that contains it.

    ``insn`` is the instruction index relative to the function start.
    For CALL/FUNC_ADDR, ``target`` is (section, insn index in that section) of the callee.
    For MAP, ``map_name`` names the map. For DATA, ``map_name`` is the data map and
    ``offset`` the byte offset inside it.
    """

    insn: int
    kind: RelocKind
    symbol: str
    map_name: str = ""
    offset: int = 0
    target_section: str = ""
    target_insn: int = 0


@record
class FunctionSpec:
    """A function's code inside its ELF section."""

    name: str
    section: str
    start: int             # instruction index in the section
    insns: bytes           # raw code, 8 bytes per instruction
    is_global: bool
    relocs: tuple[RelocSpec, ...] = ()

    @property
    def insn_count(self) -> int:
        return len(self.insns) // 8


@record
class RunConfig:
    """libxdp run-config metadata (defaults applied first, like libxdp)."""

    priority: int = DEFAULT_RUN_PRIO
    chain_call_actions: int = DEFAULT_CHAIN_CALL_ACTIONS
    declared: bool = False  # whether the object carried metadata for this program

    @property
    def action_names(self) -> tuple[str, ...]:
        return actions_to_names(self.chain_call_actions)


@record
class ProgramSpec:
    """An entry program: one STT_FUNC symbol in an executable section other than .text."""

    name: str
    section: str
    prog_type: int
    expected_attach_type: int
    prog_flags: int
    function: FunctionSpec
    run_config: RunConfig = RunConfig()
    attach_func: str = ""          # freplace/NAME target

    @property
    def frags(self) -> bool:
        return bool(self.prog_flags & uapi.BPF_F_XDP_HAS_FRAGS)

    @property
    def kind(self) -> str:
        """The kernel's name of the program type ("xdp", "ext", "sched_cls", ...);
        "unknown" when the section names no type."""
        if self.prog_type == PROG_TYPE_UNSPEC:
            return "unknown"
        return PROG_TYPE_NAMES.get(self.prog_type, f"type{self.prog_type}")

    @property
    def has_run_config(self) -> bool:
        """Whether libxdp's run config means anything for it (XDP, freplace components
        and programs that may be loaded as XDP); not for tc, tracing, ... programs."""
        return self.prog_type in (PROG_TYPE_XDP, PROG_TYPE_EXT, PROG_TYPE_UNSPEC)

    @property
    def interface_problem(self) -> str | None:
        """Why this program cannot be attached to an interface's XDP hook (completes
        "program NAME (section S) ..."), or None if it can. One rule for ``load``,
        ``inspect``, ``check``, ``plan`` and ``apply``."""
        if self.prog_type == PROG_TYPE_UNSPEC:
            return "is in a section that names no program type"
        if self.prog_type != PROG_TYPE_XDP:
            return "is not an XDP program"
        if self.expected_attach_type == ATTACH_XDP_DEVMAP:
            return "is a devmap program, not attachable to an interface"
        if self.expected_attach_type == ATTACH_XDP_CPUMAP:
            return "is a cpumap program, not attachable to an interface"
        return None

    def as_type(self, type_name: str) -> ProgramSpec:
        """This program loaded as ``type_name`` (a key of ``CHOOSABLE_PROG_TYPES``), as
        ``bpftool prog load ... type xdp`` does. Only a program whose section names no type
        takes a chosen type; one that already has this type is returned as is."""
        from dispatcher.errors import ObjectFileError

        want = CHOOSABLE_PROG_TYPES.get(type_name)
        if want is None:
            raise ObjectFileError(f"unknown program type '{type_name}' (expected one of: "
                                  f"{', '.join(CHOOSABLE_PROG_TYPES)})")
        if self.prog_type == want:
            return self
        if self.prog_type != PROG_TYPE_UNSPEC:
            raise ObjectFileError(f"program {self.name} (section {self.section}) is a "
                                  f"{self.kind} program by its section; a program type can "
                                  "only be chosen for a program whose section names none")
        return replace(self, prog_type=want, expected_attach_type=ATTACH_XDP)


#: Longest file name (NAME_MAX): a pin name is one path component.
PIN_NAME_MAX = 255


def pin_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the file name of a pin (a map pinned by name lands at
    ``<pin_maps>/<name>``), or None. A pin name must be one path component made of the
    characters the kernel allows in object names (letters, digits, '_'), without '.',
    which bpffs refuses in names; so no '/', no '..', nothing that leaves the directory."""
    if not name:
        return "an empty name cannot be pinned"
    if len(name) > PIN_NAME_MAX:
        return f"a pin name has at most {PIN_NAME_MAX} characters"
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c == "_"))})
    if bad:
        shown = "".join(bad)
        return f"a pin name may only contain letters, digits and '_' (bpffs refuses '.', " \
               f"and '/' would leave the pin directory); found {shown!r}"
    return None


def bad_pin_names(maps: tuple[MapSpec, ...] | list[MapSpec], *, pin_all: bool = False
                  ) -> list[str]:
    """``map 'NAME' is pinned by name but its name cannot be a pin: WHY`` for each map of
    ``maps`` pinned by name (every map but global data with ``pin_all``, as ``pin_maps``
    does) whose name is not a safe pin name."""
    out = []
    for m in maps:
        if m.pinning or (pin_all and m.kind != "data"):
            problem = pin_name_problem(m.name)
            if problem:
                out.append(f"map {m.name!r} is pinned by name but its name cannot be a pin: "
                           f"{problem}")
    return out


@record
class MapSpec:
    """A map the object declares: BTF-defined (``.maps``), legacy (``maps``) or global data."""

    name: str                      # symbol name (BTF/legacy) or section name (data)
    kernel_name: str               # name passed to BPF_MAP_CREATE (<= 15 chars)
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    pinning: int = 0               # 1 = LIBBPF_PIN_BY_NAME
    numa_node: int = 0
    map_extra: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    inner: MapSpec | None = None   # map-in-map template
    section: str = ".maps"
    offset: int = 0                # offset of the definition inside its section
    data: bytes | None = None      # initial value (global data sections)
    freeze: bool = False           # .rodata: frozen after writing
    kind: str = "btf"              # "btf" | "legacy" | "data"

    @property
    def type_name(self) -> str:
        return MAP_TYPE_NAMES.get(self.map_type, str(self.map_type))


@record
class ObjectSpec:
    """Everything parsed from one object file."""

    path: str
    name: str                                  # basename up to the first dot
    license: str
    programs: tuple[ProgramSpec, ...]
    maps: tuple[MapSpec, ...]
    functions: tuple[FunctionSpec, ...]        # every function, entry points and subprograms
    btf: Btf | None
    btf_ext: BtfExt | None
    data_sections: tuple[str, ...] = ()
    xdp_metadata: bool = False                 # carries the dispatcher's xdp_metadata marker
    dispatcher_version: int = 0
    kern_version: int = 0

    def with_prog_type(self, type_name: str | None) -> ObjectSpec:
        """The object with ``type_name`` chosen for every program whose section names no
        type (``--prog-type`` / ``prog_type:``); the object itself for None."""
        from dispatcher.errors import ObjectFileError

        if type_name is None:
            return self
        if type_name not in CHOOSABLE_PROG_TYPES:
            raise ObjectFileError(f"unknown program type '{type_name}' (expected one of: "
                                  f"{', '.join(CHOOSABLE_PROG_TYPES)})")
        return replace(self, programs=tuple(p.as_type(type_name) if p.prog_type == PROG_TYPE_UNSPEC
                                            else p for p in self.programs))

    def program(self, *, name: str | None = None, section: str | None = None) -> ProgramSpec:
        """Select one program by function name or by section (first in that section)."""

        if name is not None:
            for p in self.programs:
                if p.name == name:
                    return p
            known = ", ".join(p.name for p in self.programs) or "none"
            raise ObjectFileError(f"{self.path}: no program named '{name}' (programs: {known})")
        if section is not None:
            for p in self.programs:
                if p.section == section:
                    return p
            known = ", ".join(sorted({p.section for p in self.programs})) or "none"
            raise ObjectFileError(f"{self.path}: no program in section '{section}' (sections: {known})")
        if not self.programs:
            raise ObjectFileError(f"{self.path}: the object contains no program")
        return self.programs[0]

    def function_at(self, section: str, insn: int) -> FunctionSpec | None:
        for f in self.functions:
            if f.section == section and f.start == insn:
                return f
        return None

    def map_by_name(self, name: str) -> MapSpec | None:
        for m in self.maps:
            if m.name == name:
                return m
        return None
