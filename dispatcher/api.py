"""Python API: the operations of the CLI, without printing.

    import dispatcher
    res = dispatcher.load("veth0", ["bpf/examples/xdp_counter.o"], mode="skb")
    for iface in dispatcher.status("veth0"):
        print(iface.to_json())
    dispatcher.unload("veth0", all=True)

Imports inside functions are deliberate, all for one reason: each operation imports only
what it needs (``status`` never loads the ELF reader, the linker or the config stack).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dispatcher import uapi
from dispatcher.errors import ObjectFileError, UsageError, XdpDispatchError
from dispatcher.kernel.netlink import MODES as _ALL_MODES
from dispatcher.kernel.privileges import require_root
from dispatcher.record import record

if TYPE_CHECKING:
    from dispatcher.chain.model import ChangeResult
    from dispatcher.chain.state import InterfaceState
    from dispatcher.config.drift import InterfaceDrift
    from dispatcher.config.model import ChainConfig
    from dispatcher.config.plan import InterfacePlan
    from dispatcher.obj.spec import ObjectSpec, ProgramSpec
    from dispatcher.stats import InterfaceStats as InterfaceStatsT

# Modules that parse objects or change chains are imported by the functions that use
# them: `status` must not pay for the ELF reader, the linker or the loader.

MODES = {k: v for k, v in _ALL_MODES.items() if k != "unspecified"}


@record
class LoadResult:
    iface: str
    ifindex: int
    name: str
    prog_id: int
    tag: str
    mode: str


def read_object(path: str) -> ObjectSpec:
    """Read and parse a BPF ELF object file (``dispatcher.obj.elf.read_object``)."""
    from dispatcher.obj.elf import read_object as read

    return read(path)


def select_program(obj: ObjectSpec, *, section: str | None = None,
                   prog_name: str | None = None) -> ProgramSpec:
    if section is None and prog_name is None:
        xdp = [p for p in obj.programs if p.prog_type == uapi.BPF_PROG_TYPE_XDP]
        if not xdp:
            raise ObjectFileError(f"{obj.path}: the object contains no XDP program")
        return xdp[0]
    return obj.program(name=prog_name, section=section)


# The hint for a program whose section names no type, per command option.
UNTYPED_HINT = "{how} to load it as an XDP program (as bpftool's `prog load ... type xdp` does)"


def attachable_program(obj: ObjectSpec, *, section: str | None = None,
                       prog_name: str | None = None, prog_type: str | None = None
                       ) -> ProgramSpec:
    """The program to attach to an interface (``select_program`` after choosing
    ``prog_type`` for programs whose section names none); refuses, before any kernel call,
    one that cannot be attached (not XDP, devmap/cpumap program, no type) or linked (calls
    a kfunc)."""
    try:
        obj = obj.with_prog_type(prog_type)
        prog = select_program(obj, section=section, prog_name=prog_name)
        if prog_type is not None:
            prog = prog.as_type(prog_type)
    except ObjectFileError as e:
        untyped = [p.name for p in obj.programs if p.prog_type == 0]
        hint = e.hint or (f"{', '.join(untyped)}: in a section that names no type; "
                          + UNTYPED_HINT.format(how="pass --prog-type xdp")
                          if untyped and section is None and prog_name is None else None)
        if e.message.startswith(obj.path):
            raise ObjectFileError(e.message, hint=hint) from None
        raise ObjectFileError(f"{obj.path}: {e.message}", hint=hint) from None
    problem = prog.interface_problem
    if problem:
        raise UsageError(f"{obj.path}: program {prog.name} (section {prog.section}) {problem}",
                         hint=UNTYPED_HINT.format(how="pass --prog-type xdp")
                         if prog.prog_type == 0 else None)
    from dispatcher.obj.link import extern_problem

    problem = extern_problem(obj, prog)
    if problem:
        raise ObjectFileError(f"{obj.path}: program {prog.name}: {problem}")
    return prog


def _root(notice: Callable[[str], None] | None) -> str:
    from dispatcher.kernel import bpffs

    root = bpffs.bpffs_root()
    if root == bpffs.DEFAULT_BPFFS:
        return bpffs.ensure_bpffs(notice=notice)
    return bpffs.ensure_bpffs(root, mount=False)




def parse_actions(spec: str | Sequence[str]) -> int:
    from dispatcher.obj.actions import names_to_actions

    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        return names_to_actions([s for s in items if s.strip()])
    except ValueError as e:
        raise UsageError(str(e)) from None


def load(iface: str, objects: Sequence[str], *, mode: str = "native", priority: int | None = None,
         actions: str | Sequence[str] | None = None, section: str | None = None,
         prog_name: str | None = None, netns: str | None = None, force: bool = False,
         verifier_log: list[str] | None = None,
         notice: Callable[[str], None] | None = None, dispatch: str = "auto",
         prog_type: str | None = None, stats: str | None = None,
         inline: bool | None = None,
         dispatcher_version: int | None = None) -> ChangeResult:
    """Add programs to ``iface``'s chain (one atomic swap). CLI values override run config.
    ``dispatch``: ``auto`` (freplace where the kernel allows it, else a linked chain),
    ``freplace`` or ``linked``. ``prog_type`` ("xdp"): the type of a program whose section
    names none (as ``bpftool prog load ... type xdp``). ``stats``: ``counts`` or ``off``
    (None: keep the chain's setting; a new linked chain counts). ``inline``: a linked
    chain inlines its components' entry functions into its main program (None: keep the
    chain's setting; a new linked chain inlines). ``dispatcher_version`` (2 or 3): the
    libxdp dispatcher version of a freplace chain (None: an attached chain keeps its own; a
    new one gets the installed libxdp's, else 2)."""
    from dispatcher.chain import router
    from dispatcher.chain.model import NewProgram, request, settings_json
    from dispatcher.config import ownership

    if mode not in MODES:
        raise UsageError(f"unknown mode '{mode}' (expected native, skb or hw)")
    if priority is not None and not 0 <= priority <= 0xFFFFFFFF:
        raise UsageError(f"priority {priority} out of range")
    require_root("loading programs")
    new = []
    parsed: dict[str, ObjectSpec] = {}
    for path in objects:
        obj = parsed.get(path) or parsed.setdefault(path, read_object(path))
        prog = attachable_program(obj, section=section, prog_name=prog_name, prog_type=prog_type)
        settings = ""
        if prog_type is not None and obj.program(name=prog.name).prog_type != prog.prog_type:
            obj = obj.with_prog_type(prog_type)
            settings = settings_json(None, None, None, prog_type)   # redone on rebuilds
        prio = priority if priority is not None else prog.run_config.priority
        acts = parse_actions(actions) if actions is not None else prog.run_config.chain_call_actions
        new.append(NewProgram(obj, prog, prio, acts, settings=settings))
    root = _root(notice)

    def remember(preview: ChangeResult) -> None:
        # freplace components and a program attached directly have ids of their own (a
        # linked chain's say it in its description): "Managed by" xdp-dispatch; recorded
        # before the swap, so an untrusted state directory stops the change before anything
        # is attached
        if preview.kind != "linked":
            ownership.record_loaded(preview.new_ids)

    return router.change(request(iface, mode=mode, add=new, netns=netns, root=root, force=force,
                                 dispatch=dispatch, stats=stats, inline=inline,
                                 dispatcher_version=dispatcher_version),
                         notice=notice, verifier_log=verifier_log, before_swap=remember)


def load_plain(iface: str, path: str, *, mode: str = "native", section: str | None = None,
               prog_name: str | None = None, netns: str | None = None,
               verifier_log: list[str] | None = None,
               notice: Callable[[str], None] | None = None,
               prog_type: str | None = None) -> LoadResult:
    """Load one XDP program and attach it directly, without a dispatcher."""
    from dispatcher.config import ownership
    from dispatcher.errors import ForeignStateError
    from dispatcher.kernel import loader, netlink

    obj = read_object(path).with_prog_type(prog_type)
    prog = attachable_program(obj, section=section, prog_name=prog_name)
    if mode not in MODES:
        raise UsageError(f"unknown mode '{mode}' (expected native, skb or hw)")
    require_root("loading a program")
    ifindex = netlink.ifindex_of(iface, netns=netns)
    root = _root(notice)
    state = netlink.read_xdp(ifindex, netns=netns)
    if state.prog_id or state.hw_prog_id:
        raise ForeignStateError(
            f"{iface} already has an XDP program (id {state.prog_id or state.hw_prog_id})",
            hint=f"remove it first: xdp-dispatch unload {iface} --all")
    lo, p = loader.load_object_program(obj, prog, pin_root=root, verifier_log=verifier_log,
                                       log_level=1 if verifier_log is not None else 0)
    with lo, p.fd:
        info = p.info()
        try:
            ownership.record_loaded([info.id])      # "Managed by": xdp-dispatch
            netlink.attach_xdp(ifindex, p.fd.fd, MODES[mode], no_exist=True, netns=netns)
        except BaseException:
            lo.unpin_new()
            raise
    return LoadResult(iface, ifindex, prog.name, info.id, info.tag_hex, mode)


def unload(iface: str, *, ids: Sequence[int] = (), all: bool = False,  # noqa: A002
           netns: str | None = None, mode: str | None = None,
           names: Sequence[str] = (),
           notice: Callable[[str], None] | None = None) -> ChangeResult | None:
    """Remove programs by id (or everything) from ``iface``'s chain, in one swap.
    ``names``: components of a linked chain, by name (they have no program id)."""
    from dispatcher.chain import router
    from dispatcher.chain.model import request
    from dispatcher.kernel import netlink

    if not all and not ids and not names:
        raise UsageError("say what to unload: --all, -i ID or -n NAME")
    require_root("unloading programs")
    root = _root(notice)
    xs = netlink.read_xdp_by_name(iface, netns=netns)
    ifindex = xs.ifindex
    cur_mode = "native" if xs.drv_prog_id else "skb" if xs.skb_prog_id else None
    ids_set = set(ids)
    if xs.hw_prog_id and (all or xs.hw_prog_id in ids_set):
        netlink.detach_xdp(ifindex, uapi.XDP_FLAGS_HW_MODE, netns=netns)
        ids_set.discard(xs.hw_prog_id)
        if not all and not ids_set:
            return None
    if not cur_mode:
        if ids_set or names:
            raise UsageError(f"{iface}: no XDP program is attached")
        return None
    if names:
        return router.change(request(iface, mode=mode or cur_mode, remove_ids=ids_set,
                                     remove_all=all, netns=netns, root=root,
                                     remove_names=set(names)), notice=notice)
    if ids_set and xs.prog_id in ids_set and not all:
        # a plain (legacy) program, removed by its own id
        all = True
    return router.change(request(iface, mode=mode or cur_mode, remove_ids=ids_set,
                                 remove_all=all, netns=netns, root=root), notice=notice)


def upgrade(iface: str, version: int, *, netns: str | None = None,
            notice: Callable[[str], None] | None = None) -> tuple[ChangeResult | None, int]:
    """Rewrite ``iface``'s freplace chain as dispatcher ``version`` in one swap: a new
    dispatcher, every component re-linked to it (same program ids, maps and pins).
    Returns (result, the version before); result None when it already is ``version``."""
    from dispatcher.chain import router, rules
    from dispatcher.chain.model import request

    rules.check_version(version)
    require_root("upgrading a dispatcher")
    [st] = status(iface, netns=netns)
    if st.error:
        raise UsageError(f"{iface}: {st.error}")
    if not rules.check_upgrade(st, iface, version):
        return None, version
    assert st.dispatcher is not None
    before = st.dispatcher.version
    return router.change(request(iface, mode=st.mode or "native", root=_root(notice),
                                 netns=netns, dispatcher_version=version),
                         notice=notice), before


def unload_all(iface: str, *, netns: str | None = None) -> list[int]:
    """Detach everything from ``iface``; returns the ids that were attached."""
    from dispatcher.kernel import netlink

    xs = netlink.read_xdp_by_name(iface, netns=netns)
    before = [i for i in (xs.hw_prog_id, xs.drv_prog_id, xs.skb_prog_id) if i]
    unload(iface, all=True, netns=netns)
    return before


def status(iface: str | None = None, *, netns: str | None = None) -> list[InterfaceState]:
    """Observed state of every interface (or one): a list of ``InterfaceState``."""
    from dispatcher.chain import observe
    from dispatcher.kernel import bpffs

    root = bpffs.bpffs_root()
    return observe.status(iface, netns=netns, root=root if bpffs.is_bpffs(root) else None)


@record
class StatusReport:
    """``status [IFACE] [--config FILE]``: observed interfaces, who manages each program
    (program id -> config file or "xdp-dispatch"; absent = not ours) and, with a config,
    the drift between it and the kernel."""

    interfaces: list[InterfaceState]
    managed: dict[int, str]
    config: str | None = None
    drift: list[InterfaceDrift] | None = None

    @property
    def drifted(self) -> bool:
        return any(d.drifted for d in self.drift or [])

    @property
    def errors(self) -> bool:
        return any(s.error for s in self.interfaces) or any(d.error for d in self.drift or [])

    def to_json(self) -> dict[str, object]:
        from dispatcher.render import status_json

        out: dict[str, object] = {"interfaces": status_json(self.interfaces, self.managed)}
        if self.drift is not None:
            out["drift"] = {"config": self.config, "drifted": self.drifted,
                            "interfaces": [d.to_json() for d in self.drift]}
        return out


def managed_by() -> dict[int, str]:
    """Program id -> who manages it (config file, or "xdp-dispatch"), from the ownership
    records; programs not listed are not ours (e.g. loaded by xdp-loader)."""
    from dispatcher.config.ownership import managed_labels

    return managed_labels()


def status_report(iface: str | None = None, *, netns: str | None = None,
                  config: str | None = None) -> StatusReport:
    """``status`` with the "managed by" column's data and, given ``config``, its drift."""
    states = status(iface, netns=netns)
    return StatusReport(states, managed_by(), config,
                        config_drift(config, iface) if config is not None else None)


def check_config(config: str) -> ChainConfig:
    """Validate a config file (syntax, schema, objects, globals); ConfigError lists every
    problem as FILE:LINE:COL lines."""
    from dispatcher.config.model import load_and_check

    return load_and_check(config)


def plan_config(config: str, *, exclusive: bool = False) -> list[InterfacePlan]:
    """What ``apply`` would change on each interface (``InterfacePlan.changed``). An
    unchanged file on an unchanged system since its last apply is answered from that
    apply's record (see ``applied.py``) without parsing anything."""
    from dispatcher.config import applied

    plans = applied.reuse(config, exclusive=exclusive)
    if plans is not None:
        return plans
    from dispatcher.config.apply import make_plan

    return make_plan(config, exclusive=exclusive)[1]


def apply_config(config: str, *, exclusive: bool = False, dry_run: bool = False,
                 notice: Callable[[str], None] | None = None) -> list[InterfacePlan]:
    """Make the interfaces match ``config`` (all or nothing); returns the plans carried out.
    Re-applying an unchanged file on an unchanged system is answered from the last
    apply's record (see ``applied.py``): nothing to change, nothing parsed."""
    from dispatcher.config import applied

    plans = applied.reuse(config, exclusive=exclusive)
    if plans is not None:
        return plans
    from dispatcher.config import apply

    return apply.apply(config, exclusive=exclusive, dry_run=dry_run, notice=notice)


def config_drift(config: str, iface: str | None = None) -> list[InterfaceDrift]:
    """What differs between ``config`` and the kernel, per interface (or only ``iface``)."""
    from dispatcher.config.drift import drift as drift_of

    return drift_of(plan_config(config), iface)


def export_config(ifaces: Sequence[str] = (), *, netns: str | None = None) -> str:
    """The live chains of ``ifaces`` (every interface with an XDP program when empty) as a
    config file that ``check`` accepts and whose ``plan`` is empty (``config/export.py``)."""
    from dispatcher.config import ownership
    from dispatcher.config.export import Observed, export_text

    states: list[InterfaceState] = []
    names: list[str | None] = list(ifaces) or [None]
    for name in names:
        states += status(name, netns=netns)
    return export_text([Observed(s, netns, named=bool(ifaces)) for s in states],
                       ownership.read())


def clean(iface: str | None = None, *, netns: str | None = None) -> list[str]:
    """Remove pin directories of dispatchers that are no longer attached."""
    from dispatcher.chain import router

    require_root("cleaning pins")
    return router.clean(_root(None), iface, netns=netns)


def stats(iface: str | None = None, *, netns: str | None = None,
          interval: float | None = None) -> list[InterfaceStatsT]:
    """Per-component counters of every chain (or ``iface``'s); with ``interval``, the
    rates (per second) between two samples that far apart."""
    from dispatcher import stats as st

    return st.sample(iface, netns, interval)


def metrics(*, netns: str | None = None) -> bytes:
    """The Prometheus text exposition of every chain's counters (README "Metrics")."""
    from dispatcher import stats as st

    return st.prometheus(st.collect(None, netns))


def set_stats(iface: str, setting: str, *, netns: str | None = None,
              notice: Callable[[str], None] | None = None) -> ChangeResult:
    """Turn ``iface``'s per-component counters on (``counts``, ``timing``) or ``off``. A
    linked chain is rebuilt with the same components (kept counts continue); a freplace
    chain keeps its programs and its components get (or lose) their fexit counters."""
    from dispatcher.chain import router
    from dispatcher.chain.model import ChangeResult, request
    from dispatcher.kernel import netlink

    require_root("changing stats")
    [st] = status(iface, netns=netns)
    if st.kind == "dispatcher":
        from dispatcher.chain import fexit as counters
        from dispatcher.chain.pending import protocol_lock

        root = _root(notice)
        with protocol_lock(root):        # no other change while the chain is read
            [st] = status(iface, netns=netns)
            if st.kind != "dispatcher" or st.main is None:
                raise XdpDispatchError(f"{iface}: the chain changed meanwhile; try again")
            counters.reconcile_attached(root, netns, st.ifindex, setting,
                                        [c.id for c in st.programs if c.id])
        return ChangeResult(iface, st.ifindex, "dispatcher", st.main.id,
                            tuple((c.slot, c.name, c.id) for c in st.programs))
    if st.kind != "linked":
        raise UsageError(f"{iface}: per-component stats need a chain (linked or freplace), "
                         f"and {iface} has {'no XDP program' if st.kind == 'none' else st.kind}",
                         hint=f"xdp-dispatch load {iface} --stats counts OBJ")
    xs = netlink.read_xdp_by_name(iface, netns=netns)
    mode = "native" if xs.drv_prog_id else "skb"
    return router.change(request(iface, mode=mode, root=_root(notice), netns=netns,
                                 stats=setting), notice=notice)


def probe_features(iface: str | None = None, *, netns: str | None = None) -> dict[str, object]:
    from dispatcher.chain.freplace import program
    from dispatcher.kernel import bpffs
    from dispatcher.kernel import probes as feat

    require_root("probing kernel features")
    probes = feat.all_probes(bpffs.bpffs_root(),
                             first=(program.freplace, program.freplace_reattach,
                                    program.host_libxdp_probe))
    out: dict[str, object] = {k: v.to_json() for k, v in probes.items()}
    if iface:
        out["interface"] = feat.interface_modes(iface, netns=netns)
    return out


__all__ = ["LoadResult", "StatusReport", "apply_config", "check_config", "clean", "config_drift",
           "export_config", "load", "load_plain", "managed_by", "metrics", "plan_config", "probe_features",
           "read_object", "select_program", "set_stats", "stats", "status", "status_report",
           "unload", "unload_all", "upgrade"]
