"""``plan`` and ``apply`` of a config file: resolve what it asks for, observe the
interfaces, compute the difference (``plan.py``) and make it with one chain change per
interface (``router.py``), recording which components are ours (``ownership.py``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass

from dispatcher.chain import observe, router
from dispatcher.chain.model import (
    SHA_PREFIX,
    ChangeResult,
    NewProgram,
    request,
    settings_json,
    with_settings,
)
from dispatcher.chain.pending import PendingChange
from dispatcher.config import applied, ownership
from dispatcher.config.model import (
    ChainConfig,
    config_program,
    error_at,
    expand_names,
    load_and_check,
)
from dispatcher.config.plan import (
    ADD,
    REMOVE,
    UPDATE,
    UPGRADE,
    DesiredProgram,
    InterfacePlan,
    Owner,
    plan_interface,
)
from dispatcher.errors import ConfigError, XdpDispatchError
from dispatcher.kernel import bpffs, netlink
from dispatcher.kernel.privileges import require_root
from dispatcher.obj.elf import parse_cached, read_bytes, read_object
from dispatcher.obj.spec import ObjectSpec, names_to_actions
from dispatcher.record import replace
from dispatcher.safeio import UnsafePathError, file_sha256


@dataclass
class _Target:
    iface: str
    netns: str | None
    mode: str
    desired: list[DesiredProgram]
    dispatch: str = "auto"
    stats: str | None = None
    inline: bool | None = None
    dispatcher_version: int | None = None


Links = dict[str | None, list[netlink.XdpState]]    # netns -> its RTM_GETLINK dump
Scope = Collection[tuple[str | None, str]]          # (netns, interface) pairs


def resolve(cfg: ChainConfig, objects: dict[str, ObjectSpec],
            links: Links | None = None, shas: dict[str, str] | None = None,
            missing_ok: bool = False) -> list[_Target]:
    """Interfaces (names expanded) and their enabled programs, with defaults from objects.
    ``links`` receives the dump of each network namespace the config names; ``shas`` has
    the objects' content hashes where already known. ``missing_ok``: a name or pattern
    that matches no interface (yet) is not an error (the agent waits for it)."""
    shas = {} if shas is None else shas
    out = []
    links = {} if links is None else links
    problems = []
    seen: dict[tuple[str | None, str], int] = {}     # (netns, interface) -> entry index
    for k, icfg in enumerate(cfg.interfaces):
        if icfg.netns not in links:
            links[icfg.netns] = netlink.list_links(netns=icfg.netns)
        present = [x.ifname for x in links[icfg.netns]]
        names = expand_names(icfg.names(), present, icfg.exact_names())
        if not missing_ok:
            problems += _missing_interfaces(cfg, k, present)
        else:
            names = [n for n in names if n in present]
        desired = []
        for j, p in enumerate(icfg.programs):
            if not p.enabled:
                continue
            if p.pin_maps and not bpffs.lands_on_bpffs(p.pin_maps):
                problems.append(error_at(cfg, ("interfaces", k, "programs", j, "pin_maps"),
                                         f"{p.pin_maps} is not on a BPF filesystem (bpffs)"))
            elif p.pin_maps and os.path.lexists(p.pin_maps):
                try:
                    bpffs.check_trusted_dir(p.pin_maps, what="pin_maps directory")
                except UnsafePathError as e:
                    problems.append(error_at(cfg, ("interfaces", k, "programs", j, "pin_maps"),
                                             e.message))
            obj = objects.get(p.object) or objects.setdefault(p.object, read_object(p.object))
            prog = config_program(obj, p)       # checked: one program, attachable
            assert prog is not None
            prio = p.priority if p.priority is not None else prog.run_config.priority
            acts = names_to_actions(p.chain_call_actions) if p.chain_call_actions is not None \
                else prog.run_config.chain_call_actions
            frags = p.frags if p.frags is not None and p.frags != prog.frags else None
            if p.object not in shas:
                shas[p.object] = file_sha256(p.object)
            desired.append(DesiredProgram(p.name, p.object, shas[p.object], prog.name, prio, acts,
                                          settings_json(p.globals, p.pin_maps, frags, p.prog_type)))
        for n in names:
            if (icfg.netns, n) in seen:
                problems.append(error_at(cfg, ("interfaces", k, "name"),
                                         f"interface {json.dumps(n)} already has a chain at "
                                         f"interfaces[{seen[(icfg.netns, n)]}] (after expanding "
                                         "patterns)"))
                continue
            seen[(icfg.netns, n)] = k
            out.append(_Target(n, icfg.netns, icfg.mode, desired, icfg.dispatch, icfg.stats,
                               icfg.inline, icfg.dispatcher_version))
    if problems:
        raise ConfigError("\n".join(problems))
    return out


def _missing_interfaces(cfg: ChainConfig, k: int, present: list[str]) -> list[str]:
    """``FILE:LINE:COL`` lines for names of ``cfg.interfaces[k]`` that match no interface."""
    icfg = cfg.interfaces[k]
    items = icfg.names()
    where = f" in netns {icfg.netns}" if icfg.netns else ""
    out = []
    for n, item in enumerate(items):
        loc: tuple[str | int, ...] = ("interfaces", k, "name")
        if isinstance(icfg.name, list):
            loc += (n,)
        if icfg.is_glob(item):
            if not expand_names(item, present):
                out.append(error_at(cfg, loc, f"pattern {json.dumps(item)} matches no "
                                              f"interface{where}"))
        elif item not in present:
            out.append(error_at(cfg, loc, f"no interface named {json.dumps(item)}{where}"))
    return out


def new_program(obj: ObjectSpec, d: DesiredProgram) -> NewProgram:
    """The component to load for ``d``, with its load-time overrides (``with_settings``)."""
    obj, prog, pin_dir = with_settings(obj, d.program, d.settings)
    return NewProgram(obj, prog, d.priority, d.actions, pin_dir=pin_dir, label=d.name,
                      settings=d.settings, sha256=d.sha256[:SHA_PREFIX])


def prepare(path: str, links: Links | None = None, shas: dict[str, str] | None = None,
            *, text: bytes | None = None, missing_ok: bool = False,
            only: Scope | None = None,
            ) -> tuple[ChainConfig, list[_Target], dict[str, ObjectSpec]]:
    """The config checked, its targets resolved (``links`` receives the link dumps read
    for that), and the objects it names read and parsed once (``shas`` receives the
    hash of the bytes parsed). ``text``: the config's bytes, already read (see
    ``load_config``); ``missing_ok``: see ``resolve``; ``only``: keep only the targets
    in that set of (netns, interface)."""
    objects: dict[str, ObjectSpec] = {}
    shas = {} if shas is None else shas

    def read_once(obj_path: str) -> ObjectSpec:      # the checks and resolve share the parse
        if obj_path not in objects:
            data = read_bytes(obj_path)
            objects[obj_path] = parse_cached(data, obj_path)
            shas[obj_path] = hashlib.sha256(data).hexdigest()
        return objects[obj_path]

    cfg = load_and_check(path, read_object=read_once, text=text)
    targets = resolve(cfg, objects, links, shas, missing_ok)
    if only is not None:
        targets = [t for t in targets if (t.netns, t.iface) in only]
    return cfg, targets, objects


def observe_plan(cfg: ChainConfig, targets: list[_Target], *, exclusive: bool = False,
                 links: Links | None = None) -> list[InterfacePlan]:
    """Observe each target interface and plan its difference from the config. With
    ``links`` (dumps of the targets' namespaces) their XDP state is taken from there."""
    owners = ownership.read()
    root = bpffs.bpffs_root()
    plans = []
    dumped = {(ns, x.ifname): x for ns, xs in (links or {}).items() for x in xs}
    for t in targets:
        try:
            xs = dumped.get((t.netns, t.iface)) if links is not None and t.netns in links \
                else None
            if xs is None:
                xs = netlink.read_xdp(netlink.ifindex_of(t.iface, netns=t.netns), netns=t.netns)
            with observe.observe(xs, root if bpffs.is_bpffs(root) else None) as ch:
                st = ch.state
        except XdpDispatchError as e:
            plans.append(InterfacePlan(t.iface, t.netns, t.mode, error=e.message))
            continue
        p = replace(plan_interface(t.iface, t.netns, t.mode, t.desired, st, owners,
                                   exclusive, source=os.path.abspath(cfg.source),
                                   dispatcher_version=t.dispatcher_version),
                    dispatch=t.dispatch, stats=t.stats, inline=t.inline)
        if st.kind == "dispatcher" and bpffs.is_bpffs(root):
            p = replace(p, observed_stats=_freplace_stats(root, t.netns, st.ifindex))
        plans.append(p)
    return plans


def _freplace_stats(root: str, netns: str | None, ifindex: int) -> str:
    """A freplace chain's counters setting (``chain.fexit``)."""
    from dispatcher.chain import fexit

    if not os.path.isdir(fexit.stats_dir(root)):
        return "off"
    return fexit.mode(root, fexit.netns_id(netns), ifindex)


def _refresh_counters(plans: list[InterfacePlan]) -> None:
    """Counted freplace chains: counters for components another tool added meanwhile."""
    from dispatcher.chain import fexit, router

    root = bpffs.bpffs_root()
    if not os.path.isdir(fexit.stats_dir(root)):
        return
    for p in plans:
        if not p.error:
            router.refresh_counters(root, p.netns, p.iface)


def make_plan(path: str, *, exclusive: bool = False) -> tuple[ChainConfig, list[InterfacePlan],
                                                                dict[str, ObjectSpec]]:
    cfg, targets, objects = prepare(path)
    return cfg, observe_plan(cfg, targets, exclusive=exclusive), objects


class _Recorder:
    """Writes the record of this apply (``applied.py``) when it ends with nothing left to
    change: the config's bytes are hashed before it is parsed, and the plan is made from
    link dumps that are the system's fingerprint, compared again before writing, so a
    change made meanwhile keeps the record from being written."""

    def __init__(self, path: str, exclusive: bool, text: bytes | None = None,
                 partial: bool = False) -> None:
        self.applied = applied
        self.path, self.exclusive = path, exclusive
        try:
            self.config_sha: str | None = applied.file_sha(path)
        except OSError:
            self.config_sha = None
        if partial or (text is not None and hashlib.sha256(text).hexdigest() != self.config_sha):
            self.config_sha = None     # not the file as it is, or not all of it: no record
        self.sys_before: dict[str, object] | None = None
        applied.forget(path)

    def fingerprint(self, targets: list[_Target], links: Links | None = None) -> Links:
        """Dump the targets' namespaces (unless given) and fingerprint the system from those
        dumps; returns the dumps, to plan from."""
        links = {} if links is None else links
        try:
            self.sys_before = self.applied.system([(t.netns, t.iface) for t in targets], links)
        except (OSError, XdpDispatchError):
            self.sys_before = None
        return links

    def remember(self, cfg: ChainConfig, plans: list[InterfacePlan],
                 shas: dict[str, str]) -> None:
        """``shas``: each object's hash, of the bytes that were parsed for the plan."""
        if self.config_sha is None or self.sys_before is None:
            return
        objs = [p.object for i in cfg.interfaces for p in i.programs]
        pins = [p.pin_maps for i in cfg.interfaces for p in i.programs if p.enabled and p.pin_maps]
        try:
            ins = self.applied.inputs(self.path, self.applied.file_sha(self.path), objs, pins,
                                      self.exclusive, shas)
        except OSError:
            return
        if ins["config_sha256"] != self.config_sha:
            return       # the file changed while this apply ran: no record
        self.applied.remember(self.path, ins, self.sys_before, plans)


def apply(path: str, *, exclusive: bool = False, dry_run: bool = False,
          notice: Callable[[str], None] | None = None, text: bytes | None = None,
          only: Scope | None = None, missing_ok: bool = False,
          links: Links | None = None) -> list[InterfacePlan]:
    """Make each interface match the config; returns the plans that were carried out.
    When nothing is left to change, records that (``applied.py``) so that the next apply
    of the unchanged file against the unchanged system can say so without re-planning.
    ``text``: the config's bytes as already read (the agent's last good copy); ``only``:
    change only these (netns, interface) targets and touch no other interface;
    ``missing_ok``: names and patterns that match no interface are not errors; ``links``:
    fresh link states to plan from (with ``only``: just the targets', so that applying
    one new interface costs the same however many a namespace has)."""
    rec = _Recorder(path, exclusive, text, partial=only is not None)
    links = {} if links is None else links
    shas: dict[str, str] = {}
    cfg, targets, objects = prepare(path, links, shas, text=text, missing_ok=missing_ok,
                                    only=only)
    rec.fingerprint(targets, links)
    plans = observe_plan(cfg, targets, exclusive=exclusive, links=links)
    errors = [f"{p.iface}: {p.error}" for p in plans if p.error]
    if errors:
        raise ConfigError(f"{cfg.source}: cannot read " + "; ".join(errors))
    if not any(p.changed for p in plans):
        if not dry_run:
            _refresh_counters(plans)
        rec.remember(cfg, plans, shas)
        return plans
    if dry_run:
        return plans
    require_root("applying a config")
    root = bpffs.bpffs_root()
    root = bpffs.ensure_bpffs(notice=notice) if root == bpffs.DEFAULT_BPFFS else \
        bpffs.ensure_bpffs(root, mount=False)
    # All or nothing: each interface's change stays pending (the old chain held, see
    # PendingChange) until every interface has been changed; then all commit. If
    # interface k fails, interfaces 0..k-1 are put back exactly, newest first.
    pending: list[tuple[InterfacePlan, PendingChange]] = []
    owners_new: list[Owner] = []
    dropped: set[int] = set()
    intent = _Intent()
    try:
        for p in plans:
            if not p.changed:
                continue
            try:
                pc = _begin_interface(p, objects, root, notice, intent,
                                      source=os.path.abspath(cfg.source))
            except XdpDispatchError as e:
                err = _failed_at(e, p, pending)
                intent.undo()
                raise err from None
            pending.append((p, pc))
            owners_new += _owners(p, pc.result, os.path.abspath(cfg.source))
            dropped |= {i.prog_id for i in p.items if i.action in (REMOVE, UPGRADE) and i.prog_id}
    except BaseException:
        if pending:      # not yet restored (a KeyboardInterrupt or a bug, not an apply error)
            _restore(pending)
            intent.undo()
        raise
    for _p, pc in pending:
        pc.commit()
    ownership.update(owners_new, dropped)
    _refresh_counters(plans)
    if rec.config_sha is None:
        return plans     # no record can be written (partial, or not the file as it is)
    # The result, planned afresh, must have nothing left to change: record it for re-applies.
    links = rec.fingerprint(targets)
    rec.remember(cfg, observe_plan(cfg, targets, exclusive=exclusive, links=links), shas)
    return plans


class _Intent:
    """Ownership records written right before each swap, so that a crash between a swap
    and the end of the apply leaves programs the next run recognises as this config's
    (records of programs that are never attached go with their programs). Undone
    exactly if the whole apply is rolled back."""

    def __init__(self) -> None:
        self.before: bytes | None = None
        self.written = False

    def record(self, owners: list[Owner]) -> None:
        if not self.written:
            self.before, self.written = ownership.snapshot(), True
        ownership.update(owners, set())

    def undo(self) -> None:
        if self.written:
            ownership.restore(self.before)
            self.written = False


def _begin_interface(p: InterfacePlan, objects: dict[str, ObjectSpec], root: str,
                     notice: Callable[[str], None] | None, intent: _Intent,
                     source: str = "") -> PendingChange:
    if p.linked:
        # A linked chain is rebuilt as a whole: remove by name what goes or changes, add
        # what comes or changes (an unchanged object keeps its unpinned maps by id).
        redo = (ADD, UPGRADE, UPDATE)
        names = {i.name for i in p.items if i.action in (REMOVE, UPGRADE, UPDATE)}
        new_l = []
        for i in p.items:
            if i.action in redo and i.desired is not None:
                new_l.append(replace(new_program(objects[i.desired.obj_path], i.desired),
                                     source=source))
        return router.begin(request(p.iface, mode=p.mode, add=new_l, remove_names=names,
                                    netns=p.netns, root=root, dispatch=p.dispatch,
                                    stats=p.stats, inline=p.inline),
                            notice=notice)   # a linked chain's description names its owners
    add_items = [i for i in p.items if i.action in (ADD, UPGRADE)]
    new = []
    for i in add_items:
        assert i.desired is not None
        new.append(replace(new_program(objects[i.desired.obj_path], i.desired), source=source))
    remove = {i.prog_id for i in p.items if i.action in (REMOVE, UPGRADE) and i.prog_id}
    upd = {i.prog_id: (i.desired.priority, i.desired.actions) for i in p.items
           if i.action == UPDATE and i.prog_id and i.desired}

    return router.begin(request(p.iface, mode=p.mode, add=new, remove_ids=remove, update=upd,
                                netns=p.netns, root=root, dispatch=p.dispatch,
                                stats=p.stats, inline=p.inline,
                                dispatcher_version=p.dispatcher_version),
                        notice=notice,
                        before_swap=lambda preview: intent.record(_owners(p, preview, source)))


def _owners(p: InterfacePlan, res: ChangeResult, source: str) -> list[Owner]:
    if res.kind == "linked":
        return []        # a linked chain's description records who manages each slot
    add_items = [i for i in p.items if i.action in (ADD, UPGRADE)]
    owners_new = []
    for i, pid in zip(add_items, res.new_ids, strict=True):
        d = i.desired
        assert d is not None
        owners_new.append(Owner(pid, p.iface, p.netns, d.name, d.obj_path, d.sha256, d.program,
                                d.priority, d.actions, source, d.settings))
    for i in p.items:
        if i.action == UPDATE and i.prog_id and i.desired:
            d = i.desired
            owners_new.append(Owner(i.prog_id, p.iface, p.netns, d.name, d.obj_path, d.sha256,
                                    d.program, d.priority, d.actions, source, d.settings))
    return owners_new


def _where(p: InterfacePlan) -> str:
    return p.iface + (f" (netns {p.netns})" if p.netns else "")


def _restore(pending: list[tuple[InterfacePlan, PendingChange]]) -> str:
    """Roll back every pending change, newest first; empties ``pending``. Returns a clause
    for the error message saying what was restored (and what could not be)."""
    restored, failed = [], []
    while pending:
        p, pc = pending.pop()
        try:
            pc.rollback()
            restored.append(_where(p))
        except XdpDispatchError as e:
            failed.append(f"could not restore {_where(p)}: {e.message}")
    restored.reverse()
    failed.reverse()
    out = []
    if restored:
        out.append(f"restored {', '.join(restored)} to "
                   + ("its previous chain" if len(restored) == 1 else "their previous chains"))
    out += failed
    return "; ".join(out)


def _failed_at(e: XdpDispatchError, p: InterfacePlan,
               pending: list[tuple[InterfacePlan, PendingChange]]) -> XdpDispatchError:
    """``e`` (same class, exit code and hint) naming the interface it happened on and
    what became of the interfaces this apply had already changed."""
    where = _where(p)
    named = e.message.startswith((p.iface + ":", where + ":"))   # the chain layer named it
    msg = e.message if named else f"{where}: {e.message}"
    msg = f"apply failed on {msg}"
    undone = _restore(pending)
    msg += f" ({undone})" if undone else " (no interface was changed)"
    e.message = msg
    e.args = (msg,)
    return e
