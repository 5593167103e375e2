"""Text and JSON renderings (pure: values in, strings out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # `status` renders without the object layer; disasm imports it itself
    from dispatcher.obj.btf import Btf
    from dispatcher.obj.link import LinkedProgram
    from dispatcher.obj.spec import ObjectSpec, ProgramSpec


def inspect_dict(obj: ObjectSpec) -> dict[str, Any]:
    return {
        "path": obj.path,
        "license": obj.license,
        "btf": obj.btf is not None,
        "btf_ext": obj.btf_ext is not None,
        "programs": [
            {
                "name": p.name,
                "section": p.section,
                "type": p.kind,
                "insns": p.function.insn_count,
                "frags": p.frags,
                "attach_func": p.attach_func or None,
                "run_config": {
                    "priority": p.run_config.priority,
                    "chain_call_actions": list(p.run_config.action_names),
                    "declared": p.run_config.declared,
                } if p.has_run_config else None,
                "skipped": skip_reason(obj, p),
            }
            for p in obj.programs
        ],
        "maps": [
            {
                "name": m.name,
                "type": m.type_name,
                "key_size": m.key_size,
                "value_size": m.value_size,
                "max_entries": m.max_entries,
                "flags": m.flags,
                "pinning": "by_name" if m.pinning else "none",
                "kind": m.kind,
            }
            for m in obj.maps
        ],
        "global_data": [
            {"section": m.section, "size": m.value_size, "read_only": m.freeze}
            for m in obj.maps if m.kind == "data"
        ],
        "subprograms": [f.name for f in obj.functions if f.section == ".text"],
        "dispatcher_version": obj.dispatcher_version or None,
    }


def skip_reason(obj: ObjectSpec, p: ProgramSpec) -> str | None:
    """Why ``load``/configs cannot attach this program to an interface, or None."""
    problem = p.interface_problem
    if problem is None:
        from dispatcher.obj.link import extern_problem

        return extern_problem(obj, p)
    if p.prog_type == 0:
        return (f"section '{p.section}' names no program type; load it as XDP with "
                "--prog-type xdp (config: prog_type: xdp)")
    if problem == "is not an XDP program":
        return f"not an XDP program ({p.kind})"
    return problem.removeprefix("is a ")


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for r in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return out


def inspect_text(obj: ObjectSpec) -> str:
    d = inspect_dict(obj)
    lines = [f"Object {obj.path}", f"  license: {obj.license or '(none)'}",
             f"  BTF: {'yes' if obj.btf else 'no'}"
             + (" (with .BTF.ext)" if obj.btf_ext else "")]
    if obj.dispatcher_version:
        lines.append(f"  xdp_metadata: dispatcher version {obj.dispatcher_version}")
    lines.append("")
    lines.append("Programs:")
    if obj.programs:
        rows = []
        for p in d["programs"]:
            rc = p["run_config"]
            if rc is None:
                cfg = "-"
            else:
                cfg = f"prio {rc['priority']}, {','.join(rc['chain_call_actions']) or '-'}"
                if not rc["declared"]:
                    cfg += " (default)"
            rows.append([p["name"], p["section"], p["type"], str(p["insns"]),
                         "yes" if p["frags"] else "no", cfg])
        lines += ["  " + ln for ln in _table(rows, ["NAME", "SECTION", "TYPE", "INSNS", "FRAGS", "RUN CONFIG"])]
        skipped = [(p["name"], p["skipped"]) for p in d["programs"] if p["skipped"]]
        if skipped:
            lines.append("  Skipped by load and configs:")
            lines += [f"    {name}: {why}" for name, why in skipped]
    else:
        lines.append("  (none)")
    lines.append("")
    lines.append("Maps:")
    if obj.maps:
        rows = [[m["name"], m["type"], str(m["key_size"]), str(m["value_size"]), str(m["max_entries"]),
                 f"0x{m['flags']:x}", m["pinning"]] for m in d["maps"]]
        lines += ["  " + ln for ln in _table(rows, ["NAME", "TYPE", "KEY", "VALUE", "MAX", "FLAGS", "PINNING"])]
    else:
        lines.append("  (none)")
    if d["global_data"]:
        lines.append("")
        lines.append("Global data:")
        for g in d["global_data"]:
            lines.append(f"  {g['section']}: {g['size']} bytes{' (read-only, frozen)' if g['read_only'] else ''}")
    if d["subprograms"]:
        lines.append("")
        lines.append("Subprograms (.text): " + ", ".join(d["subprograms"]))
    return "\n".join(lines) + "\n"


def _source_lines(btf: Btf | None, linked: LinkedProgram) -> dict[int, str]:
    if btf is None:
        return {}
    out: dict[int, str] = {}
    for li in linked.line_info:
        text = btf.string_at(li.line_off).strip()
        if text:
            out[li.insn_off] = f"; {text}"
    return out


def disasm_text(obj: ObjectSpec, prog: ProgramSpec) -> str:
    """Instructions of one linked program, interleaved with source lines (like llvm-objdump -S).

    Map references are shown unresolved (fd 0): this is the object, not a loaded program.
    """
    from dispatcher.obj.insn import decode, disasm  # only `inspect --disasm` links and decodes
    from dispatcher.obj.link import link_program

    linked = link_program(obj, prog, {m.name: 0 for m in obj.maps})
    src = _source_lines(obj.btf, linked)
    starts = {start: name for name, start in linked.pieces}
    out = [f"{prog.section}/{prog.name}: {linked.insn_count} instructions"]
    last_src = None
    for idx, text in disasm(decode(linked.insns)):
        if idx in starts:
            out.append("")
            out.append(f"{starts[idx]}:")
        s = src.get(idx)
        if s is not None and s != last_src:
            out.append(s)
            last_src = s
        out.append(f"{idx:6d}: {text}")
    return "\n".join(out) + "\n"


def interface_modes_text(d: Mapping[str, Any]) -> str:
    """One line for ``features IFACE``'s interface probe (``probes.interface_modes``)."""
    def mark(v: Any) -> str:
        return "unknown" if v is None else "yes" if v else "no"

    line = (f"{d.get('name')} (ifindex {d.get('ifindex')}): "
            + ", ".join(f"{m} {mark(d.get(m))}" for m in ("skb", "native", "hw"))
            + f"; attached: {d.get('attached_mode') or 'none'}")
    return line + (f" ({d['detail']})" if d.get("detail") else "")


