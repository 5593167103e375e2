"""``export``: the live chains of interfaces written as a config file (pure: observed
states + ownership records in, YAML text out).

The file is made so that ``check`` accepts it and ``plan`` of it, on the machine it was
exported from, is empty:

- a linked chain's slots carry everything a config entry has (name = the slot label,
  object, program, settings, priority, actions) in the chain's description, so each
  slot becomes an entry, whoever loaded it (``load`` or another config file);
- a dispatcher's (freplace) component recorded in the ownership records (loaded by
  ``apply``) becomes the entry the record names;
- anything else (a program loaded by xdp-loader, by ``load`` on a freplace kernel, or a
  plain program attached directly) has no known object file. It is written as a YAML
  comment with what is known (kernel name, id, tag, priority, actions), not as an entry:
  ``check`` must open every entry's object, even a disabled one, so an entry with no
  object could not be accepted. ``apply`` keeps such programs as they are (they are
  foreign to the file), so the plan stays empty; to manage one, turn the comment into
  an entry with its object.

Interfaces without an XDP program are left out unless named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dispatcher.chain.state import InterfaceState
from dispatcher.config.plan import Owner
from dispatcher.obj.actions import actions_to_names

HEADER = ("# Written by `xdp-dispatch export`: the live chains as a config file (plan of it "
          "is empty).\n"
          "# Programs whose object file is unknown are comments; apply keeps them as they "
          "are.\n")


@dataclass(frozen=True, slots=True)
class Observed:
    """One interface to export: its observed state and its network namespace."""

    state: InterfaceState
    netns: str | None = None
    named: bool = False          # named on the command line: written even without XDP


def _q(v: object) -> str:
    """A YAML scalar (JSON is valid YAML flow syntax)."""
    return json.dumps(v)


def _entry(name: str, obj: str, program: str, priority: int, actions: tuple[str, ...],
           settings: str) -> list[str]:
    out = [f"      - name: {_q(name)}",
           f"        object: {_q(obj)}",
           f"        program: {_q(program)}",
           f"        priority: {priority}",
           f"        chain_call_actions: {_q(list(actions))}"]
    s = json.loads(settings) if settings else {}
    for key in ("prog_type", "pin_maps", "frags", "globals"):
        if key in s:
            out.append(f"        {key}: {_q(s[key])}")
    return out


def _foreign(name: str, pid: int, tag: str, priority: int,
             actions: tuple[str, ...], why: str) -> list[str]:
    ident = f"id {pid}, tag {tag}" if pid else "no program id"
    return [f"      # foreign: {_q(name)} ({ident}, priority {priority}, chain_call_actions "
            f"{','.join(actions) or '-'}): {why}; apply keeps it as it is"]


def _programs(st: InterfaceState, owners: dict[int, Owner]) -> list[str]:
    out: list[str] = []
    if st.kind == "linked" and st.description is not None:
        for s in st.description.slots:
            if s.path and s.program:
                out += _entry(s.label, s.path, s.program, s.priority, s.actions, s.settings)
            else:
                out += _foreign(s.label, 0, "-", s.priority, s.actions,
                                "its object file is not in the chain's description")
    elif st.kind == "dispatcher":
        for c in st.programs:
            o = owners.get(c.id)
            if o is not None and o.iface == st.name:
                out += _entry(o.name, o.obj_path, o.program, c.priority,
                              c.chain_call_actions, o.settings)
            else:
                out += _foreign(c.name, c.id, c.tag, c.priority, c.chain_call_actions,
                                "object file unknown (not loaded by apply)")
    elif st.kind == "legacy" and st.main is not None:
        o = owners.get(st.main.id)
        if o is not None and o.iface == st.name:
            out += _entry(o.name, o.obj_path, o.program, o.priority,
                          actions_to_names(o.actions), o.settings)
        else:
            out += [f"      # foreign: {_q(st.main.full_name)} (id {st.main.id}, tag "
                    f"{st.main.tag}) attached directly (no dispatcher): object file unknown; "
                    "apply keeps it as it is"]
    return out


def export_text(interfaces: list[Observed], owners: dict[int, Owner]) -> str:
    """The config file text for ``interfaces`` (see the module's docstring)."""
    lines = [HEADER.rstrip("\n"), "version: 1", "interfaces:"]
    n = 0
    for ob in interfaces:
        st = ob.state
        if st.error:
            lines.append(f"  # {_q(st.name)}: not exported: {st.error}")
            continue
        if st.kind == "none" and not ob.named:
            continue
        if st.mode == "hw":
            lines.append(f"  # {_q(st.name)}: not exported: a program offloaded in hw mode")
            continue
        progs = _programs(st, owners)
        entries = [x for x in progs if not x.lstrip().startswith("#")]
        lines.append(f"  - name: {_q(st.name)}")
        lines.append(f"    mode: {st.mode or 'native'}")
        if ob.netns:
            lines.append(f"    netns: {_q(ob.netns)}")
        if st.kind == "linked":
            lines.append("    dispatch: linked")
            if st.description is not None:
                lines.append(f"    stats: {_q(st.description.stats)}")
        lines.append("    programs:" + ("" if entries else " []"))
        lines += progs
        n += 1
    if n == 0:
        lines[-1] = "interfaces: []"
    return "\n".join(lines) + "\n"
