"""Our dispatcher (protocol v2 or v3): load it for a sorted chain, attach components to it.

The compiled ``bpf/dispatcher.c`` ships in the package (``dispatcher/bpf/dispatcher.o``),
and as version 3 (``bpf/dispatcher_v3.c``: ``dispatcher/bpf/dispatcher_v3.o``).
"Building" a dispatcher means writing its ``.rodata`` config for the final chain,
freezing it, and loading the program, so the verifier keeps exactly the used slots.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from dispatcher import caches
from dispatcher.chain import protocol
from dispatcher.errors import KernelError, ObjectFileError, XdpDispatchError
from dispatcher.kernel import bpf, loader, probes
from dispatcher.kernel.fd import OwnedFd
from dispatcher.kernel.probes import Probe
from dispatcher.obj.btf import BtfKind
from dispatcher.obj.elf import parse_cached, read_object
from dispatcher.obj.spec import ObjectSpec, ProgramSpec
from dispatcher.uapi import BPF_F_XDP_DEV_BOUND_ONLY, BPF_F_XDP_HAS_FRAGS, BPF_PROG_TYPE_EXT

# The compiled bpf/dispatcher.c, shipped as package data (pyproject: package-data).
OBJECT = resources.files("dispatcher").joinpath("bpf", "dispatcher.o")
OBJECT_V3 = resources.files("dispatcher").joinpath("bpf", "dispatcher_v3.o")
OBJECTS = {2: OBJECT, 3: OBJECT_V3}

# Where libxdp looks for its xdp-dispatcher.o when LIBXDP_OBJECT_PATH is unset (its
# BPF_OBJECT_PATH: Debian/Ubuntu multiarch, Fedora, the upstream default, /usr/local).
LIBXDP_OBJECT_DIRS = ("/usr/lib/*-linux-gnu*/bpf", "/usr/lib64/bpf", "/usr/lib/bpf",
                      "/usr/local/lib/bpf")
LIBXDP_DISPATCHER = "xdp-dispatcher.o"


@cache
def dispatcher_object(version: int = protocol.VERSION) -> ObjectSpec:
    path = OBJECTS[version]
    try:
        data = path.read_bytes()
    except OSError:
        raise ObjectFileError(f"{path}: the packaged dispatcher is missing "
                              "(run make bpf)") from None
    return parse_cached(data, str(path))


caches.register("chain.freplace.program.dispatcher_object", dispatcher_object.cache_clear)


def libxdp_dispatcher_paths(env: dict[str, str] | None = None) -> list[str]:
    """Where the host's libxdp would find its dispatcher object, in libxdp's order: the
    directory LIBXDP_OBJECT_PATH names, else the distributions' BPF object directories."""
    env = dict(os.environ) if env is None else env
    if env.get("LIBXDP_OBJECT_PATH"):
        return [os.path.join(env["LIBXDP_OBJECT_PATH"], LIBXDP_DISPATCHER)]
    return [os.path.join(d, LIBXDP_DISPATCHER)
            for pattern in LIBXDP_OBJECT_DIRS for d in sorted(glob.glob(pattern))]


@cache
def host_libxdp() -> tuple[int, str]:
    """(dispatcher version, object path) of the host's installed libxdp, read from the BTF
    marker of its dispatcher object; (0, "") when no libxdp is installed (or its object
    has no marker)."""
    for path in libxdp_dispatcher_paths():
        if not os.path.isfile(path):
            continue
        try:
            version = read_object(path).dispatcher_version
        except XdpDispatchError:
            continue
        if version:
            return version, path
    return 0, ""


def host_dispatcher_version() -> int:
    """The dispatcher version the host's libxdp writes (0: no libxdp found)."""
    return host_libxdp()[0]


caches.register("chain.freplace.program.host_libxdp", host_libxdp.cache_clear)