# -- status ------------------------------------------------------------------------------

def status_text(states: list[Any], managed: Mapping[int, str | None] | None = None) -> str:
    """``xdp-loader status`` layout (same columns, widths and rule), plus the dispatcher's
    protocol version at the end of its row and any problems found.

    With ``managed`` (program id -> who manages it, see ``managed_by``), a last column
    "Managed by" follows the chain actions: the config file (or ``xdp-dispatch``) for
    programs this tool recorded, ``-`` for the others; blank on the dispatcher's row."""
    out = ["CURRENT XDP PROGRAM STATUS:", ""]
    labels: dict[int, str] = {}          # line index -> managed-by cell
    packets: dict[int, str] = {}         # line index -> packets cell (linked chains with stats)
    with_packets = any(c.packets is not None for st in states for c in st.programs)
    # xdp-loader's widths, grown to fit long interface/program names and ids
    ok = [st for st in states if not st.error]
    wi = max([16, *(len(st.name) for st in states)])
    wn = max([17, *(len(p.full_name) for st in ok for p in (st.main, st.hw) if p is not None),
              *(len(c.name) + 1 for st in ok for c in st.programs)])
    wid = max([4, *(len(str(p.id)) for st in ok for p in (st.main, st.hw) if p is not None),
               *(len(str(c.id or "-")) for st in ok for c in st.programs)])

    def row(line: str, prog_id: int | None) -> None:
        if managed is not None:
            labels[len(out)] = "" if prog_id is None else (managed.get(prog_id) or "-")
        out.append(line.rstrip())

    def prog_row(iface: str, name: str, mode: str, pid: int, tag: str) -> str:
        return f"{iface:<{wi}} {'':<5} {name:<{wn}} {mode:<8} {pid:<{wid}} {tag:<17}"

    row(f"{'Interface':<{wi}} {'Prio':<5} {'Program name':<{wn}} {'Mode':<8} {'ID':<{wid}} "
        f"{'Tag':<17} Chain actions", None)
    if managed is not None:
        labels[len(out) - 1] = "Managed by"
    if with_packets:
        packets[len(out) - 1] = "Packets"
    rule = len(out)
    rule_width = 86 + (wi - 16) + (wn - 17) + (wid - 4)
    out.append("-" * rule_width)
    for st in states:
        if st.error:
            out.append(f"{st.name:<{wi + 6}} <error: {st.error}>")
            continue
        if st.hw is not None:
            row(prog_row(st.name, st.hw.full_name, "hw", st.hw.id, st.hw.tag), st.hw.id)
        if st.main is None:
            if st.hw is None:
                out.append(f"{st.name:<{wi + 6}} <No XDP program loaded!>")
            continue
        line = prog_row("" if st.hw else st.name, st.main.full_name, st.mode or "", st.main.id,
                        st.main.tag)
        is_disp = st.kind == "dispatcher" and st.dispatcher is not None
        if is_disp:
            line += f" (dispatcher v{st.dispatcher.version})"
        elif st.kind == "linked":
            line += " (linked chain)"
        row(line, None if is_disp or st.kind == "linked" else st.main.id)
        for c in st.programs:
            row(f"{' =>':<{wi}} {c.priority:<5}  {c.name:<{wn - 1}} {'':<8} {c.id or '-':<{wid}} "
                f"{c.tag or '-':<17} {','.join(c.chain_call_actions)}", c.id)
            if c.packets is not None:
                packets[len(out) - 1] = str(c.packets)
            if managed is not None and not c.id:
                # A linked chain's slots are ours by construction; the description says
                # which config file (if any) put them there.
                labels[len(out) - 1] = _linked_manager(c)
        compat = st.libxdp() if is_disp else None
        if compat is not None:
            out.append(f"{'':16s}   {compat.describe(st.dispatcher.version)}")
        for p in st.problems:
            out.append(f"{'':{wi}s} ! {p}")
    if packets:              # a column after the chain actions, before "Managed by"
        width = max(len(out[i]) for i in packets)
        for i, cell in packets.items():
            out[i] = out[i].ljust(width) + "  " + cell.rjust(12)
        rule_width = max(rule_width, max(len(out[i]) for i in packets))
        out[rule] = "-" * rule_width
    if labels:
        width = max(len(out[i]) for i in labels)
        for i, cell in labels.items():
            out[i] = (out[i].ljust(width) + "  " + cell).rstrip()
        out[rule] = "-" * max(rule_width, max(len(out[i]) for i in labels))
    out.append("")
    return "\n".join(out) + "\n"


