"""Command-line entry point. The only module that prints or chooses exit codes.

Exit codes: 0 ok, 1 kernel/unexpected error, 2 usage/config/object error,
3 not supported, 4 conflict after retries, 5 foreign state in the way.

Imports inside functions are deliberate, all for one reason: a command imports only what
it runs (``--help`` builds the parser only; ``status`` never loads the object layer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, cast

from dispatcher.errors import UsageError, XdpDispatchError
from dispatcher.version import __version__

PROG = "xdp-dispatch"
_STRICT_HELP = ("refuse config and object files that others can write (world-writable, or "
                "in a world-writable directory without the sticky bit) instead of warning")


def _columns() -> int:
    """``shutil.get_terminal_size().columns`` (same rules), without importing shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        stdout = sys.__stdout__
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns if stdout else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter; the terminal width is found as argparse does (COLUMNS, then the
    terminal, then 80, minus 2) but without importing shutil, which argparse does for
    every ``add_argument``."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


class _Unused:
    """Stands in for the sub-parser of a command that is not being run: takes any
    definition and drops it (building every sub-parser costs more than most commands)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


def _build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``only``: the arguments of that command alone (the
    others are listed as choices with no arguments; see ``_only_command``)."""
    p = _Parser(prog=PROG, description="Run several XDP programs on one interface (libxdp-compatible).")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks for unexpected errors")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return cast(argparse.ArgumentParser, _Unused())
        return sub.add_parser(name, **kwargs)

    sp = add("inspect", help="show what a BPF object file contains")
    sp.add_argument("object", metavar="OBJ")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--disasm", action="store_true", help="disassemble each program with its source lines")
    sp.add_argument("-n", "--prog-name", help="only this program (with --disasm)")
    sp.add_argument("--strict", action="store_true", help=_STRICT_HELP)

    sp = add("load", help="add XDP programs to an interface's chain")
    sp.add_argument("iface", metavar="IFACE")
    sp.add_argument("objects", metavar="OBJ", nargs="+")
    sp.add_argument("-m", "--mode", choices=["native", "skb", "hw"], default="native",
                    help="attach mode (default: native)")
    sp.add_argument("-p", "-P", "--prio", type=int,
                    help="run priority (overrides the object's run config; -P as in xdp-loader)")
    sp.add_argument("-A", "--actions", help="chain-call actions, e.g. XDP_PASS,XDP_DROP "
                    "(overrides the object's run config)")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("-s", "--section", help="program by ELF section name")
    g.add_argument("-n", "--prog-name", help="program by function name")
    sp.add_argument("--prog-type", choices=["xdp"],
                    help="load a program whose ELF section names no type (e.g. SEC(\"tx\")) "
                         "as this type, like bpftool's `prog load ... type xdp`")
    sp.add_argument("--netns", help="network namespace of the interface (as in ip netns)")
    sp.add_argument("--force", action="store_true",
                    help="replace a plain (non-dispatcher) program that is attached")
    sp.add_argument("--dispatch", choices=["auto", "freplace", "linked"], default="auto",
                    help="how to chain programs: freplace (libxdp's dispatcher), linked (one "
                         "program linked from all of them; no freplace needed), or auto: "
                         "freplace where the kernel allows it, else linked (default)")
    sp.add_argument("--stats", choices=["off", "counts", "timing"],
                    help="per-component counters; timing adds each component's run time "
                         "(default: keep the chain's setting; a new linked chain counts, a "
                         "new freplace chain does not)")
    sp.add_argument("--inline", choices=["on", "off"],
                    help="inline each component's entry function into a linked chain's main "
                         "program, saving a call per slot (default: keep the chain's "
                         "setting; a new linked chain inlines)")
    sp.add_argument("--dispatcher-version", type=int, metavar="N",
                    help="libxdp dispatcher version of a freplace chain: 2 (read by libxdp "
                         ">= 1.3) or 3 (libxdp >= 1.6); default: an attached chain keeps "
                         "its version, a new one gets the installed libxdp's, else 2")
    sp.add_argument("-v", "--verbose", action="store_true", help="print the verifier log")
    sp.add_argument("--verifier-log", metavar="FILE", help="write the full verifier log to FILE")
    sp.add_argument("--strict", action="store_true", help=_STRICT_HELP)

    sp = add("unload", help="remove XDP programs from an interface")
    sp.add_argument("iface", metavar="IFACE")
    sp.add_argument("-i", "--id", type=int, action="append", default=[], dest="ids",
                    help="program id to remove (repeatable)")
    sp.add_argument("-n", "--name", action="append", default=[], dest="names",
                    help="component of a linked chain to remove, by name (repeatable)")
    sp.add_argument("-a", "--all", action="store_true", help="remove everything")
    sp.add_argument("--netns", help="network namespace of the interface")

    sp = add("upgrade", help="change a freplace chain's dispatcher version in one swap "
                             "(every component keeps its program id, maps and pins)")
    sp.add_argument("iface", metavar="IFACE")
    sp.add_argument("--dispatcher-version", type=int, metavar="N", required=True,
                    help="the version to write: 2 (libxdp 1.3 to 1.5 extend it) or 3 "
                         "(libxdp >= 1.6)")
    sp.add_argument("--netns", help="network namespace of the interface")

    sp = add("status", help="show the XDP programs of interfaces "
                        "(with --config: exit 0 no drift, 2 drift)")
    sp.add_argument("iface", metavar="IFACE", nargs="?")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--netns", help="network namespace")
    sp.add_argument("--config", metavar="FILE",
                    help="also show what differs between FILE and the kernel (drift)")
    sp.add_argument("--strict", action="store_true", help=_STRICT_HELP)

    sp = add("stats", help="per-component packet counters of chains; "
                       "'stats enable|disable IFACE' turns them on or off")
    sp.add_argument("words", metavar="IFACE | enable IFACE | disable IFACE", nargs="*")
    sp.add_argument("--timing", action="store_true",
                    help="with enable: also measure each component's run time")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--interval", type=float, metavar="S",
                    help="show rates (per second) between two samples S seconds apart")
    sp.add_argument("--netns", help="network namespace")

    sp = add("top", help="live view of each chain component's packet rate and verdicts "
                     "(keys: q quit, p pause, tab next interface, a all)")
    sp.add_argument("iface", metavar="IFACE", nargs="?")
    sp.add_argument("--interval", type=float, default=1.0, metavar="S",
                    help="refresh every S seconds (default 1)")
    sp.add_argument("--netns", help="network namespace")

    sp = add("metrics", help="Prometheus text exposition of every chain's counters")
    sp.add_argument("--netns", help="network namespace")

    sp = add("clean", help="remove pins of dispatchers that are no longer attached")
    sp.add_argument("iface", metavar="IFACE", nargs="?")
    sp.add_argument("--netns", help="network namespace")

    sp = add("plan", help="show what apply would change (exit 0: nothing, 2: changes)")
    sp.add_argument("config", metavar="CONFIG")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--exclusive", action="store_true",
                    help="also remove programs this config does not manage")
    sp.add_argument("--strict", action="store_true", help=_STRICT_HELP)

    sp = add("apply", help="make interfaces match a config file")
    sp.add_argument("config", metavar="CONFIG")
    sp.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    sp.add_argument("--exclusive", action="store_true",
                    help="also remove programs this config does not manage")
    sp.add_argument("--strict", action="store_true", help=_STRICT_HELP)

    sp = add("export", help="write the live chains as a config file (check accepts it, "
                        "plan of it is empty)")
    sp.add_argument("ifaces", metavar="IFACE", nargs="*",
                    help="interfaces to export (default: every one with an XDP program)")
    sp.add_argument("--netns", help="network namespace of the interfaces")

    sp = add("agent", help="apply a config, then keep it true: config edits, new and "
                       "changed interfaces, periodic resync (SIGTERM leaves chains attached)")
    sp.add_argument("config", metavar="CONFIG")
    sp.add_argument("--listen", default="127.0.0.1:9720", metavar="HOST:PORT",
                    help="serve /metrics, /healthz and /readyz there (default "
                         "127.0.0.1:9720; none: no HTTP)")
    sp.add_argument("--resync", type=float, default=300.0, metavar="S",
                    help="full reconcile every S seconds, for missed events (default 300)")
    sp.add_argument("--debounce", type=float, default=0.2, metavar="S",
                    help="wait S seconds after the last config file event (default 0.2)")
    sp.add_argument("--log-format", choices=["text", "json"], default="text",
                    help="one line per decision, as text (default) or JSON")

    sp = add("schema", help="print the JSON Schema of config files (for editors)")

    sp = add("check", help="validate a config file (syntax, schema, objects)")
    sp.add_argument("config", metavar="CONFIG")
    sp.add_argument("--strict", action="store_true", help=_STRICT_HELP)

    sp = add("features", help="probe what the kernel supports")
    sp.add_argument("iface", metavar="IFACE", nargs="?")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--netns", help="network namespace")
    return p


