"""Our protocol-v2 dispatcher: load it for a sorted chain, attach components to it.

The compiled ``bpf/dispatcher.c`` ships in the package (``dispatcher/bpf/dispatcher.o``).
"Building" a dispatcher means writing its ``.rodata`` config for the final chain,
freezing it, and loading the program, so the verifier keeps exactly the used slots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from dispatcher.chain import protocol
from dispatcher.errors import ObjectFileError
from dispatcher.kernel import bpf, loader
from dispatcher.kernel.fd import OwnedFd
from dispatcher.obj.btf import BtfKind
from dispatcher.obj.elf import read_object
from dispatcher.obj.spec import PROG_TYPE_EXT, ObjectSpec, ProgramSpec

if TYPE_CHECKING:
    from dispatcher.kernel.probes import Probe

# Shipped in the package's top level (dispatcher/bpf/, see pyproject's package-data).
OBJECT_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "bpf", "dispatcher.o")


@cache
def dispatcher_object() -> ObjectSpec:
    if not os.path.exists(OBJECT_PATH):
        raise ObjectFileError(f"{OBJECT_PATH}: the packaged dispatcher is missing (run make bpf)")
    return read_object(OBJECT_PATH)


@dataclass
class LoadedDispatcher:
    """A loaded (not yet attached) dispatcher; owns its fds."""

    prog: loader.Program
    lo: loader.LoadedObject
    slots: int
    func_ids: dict[str, int] = field(default_factory=dict)

    @property
    def fd(self) -> int:
        return self.prog.fd.fd

    def target(self, slot: int) -> tuple[str, int]:
        """(function name, BTF id) an extension for ``slot`` replaces (libxdp: main when alone)."""
        name = protocol.DISPATCHER_NAME if self.slots == 1 else f"prog{slot}"
        return name, self.func_ids[name]

    def id(self) -> int:
        return self.prog.info().id

    def close(self) -> None:
        self.prog.close()
        self.lo.close()

    def __enter__(self) -> LoadedDispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_dispatcher(prios: list[int], actions: list[int], flags: list[int], *, frags: bool,
                    slots: int | None = None) -> LoadedDispatcher:
    """Load a dispatcher whose config describes ``len(prios)`` slots (or ``slots``)."""
    spec = dispatcher_object()
    n = len(prios) if slots is None else slots
    if slots is not None and not prios:
        prios, actions, flags = [0] * n, [0] * n, [0] * n
    cfg = protocol.encode_config(protocol.VERSION, prios, actions, flags, frags)
    prog_spec = spec.program(name=protocol.DISPATCHER_NAME)
    lo = loader.open_object(spec, only_maps=[".rodata"], data_overrides={".rodata": cfg})
    try:
        p = loader.load_program(lo, prog_spec, prog_flags=protocol.BPF_F_XDP_HAS_FRAGS if frags else 0)
    except BaseException:
        lo.close()
        raise
    btf = spec.btf
    assert btf is not None
    ids = {t.name: i for i, t in enumerate(btf.types) if t.kind == BtfKind.FUNC}
    return LoadedDispatcher(p, lo, n, ids)


def _stub_program(slot: int = 0) -> ProgramSpec:
    spec = dispatcher_object()
    f = next(f for f in spec.functions if f.name == f"prog{slot}")
    return ProgramSpec(name=f.name, section=f.section, prog_type=PROG_TYPE_EXT,
                       expected_attach_type=0, prog_flags=0, function=f)


def probe_extension(disp: LoadedDispatcher) -> Probe:
    """Load a stub as an extension of ``disp``'s slot 0 (raises KernelError if refused), then
    link it with an explicit target; returns the re-attach probe's result."""
    from dispatcher.errors import KernelError
    from dispatcher.kernel.probes import Probe

    spec = dispatcher_object()
    _name, btf_id = disp.target(0)
    with loader.open_object(spec, only_maps=[]) as lo:
        p = loader.load_program(lo, _stub_program(0), prog_type=PROG_TYPE_EXT,
                                attach_prog_fd=disp.fd, attach_btf_id=btf_id, name="probe_ext")
        with p.fd:
            try:
                link = bpf.link_create(p.fd.fd, disp.fd, 0, target_btf_id=btf_id)
            except KernelError as e:
                return Probe("freplace_reattach", False, f"BPF_LINK_CREATE with a target: "
                             f"{e.message}", "5.10")
            link.close()
    return Probe("freplace_reattach", True, "BPF_LINK_CREATE with target_fd + target_btf_id",
                 "5.10")


def load_component(obj: ObjectSpec, prog: ProgramSpec, disp: LoadedDispatcher, slot: int, *,
                   pin_root: str, verifier_log: list[str] | None = None
                   ) -> tuple[loader.Program, list[str]]:
    """Load a new component as an extension replacing ``slot`` of ``disp``.

    Returns the program and the map pins this load created (to remove on rollback)."""
    if obj.btf is None or obj.btf_ext is None:
        raise ObjectFileError(
            f"{obj.path}: program {prog.name}: has no BTF; a dispatcher component is loaded as an "
            "extension (freplace), which needs BTF (compile with clang -g)")
    _name, btf_id = disp.target(slot)
    lo, p = loader.load_object_program(
        obj, prog, pin_root=pin_root, verifier_log=verifier_log,
        log_level=1 if verifier_log is not None else 0, prog_type=PROG_TYPE_EXT,
        prog_flags=prog.prog_flags & ~(protocol.BPF_F_XDP_HAS_FRAGS | protocol.BPF_F_XDP_DEV_BOUND_ONLY),
        attach_prog_fd=disp.fd, attach_btf_id=btf_id)
    new_pins = lo.created()
    lo.close()  # the program holds its maps; pinned maps stay pinned
    return p, new_pins


def link_component(prog_fd: int, disp: LoadedDispatcher, slot: int) -> OwnedFd:
    _name, btf_id = disp.target(slot)
    return bpf.link_create(prog_fd, disp.fd, 0, target_btf_id=btf_id)
