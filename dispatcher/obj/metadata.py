"""libxdp metadata carried in BTF (pure): ``__uint()`` members, the run config of a
program (``.xdp_run_config``) and the dispatcher's version marker (``xdp_metadata``).

Kept apart from the ELF reader so that code reading loaded programs' BTF (status)
does not import pyelftools.
"""

from __future__ import annotations

from dispatcher.errors import ObjectFileError
from dispatcher.obj.btf import Btf, BtfKind
from dispatcher.obj.spec import XDP_ACTIONS, RunConfig


def uint_member(btf: Btf, type_id: int) -> int | None:
    """Value of a ``__uint(name, N)`` member: PTR -> ARRAY with nelems N."""
    t = btf.types[type_id]
    if t.kind != BtfKind.PTR:
        return None
    arr = btf.types[btf.skip_mods_and_typedefs(t.size_or_type)]
    if arr.kind != BtfKind.ARRAY or arr.array is None:
        return None
    return arr.array.nelems



def parse_run_config(btf: Btf, func_name: str, path: str = "") -> RunConfig:
    """libxdp's ``.xdp_run_config`` for one program (defaults first, then the declared members)."""
    ds = btf.find(".xdp_run_config", BtfKind.DATASEC)
    if ds is None:
        return RunConfig()
    want = "_" + func_name
    for si in btf.types[ds].secinfos:
        var = btf.types[si.type_id]
        if var.kind != BtfKind.VAR or var.name != want:
            continue
        st = btf.types[btf.skip_mods_and_typedefs(var.size_or_type)]
        if st.kind != BtfKind.STRUCT:
            return RunConfig()
        prio, actions = RunConfig().priority, RunConfig().chain_call_actions
        for m in st.members:
            v = uint_member(btf, m.type_id)
            if v is None:
                raise ObjectFileError(f"{path}: run config of {func_name}: member '{m.name}' is not an __uint() value")
            if m.name == "priority":
                prio = v
            elif m.name in XDP_ACTIONS:
                bit = 1 << XDP_ACTIONS.index(m.name)
                actions = (actions | bit) if v else (actions & ~bit)
            else:
                raise ObjectFileError(
                    f"{path}: run config of {func_name}: unknown member '{m.name}' "
                    f"(expected priority or one of {', '.join(XDP_ACTIONS)})")
        return RunConfig(priority=prio, chain_call_actions=actions, declared=True)
    return RunConfig()


def dispatcher_version(btf: Btf) -> int:
    ds = btf.find("xdp_metadata", BtfKind.DATASEC)
    if ds is None:
        return 0
    for si in btf.types[ds].secinfos:
        var = btf.types[si.type_id]
        if var.kind == BtfKind.VAR and var.name == "dispatcher_version":
            v = uint_member(btf, btf.skip_mods_and_typedefs(var.size_or_type))
            return v or 0
    return 0