def _cmd_inspect(args: argparse.Namespace) -> int:
    from dispatcher.obj.elf import read_object
    from dispatcher.render import disasm_text, inspect_dict, inspect_text

    obj = read_object(args.object)
    if args.prog_name:
        obj.program(name=args.prog_name)      # an unknown name is an error, with or without --disasm
    if args.json:
        print(json.dumps(inspect_dict(obj), indent=2))
        return 0
    if args.disasm:
        progs = [obj.program(name=args.prog_name)] if args.prog_name else list(obj.programs)
        sys.stdout.write(inspect_text(obj))
        for prog in progs:
            sys.stdout.write("\n" + disasm_text(obj, prog))
        return 0
    sys.stdout.write(inspect_text(obj))
    return 0


def _write_log(args: argparse.Namespace, log: list[str]) -> None:
    text = "".join(log)
    if getattr(args, "verifier_log", None):
        with open(args.verifier_log, "w") as f:
            f.write(text)
    if getattr(args, "verbose", False) and text:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")


def _cmd_load(args: argparse.Namespace) -> int:
    from dispatcher import api

    log: list[str] = []
    want_log = bool(args.verbose or args.verifier_log)
    try:
        res = api.load(args.iface, args.objects, mode=args.mode, priority=args.prio,
                       actions=args.actions, section=args.section, prog_name=args.prog_name,
                       netns=args.netns, force=args.force,
                       verifier_log=log if want_log else None, notice=_notice,
                       dispatch=args.dispatch, prog_type=args.prog_type, stats=args.stats,
                       inline=None if args.inline is None else args.inline == "on",
                       dispatcher_version=args.dispatcher_version)
    except XdpDispatchError as e:
        log_text = getattr(e, "log", None)
        if want_log and log_text and log_text not in log:
            log.append(log_text)
        _write_log(args, log)
        raise
    _write_log(args, log)
    progs = ", ".join(f"{name} (id {pid}, slot {slot})" for slot, name, pid in res.programs)
    if res.kind == "dispatcher":
        print(f"{args.iface}: dispatcher {res.dispatcher_id} in {args.mode} mode runs {progs}")
    elif res.kind == "linked":
        names = ", ".join(f"{name} (slot {slot})" for slot, name, _pid in res.programs)
        print(f"{args.iface}: linked chain {res.dispatcher_id} in {args.mode} mode runs {names}")
    else:   # attached directly: no dispatcher, so no slot
        direct = ", ".join(f"{name} (id {pid})" for _slot, name, pid in res.programs)
        print(f"{args.iface}: attached {direct} directly in {args.mode} mode")
    return 0