def _linked_manager(c: Any) -> str:
    return str(getattr(c, "source", "") or "xdp-dispatch")


def status_json(states: list[Any], managed: Mapping[int, str | None] | None = None
                ) -> list[dict[str, Any]]:
    """``status --json`` interfaces; with ``managed``, each program (and a directly attached
    ``main``) gains ``managed_by``: the config file or "xdp-dispatch", null if not ours."""
    out = []
    for st in states:
        d = st.to_json()
        if managed is not None:
            for prog, comp in zip(d.get("programs") or [], st.programs, strict=False):
                prog["managed_by"] = (managed.get(prog["id"]) if prog["id"]
                                      else _linked_manager(comp))
            if isinstance(d.get("main"), dict):
                d["main"]["managed_by"] = managed.get(d["main"]["id"])
        out.append(d)
    return out


def drift_text(drifts: list[Any], source: str) -> str:
    """Readable drift (``status --config``): one block per interface, one line per item."""
    out = [f"DRIFT AGAINST {source}:", ""]
    n = 0
    for d in drifts:
        where = d.iface + (f" (netns {d.netns})" if d.netns else "")
        if d.error:
            out.append(f"{where}: error: {d.error}")
            continue
        out.append(f"{where} [{d.mode}]: {'drift' if d.drifted else 'no drift'}")
        for i in d.items:
            ident = f"id {i.prog_id}" if i.prog_id else ""
            out.append(f"  {i.kind:8s} {i.name:20s} {ident:10s} {i.detail}".rstrip())
            if i.kind != "foreign":
                n += 1
    out.append(f"Drift: {n} difference(s) on {sum(1 for d in drifts if d.drifted)} "
               "interface(s)." if n else "No drift.")
    return "\n".join(out) + "\n"