def host_libxdp_probe() -> Probe:
    """For ``features``: which dispatcher version a new chain gets by default."""
    version, path = host_libxdp()
    if version:
        return Probe("host_libxdp", True, f"{path} writes dispatcher v{version}: by default a new chain "
                     f"is v{version if version in protocol.WRITABLE_VERSIONS else protocol.VERSION}")
    return Probe("host_libxdp", False, "no libxdp dispatcher object found (LIBXDP_OBJECT_PATH, "
                 f"{', '.join(LIBXDP_OBJECT_DIRS)}): by default a new chain is v{protocol.VERSION}")


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
                    slots: int | None = None, version: int = protocol.VERSION,
                    devbound: bool = False, ifindex: int = 0) -> LoadedDispatcher:
    """Load a dispatcher of protocol ``version`` whose config describes ``len(prios)``
    slots (or ``slots``). A ``devbound`` (v3) one is loaded with BPF_F_XDP_DEV_BOUND_ONLY
    and ``ifindex`` as prog_ifindex, which the kernel resolves in the calling thread's
    network namespace."""
    spec = dispatcher_object(version)
    n = len(prios) if slots is None else slots
    if slots is not None and not prios:
        prios, actions, flags = [0] * n, [0] * n, [0] * n
    cfg = protocol.encode_config(version, prios, actions, flags, frags, devbound)
    prog_spec = spec.program(name=protocol.DISPATCHER_NAME)
    pflags = (BPF_F_XDP_HAS_FRAGS if frags else 0) | (BPF_F_XDP_DEV_BOUND_ONLY if devbound else 0)
    lo = loader.open_object(spec, only_maps=[".rodata"], data_overrides={".rodata": cfg})
    try:
        p = loader.load_program(lo, prog_spec, prog_flags=pflags,
                                prog_ifindex=ifindex if devbound else 0)
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
    return ProgramSpec(name=f.name, section=f.section, prog_type=BPF_PROG_TYPE_EXT,
                       expected_attach_type=0, prog_flags=0, function=f)


def probe_extension(disp: LoadedDispatcher) -> Probe:
    """Load a stub as an extension of ``disp``'s slot 0 (raises KernelError if refused), then
    link it with an explicit target; returns the re-attach probe's result."""
    spec = dispatcher_object()
    _name, btf_id = disp.target(0)
    with loader.open_object(spec, only_maps=[]) as lo:
        p = loader.load_program(lo, _stub_program(0), prog_type=BPF_PROG_TYPE_EXT,
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
        log_level=1 if verifier_log is not None else 0, prog_type=BPF_PROG_TYPE_EXT,
        prog_flags=prog.prog_flags & ~(BPF_F_XDP_HAS_FRAGS | BPF_F_XDP_DEV_BOUND_ONLY),
        attach_prog_fd=disp.fd, attach_btf_id=btf_id)
    new_pins = lo.created()
    lo.close()  # the program holds its maps; pinned maps stay pinned
    return p, new_pins


def link_component(prog_fd: int, disp: LoadedDispatcher, slot: int) -> OwnedFd:
    _name, btf_id = disp.target(slot)
    return bpf.link_create(prog_fd, disp.fd, 0, target_btf_id=btf_id)


def freplace() -> Probe:
    """Load a 1-slot dispatcher and an extension replacing its main function."""
    def run() -> str:
        with load_dispatcher([], [], [], frags=False, slots=1) as disp:
            ok = probe_extension(disp)
        probes.remember(ok)
        return "BPF_PROG_TYPE_EXT loads against our dispatcher"
    return probes.cached("freplace", "5.6", run)


def freplace_reattach() -> Probe:
    """BPF_LINK_CREATE of an extension with an explicit target (what re-attaching kept
    components to a new dispatcher needs)."""
    got = probes.known("freplace_reattach")
    if got is None:
        fr = freplace()
        got = probes.known("freplace_reattach")
        if got is None:
            assert not fr.supported
            got = Probe("freplace_reattach", False, f"no freplace ({fr.detail})", "5.10")
            probes.remember(got)
    return got
