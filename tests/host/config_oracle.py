"""What a chain must look like, read from the config file itself, not from our code.

The expected chain of an interface: its enabled programs, each as (priority, kernel
program name, chain-call actions), sorted the way libxdp sorts a dispatcher's slots:
priority, then name. Names come from the object's ELF symbol table read by binutils'
``readelf`` (not our ELF reader); priorities and actions from the file, else from the
object's run config (a table of the examples that declare one, below), else libxdp's
defaults. Programs with equal priority and name are tie-broken by what is loaded and by
instruction count: the oracle leaves their relative order open (compared as a group).

The chain observed is read back by our ``status`` and, independently, by libxdp's
``xdp-loader status`` and iproute2 (the attached program id).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Row = tuple[int, str, tuple[str, ...]]

XDP_ACTIONS = ("XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT")
LIBXDP_DEFAULT = (50, ("XDP_PASS",))       # libxdp: priority 50, continue on XDP_PASS
# Examples whose C source declares XDP_RUN_CONFIG (grep XDP_RUN_CONFIG bpf/examples/*.c).
RUN_CONFIG = {"xdp_runcfg": (10, ("XDP_DROP", "XDP_PASS"))}


def action_names(names: Iterable[str]) -> tuple[str, ...]:
    """``pass``/``xdp_pass``/``XDP_PASS`` -> canonical names, in action-number order."""
    up = {n.strip().upper() for n in names}
    up = {n if n.startswith("XDP_") else "XDP_" + n for n in up}
    return tuple(a for a in XDP_ACTIONS if a in up)


def elf_program_name(obj: str, program: str | None = None, section: str | None = None) -> str:
    """The XDP function of ``obj`` by binutils' readelf: ``program`` if given (checked to
    exist), else the function in ``section``, else the first function in an xdp* section
    (libbpf's program order: section index, then offset; what loaders take by default)."""
    secs = {}
    for line in subprocess.run(["readelf", "-SW", obj], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        f = line.replace("[ ", "[").split()
        if f and f[0].startswith("[") and f[0].endswith("]") and f[0][1:-1].isdigit():
            secs[f[0][1:-1]] = f[1]
    funcs = []
    for line in subprocess.run(["readelf", "-sW", obj], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        f = line.split()
        if len(f) == 8 and f[3] == "FUNC" and f[4] == "GLOBAL" and f[6].isdigit():
            funcs.append((f[7], secs.get(f[6], ""), int(f[6]), int(f[1], 16)))
    if program is not None:
        assert program in [f[0] for f in funcs], (obj, program, funcs)
        return program
    cands = sorted((ndx, off, n) for n, s, ndx, off in funcs
                   if (s == section if section else s.startswith("xdp")))
    assert cands, (obj, section, funcs)
    return cands[0][2]


def expected_chain(programs: Sequence[Mapping[str, Any]], base_dir: str = "") -> list[Row]:
    """The enabled programs of one interface entry, in libxdp's run order."""
    rows = []
    for p in programs:
        if not p.get("enabled", True):
            continue
        obj = os.path.join(base_dir, p["object"])
        name = elf_program_name(obj, p.get("program"), p.get("section"))
        prio, acts = RUN_CONFIG.get(name, LIBXDP_DEFAULT)
        if p.get("priority") is not None:
            prio = p["priority"]
        if p.get("chain_call_actions") is not None:
            acts = action_names(p["chain_call_actions"])
        rows.append((prio, name, acts))
    return sorted(rows)


def _ties_open(rows: Sequence[Row]) -> list[Row]:
    """Rows with equal (priority, name) sorted among themselves; the rest kept in order."""
    out: list[Row] = []
    for _k, grp in itertools.groupby(rows, key=lambda r: (r[0], r[1])):
        out += sorted(grp)
    return out


def ours(st: Mapping[str, Any]) -> list[Row]:
    """The chain as our status JSON shows it."""
    return [(p["priority"], p["name"], tuple(p["chain_call_actions"])) for p in st["programs"]]


def xdp_loader_status(iface: str) -> dict[str, Any]:
    """``xdp-loader status IFACE``: the attached id and the dispatcher's rows, if any."""
    out = subprocess.run(["xdp-loader", "status", iface], capture_output=True, text=True,
                         check=True).stdout
    res: dict[str, Any] = {"programs": []}
    for line in out.splitlines():
        f = line.split()
        if line.startswith(iface) and len(f) >= 5:
            res["name"], res["id"] = f[1], int(f[3])
        elif line.startswith(" =>"):
            # " =>  PRIO  NAME  ID  TAG  ACTIONS"
            res["programs"].append((int(f[1]), f[2], int(f[3]), f[4], f[5] if len(f) > 5 else ""))
    return res


def assert_chain_matches(iface: str, programs: Sequence[Mapping[str, Any]], st: Mapping[str, Any],
                         *, base_dir: str = "", netns: str | None = None) -> None:
    """Our status ``st`` of ``iface``, iproute2 and xdp-loader agree with the config."""
    from tests.host import nettools

    want = expected_chain(programs, base_dir)
    attached = nettools.xdp_attached(iface, netns)
    if not want:
        assert st["kind"] == "none" and attached is None, (st, attached)
        return
    assert attached is not None, f"{iface}: nothing attached (iproute2)"
    if st["kind"] == "legacy":                  # one program attached as it is
        assert len(want) == 1 and st["main"]["name"] == want[0][1], (st, want)
        top_id = st["main"]["id"]
    else:
        assert st["kind"] in ("dispatcher", "linked"), st
        assert _ties_open(ours(st)) == want, (ours(st), want)
        top_id = st["dispatcher"]["id"]
    attached_ids = {v.get("prog", {}).get("id") for v in
                    ([attached] + [a for a in attached.get("attached", [])])}
    assert top_id in attached_ids, (top_id, attached)
    # libxdp's reading; `ip netns exec` gives xdp-loader its own /sys, without our bpffs.
    if netns is None and st["kind"] == "dispatcher":
        if shutil.which("xdp-loader") is None:
            import pytest

            pytest.skip("xdp-loader (xdp-tools) not installed: no libxdp oracle")
        theirs = xdp_loader_status(iface)
        assert theirs.get("id") == top_id, theirs
        rows = [(p, n, tuple(a.split(",")) if a else ()) for p, n, _i, _t, a in theirs["programs"]]
        # libxdp (1.3.1, seen in the 6.1 VM) reads a slot whose chain-call bitmap is empty as
        # its default, XDP_PASS: what it would write back if it rebuilt the chain.
        libxdp_want = sorted((p, n, a or LIBXDP_DEFAULT[1]) for p, n, a in want)
        assert _ties_open(rows) == _ties_open(libxdp_want), (rows, libxdp_want)