def _cmd_unload(args: argparse.Namespace) -> int:
    from dispatcher import api

    if not args.all and not args.ids and not args.names:
        raise UsageError("say what to unload: --all, -i ID or -n NAME")
    res = api.unload(args.iface, ids=args.ids, all=args.all, netns=args.netns,
                     names=args.names, notice=_notice)
    if res is None or res.kind == "none":
        print(f"{args.iface}: no XDP program left")
    elif res.kind == "linked":
        names = ", ".join(name for _s, name, _pid in res.programs)
        print(f"{args.iface}: linked chain {res.dispatcher_id} now runs {names}")
    else:
        progs = ", ".join(f"{name} (id {pid})" for _s, name, pid in res.programs)
        print(f"{args.iface}: dispatcher {res.dispatcher_id} now runs {progs}")
    return 0


def _cmd_upgrade(args: argparse.Namespace) -> int:
    from dispatcher import api

    res, before = api.upgrade(args.iface, args.dispatcher_version, netns=args.netns,
                              notice=_notice)
    if res is None:
        print(f"{args.iface}: the dispatcher already is version {args.dispatcher_version}; "
              "nothing changed")
        return 0
    progs = ", ".join(f"{name} (id {pid})" for _s, name, pid in res.programs)
    print(f"{args.iface}: dispatcher {res.dispatcher_id} (version {before} -> "
          f"{args.dispatcher_version}) runs {progs or 'nothing'}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 (ok / no drift), 2 (drift, with --config, as `plan`), 1 (an interface
    could not be read)."""
    from dispatcher import api
    from dispatcher.render import drift_text, status_text

    rep = api.status_report(args.iface, netns=args.netns, config=args.config)
    if args.json:
        print(json.dumps(rep.to_json(), indent=2))
    else:
        sys.stdout.write(status_text(rep.interfaces, rep.managed))
        if rep.drift is not None:
            sys.stdout.write(drift_text(rep.drift, args.config))
    if rep.errors:
        return 1
    return 2 if rep.drifted else 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from dispatcher import api
    from dispatcher import stats as st

    words = list(args.words)
    if words and words[0] in ("enable", "disable"):
        if len(words) != 2:
            raise UsageError(f"usage: {PROG} stats {words[0]} IFACE")
        setting = ("timing" if args.timing else "counts") if words[0] == "enable" else "off"
        res = api.set_stats(words[1], setting, netns=args.netns, notice=_notice)
        kind = "linked chain" if res.kind == "linked" else "dispatcher"
        print(f"{words[1]}: stats {'on' if words[0] == 'enable' else 'off'}"
              f"{' (with timing)' if setting == 'timing' else ''} ({kind} {res.dispatcher_id})")
        return 0
    if len(words) > 1:
        raise UsageError(f"usage: {PROG} stats [IFACE] | stats enable|disable IFACE")
    if args.timing:
        raise UsageError("--timing goes with stats enable IFACE")
    if args.interval is not None and args.interval <= 0:
        raise UsageError("--interval must be a positive number of seconds")
    ifs = api.stats(words[0] if words else None, netns=args.netns, interval=args.interval)
    if args.json:
        print(json.dumps(st.to_json(ifs, args.interval), indent=2))
    else:
        sys.stdout.write(st.text(ifs, args.interval))
    return 0


def _cmd_top(args: argparse.Namespace) -> int:
    from dispatcher import top

    if args.interval <= 0:
        raise UsageError("--interval must be a positive number of seconds")
    return top.run(args.iface, args.netns, args.interval)


def _cmd_metrics(args: argparse.Namespace) -> int:
    from dispatcher import api

    sys.stdout.write(api.metrics(netns=args.netns).decode())
    return 0


def _cmd_clean(args: argparse.Namespace) -> int:
    from dispatcher import api

    removed = api.clean(args.iface, netns=args.netns)
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print("nothing to clean")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from dispatcher import api

    res = api.probe_features(args.iface, netns=args.netns)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    from dispatcher.render import interface_modes_text

    for name, v in res.items():
        if isinstance(v, dict) and "supported" in v:
            mark = "yes" if v["supported"] else "no"
            print(f"{name:22s} {mark:4s} {v.get('detail', '')}")
        elif name == "interface" and isinstance(v, dict):
            print(f"{name:22s} {interface_modes_text(v)}")
        else:
            print(f"{name:22s} {v}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from dispatcher.api import plan_config
    from dispatcher.config.plan import plan_text

    plans = plan_config(args.config, exclusive=args.exclusive)
    if args.json:
        print(json.dumps({"interfaces": [p.to_json() for p in plans]}, indent=2))
    else:
        sys.stdout.write(plan_text(plans))
    if any(p.error for p in plans):
        return 1
    return 2 if any(p.changed for p in plans) else 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from dispatcher.api import apply_config
    from dispatcher.config.plan import plan_text

    plans = apply_config(args.config, exclusive=args.exclusive, dry_run=args.dry_run, notice=_notice)
    sys.stdout.write(plan_text(plans))
    if not any(p.changed for p in plans):
        print("Nothing to change.")
    elif args.dry_run:
        print("Dry run: nothing changed.")
    else:
        print("Applied.")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from dispatcher import api

    sys.stdout.write(api.export_config(args.ifaces, netns=args.netns))
    return 0


def _cmd_agent(args: argparse.Namespace) -> int:
    from dispatcher.agent import service
    from dispatcher.kernel.privileges import require_root

    require_root("running the agent")
    if args.debounce < 0:
        raise UsageError("--debounce must be zero or a positive number of seconds")
    return service.run(args.config, listen=None if args.listen == "none" else args.listen,
                       resync=args.resync, log_format=args.log_format,
                       debounce=args.debounce)


def _cmd_schema(args: argparse.Namespace) -> int:
    from dispatcher.config.model import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from dispatcher.config.model import load_and_check

    cfg = load_and_check(args.config)
    n = sum(len(i.programs) for i in cfg.interfaces)
    print(f"{args.config}: ok ({len(cfg.interfaces)} interface entries, {n} programs)")
    return 0


def _notice(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr)


_COMMANDS = {"inspect": _cmd_inspect, "load": _cmd_load, "unload": _cmd_unload,
             "upgrade": _cmd_upgrade,
             "status": _cmd_status, "stats": _cmd_stats, "top": _cmd_top, "metrics": _cmd_metrics,
             "clean": _cmd_clean, "features": _cmd_features,
             "schema": _cmd_schema, "check": _cmd_check, "plan": _cmd_plan,
             "apply": _cmd_apply, "export": _cmd_export,
             "agent": _cmd_agent}


def _only_command(argv: Sequence[str]) -> str | None:
    """The command of ``[--debug] COMMAND ...``; None (build everything) for anything else,
    so help, usage errors and unknown commands see the whole parser."""
    for arg in argv:
        if arg != "--debug":
            return arg if arg in _COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _build_parser(_only_command(argv))
    args = parser.parse_args(argv)
    try:
        if getattr(args, "strict", False):
            from dispatcher import safeio

            safeio.set_strict(True)
        return _COMMANDS[args.cmd](args)
    except XdpDispatchError as e:
        print(f"{PROG}: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"{PROG}: hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug: one line unless --debug
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(e).__name__}: {e} (run with --debug for a traceback)",
              file=sys.stderr)
        return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
