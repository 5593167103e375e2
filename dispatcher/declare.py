"""``plan`` and ``apply`` of a config file: resolve what it asks for, observe the
interfaces, compute the difference (``plan.py``) and make it with one chain change per
interface (``chain.py``), recording which components are ours (``ownership.py``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from . import chain, netlink, observe, ownership
from .config import ChainConfig, expand_names, load_and_check
from .errors import ConfigError, XdpDispatchError
from .obj.elf import read_object
from .obj.spec import ObjectSpec, names_to_actions
from .plan import ADD, REMOVE, UPDATE, UPGRADE, DesiredProgram, InterfacePlan, Owner, plan_interface


@dataclass
class _Target:
    iface: str
    netns: str | None
    mode: str
    desired: list[DesiredProgram]


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def resolve(cfg: ChainConfig, objects: dict[str, ObjectSpec]) -> list[_Target]:
    """Interfaces (names expanded) and their enabled programs, with defaults from objects."""
    out = []
    links: dict[str | None, list[str]] = {}
    for icfg in cfg.interfaces:
        if icfg.netns not in links:
            links[icfg.netns] = [x.ifname for x in netlink.list_links(netns=icfg.netns)]
        names = expand_names(icfg.name, links[icfg.netns])
        desired = []
        for p in icfg.programs:
            if not p.enabled:
                continue
            obj = objects.get(p.object) or objects.setdefault(p.object, read_object(p.object))
            prog = obj.program(name=p.program, section=p.section) if (p.program or p.section) \
                else next(x for x in obj.programs if x.prog_type == 6)
            prio = p.priority if p.priority is not None else prog.run_config.priority
            acts = names_to_actions(p.chain_call_actions) if p.chain_call_actions is not None \
                else prog.run_config.chain_call_actions
            desired.append(DesiredProgram(p.name, p.object, _sha(p.object), prog.name, prio, acts))
        for n in names:
            out.append(_Target(n, icfg.netns, icfg.mode, desired))
    return out


def make_plan(path: str, *, exclusive: bool = False) -> tuple[ChainConfig, list[InterfacePlan],
                                                                dict[str, ObjectSpec]]:
    from .syscalls import bpffs

    cfg = load_and_check(path)
    objects: dict[str, ObjectSpec] = {}
    targets = resolve(cfg, objects)
    owners = ownership.read()
    root = bpffs.bpffs_root()
    plans = []
    for t in targets:
        try:
            xs = netlink.read_xdp(netlink.ifindex_of(t.iface, netns=t.netns), netns=t.netns)
            with observe.observe(xs, root if bpffs.is_bpffs(root) else None) as ch:
                st = ch.state
        except XdpDispatchError as e:
            plans.append(InterfacePlan(t.iface, t.netns, t.mode, error=e.message))
            continue
        plans.append(plan_interface(t.iface, t.netns, t.mode, t.desired, st, owners, exclusive))
    return cfg, plans, objects


def apply(path: str, *, exclusive: bool = False, dry_run: bool = False,
          notice: Callable[[str], None] | None = None) -> list[InterfacePlan]:
    """Make each interface match the config; returns the plans that were carried out."""
    from .privileges import require_root
    from .syscalls import bpffs

    cfg, plans, objects = make_plan(path, exclusive=exclusive)
    errors = [f"{p.iface}: {p.error}" for p in plans if p.error]
    if errors:
        raise ConfigError(f"{cfg.source}: cannot read " + "; ".join(errors))
    if dry_run or not any(p.changed for p in plans):
        return plans
    require_root("applying a config")
    root = bpffs.bpffs_root()
    root = bpffs.ensure_bpffs(notice=notice) if root == bpffs.DEFAULT_BPFFS else \
        bpffs.ensure_bpffs(root, mount=False)
    for p in plans:
        if not p.changed:
            continue
        add_items = [i for i in p.items if i.action in (ADD, UPGRADE)]
        new = []
        for i in add_items:
            assert i.desired is not None
            obj = objects[i.desired.obj_path]
            new.append(chain.NewProgram(obj, obj.program(name=i.desired.program),
                                        i.desired.priority, i.desired.actions))
        remove = {i.prog_id for i in p.items if i.action in (REMOVE, UPGRADE) and i.prog_id}
        upd = {i.prog_id: (i.desired.priority, i.desired.actions) for i in p.items
               if i.action == UPDATE and i.prog_id and i.desired}
        res = chain.change(p.iface, mode=p.mode, add=new, remove_ids=remove, update=upd,
                           netns=p.netns, root=root, notice=notice)
        owners_new = []
        for i, pid in zip(add_items, res.new_ids, strict=True):
            d = i.desired
            assert d is not None
            owners_new.append(Owner(pid, p.iface, p.netns, d.name, d.obj_path, d.sha256, d.program,
                                    d.priority, d.actions, cfg.source))
        for i in p.items:
            if i.action == UPDATE and i.prog_id and i.desired:
                d = i.desired
                owners_new.append(Owner(i.prog_id, p.iface, p.netns, d.name, d.obj_path, d.sha256,
                                        d.program, d.priority, d.actions, cfg.source))
        ownership.update(owners_new, remove)
    return plans
