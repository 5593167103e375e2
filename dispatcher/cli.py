"""Command-line entry point. The only module that prints or chooses exit codes.

Exit codes: 0 ok, 1 kernel/unexpected error, 2 usage/config/object error,
3 not supported, 4 conflict after retries, 5 foreign state in the way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from .errors import UsageError, XdpDispatchError

PROG = "xdp-dispatch"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Run several XDP programs on one interface (libxdp-compatible).")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks for unexpected errors")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    sp = sub.add_parser("inspect", help="show what a BPF object file contains")
    sp.add_argument("object", metavar="OBJ")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--disasm", action="store_true", help="disassemble each program with its source lines")
    sp.add_argument("-n", "--prog-name", help="only this program (with --disasm)")

    sp = sub.add_parser("load", help="add XDP programs to an interface's chain")
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
    sp.add_argument("--netns", help="network namespace of the interface (as in ip netns)")
    sp.add_argument("--force", action="store_true",
                    help="replace a plain (non-dispatcher) program that is attached")
    sp.add_argument("-v", "--verbose", action="store_true", help="print the verifier log")
    sp.add_argument("--verifier-log", metavar="FILE", help="write the full verifier log to FILE")

    sp = sub.add_parser("unload", help="remove XDP programs from an interface")
    sp.add_argument("iface", metavar="IFACE")
    sp.add_argument("-i", "--id", type=int, action="append", default=[], dest="ids",
                    help="program id to remove (repeatable)")
    sp.add_argument("-a", "--all", action="store_true", help="remove everything")
    sp.add_argument("--netns", help="network namespace of the interface")

    sp = sub.add_parser("status", help="show the XDP programs of interfaces")
    sp.add_argument("iface", metavar="IFACE", nargs="?")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--netns", help="network namespace")

    sp = sub.add_parser("clean", help="remove pins of dispatchers that are no longer attached")
    sp.add_argument("iface", metavar="IFACE", nargs="?")
    sp.add_argument("--netns", help="network namespace")

    sp = sub.add_parser("plan", help="show what apply would change (exit 0: nothing, 2: changes)")
    sp.add_argument("config", metavar="CONFIG")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--exclusive", action="store_true",
                    help="also remove programs this config does not manage")

    sp = sub.add_parser("apply", help="make interfaces match a config file")
    sp.add_argument("config", metavar="CONFIG")
    sp.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    sp.add_argument("--exclusive", action="store_true",
                    help="also remove programs this config does not manage")

    sp = sub.add_parser("schema", help="print the JSON Schema of config files (for editors)")

    sp = sub.add_parser("check", help="validate a config file (syntax, schema, objects)")
    sp.add_argument("config", metavar="CONFIG")

    sp = sub.add_parser("features", help="probe what the kernel supports")
    sp.add_argument("iface", metavar="IFACE", nargs="?")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--netns", help="network namespace")
    return p


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .obj.elf import read_object
    from .render import disasm_text, inspect_dict, inspect_text

    obj = read_object(args.object)
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
    from . import api

    log: list[str] = []
    want_log = bool(args.verbose or args.verifier_log)
    try:
        res = api.load(args.iface, args.objects, mode=args.mode, priority=args.prio,
                       actions=args.actions, section=args.section, prog_name=args.prog_name,
                       netns=args.netns, force=args.force,
                       verifier_log=log if want_log else None, notice=_notice)
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
    else:
        print(f"{args.iface}: attached {progs} directly in {args.mode} mode")
    return 0


def _cmd_unload(args: argparse.Namespace) -> int:
    from . import api

    if not args.all and not args.ids:
        raise UsageError("say what to unload: --all or -i ID")
    res = api.unload(args.iface, ids=args.ids, all=args.all, netns=args.netns)
    if res is None or res.kind == "none":
        print(f"{args.iface}: no XDP program left")
    else:
        progs = ", ".join(f"{name} (id {pid})" for _s, name, pid in res.programs)
        print(f"{args.iface}: dispatcher {res.dispatcher_id} now runs {progs}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from . import api
    from .render import status_text

    states = api.status(args.iface, netns=args.netns)
    if args.json:
        print(json.dumps({"interfaces": [s.to_json() for s in states]}, indent=2))
    else:
        sys.stdout.write(status_text(states))
    return 1 if any(s.error for s in states) else 0


def _cmd_clean(args: argparse.Namespace) -> int:
    from . import api

    removed = api.clean(args.iface, netns=args.netns)
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print("nothing to clean")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from . import api

    res = api.probe_features(args.iface, netns=args.netns)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    for name, v in res.items():
        if isinstance(v, dict) and "supported" in v:
            mark = "yes" if v["supported"] else "no"
            print(f"{name:22s} {mark:4s} {v.get('detail', '')}")
        else:
            print(f"{name:22s} {v}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from .declare import make_plan
    from .plan import plan_text

    _cfg, plans, _objs = make_plan(args.config, exclusive=args.exclusive)
    if args.json:
        print(json.dumps({"interfaces": [p.to_json() for p in plans]}, indent=2))
    else:
        sys.stdout.write(plan_text(plans))
    if any(p.error for p in plans):
        return 1
    return 2 if any(p.changed for p in plans) else 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from .declare import apply
    from .plan import plan_text

    plans = apply(args.config, exclusive=args.exclusive, dry_run=args.dry_run, notice=_notice)
    sys.stdout.write(plan_text(plans))
    if not any(p.changed for p in plans):
        print("Nothing to change.")
    elif args.dry_run:
        print("Dry run: nothing changed.")
    else:
        print("Applied.")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from .config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .config import load_and_check

    cfg = load_and_check(args.config)
    n = sum(len(i.programs) for i in cfg.interfaces)
    print(f"{args.config}: ok ({len(cfg.interfaces)} interface entries, {n} programs)")
    return 0


def _notice(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr)


_COMMANDS = {"inspect": _cmd_inspect, "load": _cmd_load, "unload": _cmd_unload,
             "status": _cmd_status, "clean": _cmd_clean, "features": _cmd_features,
             "schema": _cmd_schema, "check": _cmd_check, "plan": _cmd_plan,
             "apply": _cmd_apply}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
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
