"""The agent's event loop: apply the config at start, then reconcile on config edits
(inotify on the file's directory), link notifications (rtnetlink, per namespace), SIGHUP
and a periodic full resync. Everything is done with ``config.apply`` (the ``apply``
engine, restricted to the interfaces an event concerns); decisions are ``decide.py``'s.

Idle, the loop sleeps in ``poll()`` until an fd is readable or the next deadline (resync,
debounce, watchdog): no periodic wake-ups otherwise. SIGTERM ends the loop and leaves
every chain attached (they are held by the kernel: pins and attachments, not by us).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Collection
from typing import Any, TextIO

from dispatcher import safeio
from dispatcher.agent import decide, sdnotify
from dispatcher.agent.decide import Key, Known
from dispatcher.config import apply as engine
from dispatcher.config.drift import interface_drift
from dispatcher.config.model import ChainConfig, load_and_check
from dispatcher.config.plan import InterfacePlan
from dispatcher.errors import ConfigError, InterfaceError, XdpDispatchError
from dispatcher.kernel import netlink

DEFAULT_LISTEN = "127.0.0.1:9720"
DEFAULT_RESYNC = 300.0
DEFAULT_DEBOUNCE = 0.2
RETRY_AFTER_FAILURE = 5.0


class Log:
    """One line per decision, as text or JSON (``--log-format``), on stderr."""

    def __init__(self, fmt: str = "text", out: TextIO | None = None) -> None:
        self.fmt = fmt
        self.out = out or sys.stderr

    def __call__(self, event: str, msg: str, **fields: Any) -> None:
        if self.fmt == "json":
            rec = {"ts": round(time.time(), 3), "event": event, "msg": msg,
                   **{k: v for k, v in fields.items() if v is not None}}
            line = json.dumps(rec, sort_keys=False)
        else:
            extra = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            line = f"{stamp} {event}: {msg}" + (f" ({extra})" if extra else "")
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass


def _where(netns: str | None, name: str) -> str:
    return name + (f" (netns {netns})" if netns else "")


class Agent:
    def __init__(self, path: str, *, listen: str | None = DEFAULT_LISTEN,
                 resync: float = DEFAULT_RESYNC, debounce: float = DEFAULT_DEBOUNCE,
                 log: Log | None = None) -> None:
        self.path = os.path.abspath(path)
        self.resync = resync
        self.log = log or Log()
        self.debounce = decide.Debounce(debounce)
        self.good: bytes | None = None          # the config in force (validated bytes)
        self.good_sha = ""
        self.bad_sha = ""                       # the last refused version (reported once)
        self.cfg: ChainConfig | None = None
        self._st: os.stat_result | None = None  # of the file as last read
        self.known: dict[Key, Known] = {}
        self.drifted: set[Key] = set()
        self.monitors: dict[str | None, netlink.LinkMonitor] = {}
        self.ready = False
        self.stop = False
        self.hup = False
        self.generation = 0
        self.next_resync: float | None = None
        self.last_loop = time.monotonic()
        from dispatcher.agent.http import AgentMetrics

        self.metrics = AgentMetrics(lambda: decide.namespaces(self.cfg) if self.cfg else [])
        self.server = None
        if listen is not None:
            from dispatcher.agent.http import Server

            self.server = Server(listen, self.metrics, lambda: self.ready,
                                 lambda: time.monotonic() - self.last_loop < max(
                                     2 * self.resync, 60.0))

    # ------------------------------------------------------------------ config

    def _read(self) -> tuple[bytes, str]:
        try:
            data, self._st = safeio.read_regular(self.path, safeio.MAX_CONFIG_BYTES)
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: no such file") from None
        except safeio.NotRegularError as e:
            raise ConfigError(f"{self.path}: {e.reason}") from None
        except OSError as e:
            raise ConfigError(f"{self.path}: cannot read: {e.strerror or e}") from None
        return data, hashlib.sha256(data).hexdigest()

    def load(self, data: bytes, sha: str) -> None:
        """Validate ``data`` and make it the config in force (ConfigError if invalid)."""
        cfg = load_and_check(self.path, text=data)
        if self._st is not None:
            with safeio.strict_mode(cfg.strict):   # as load_config: can others change it?
                safeio.check_input(self.path, self._st, ConfigError)
        self.good, self.good_sha, self.cfg, self.bad_sha = data, sha, cfg, ""
        self.generation += 1
        self.metrics.generation.set(self.generation)
        self.metrics.config_valid.set(1)
        self._watch_namespaces()

    def _config_event(self, trigger: str) -> None:
        """The file changed (or SIGHUP): one reconcile if its content is new."""
        try:
            data, sha = self._read()
        except ConfigError as e:
            return self._refused(trigger, e.message, "")
        if sha == self.good_sha and trigger != "signal":
            return
        if sha == self.bad_sha:
            return
        try:
            self.load(data, sha)
        except ConfigError as e:
            return self._refused(trigger, e.message, sha)
        self.log("config", f"loaded generation {self.generation}", sha=sha[:12])
        self.full(trigger, intent=True)

    def _refused(self, trigger: str, message: str, sha: str) -> None:
        self.bad_sha = sha
        self.metrics.config_errors.inc()
        self.metrics.config_valid.set(0)
        self.metrics.reconciles.labels(trigger, "invalid_config").inc()
        first = message.splitlines()[0] if message else "invalid"
        self.log("config", "refused; the last good config stays in force", error=first,
                 errors=len(message.splitlines()), generation=self.generation)

    # ------------------------------------------------------------------ reconcile

    def _apply(self, scope: str, only: Collection[tuple[str | None, str]] | None = None,
               dry_run: bool = False) -> list[InterfacePlan]:
        t0 = time.perf_counter()
        links: engine.Links | None = None
        if only is not None:       # plan from the targets' own state, not a namespace dump
            links = {}
            for ns, name in only:
                try:
                    links.setdefault(ns, []).append(netlink.read_xdp_by_name(name, ns))
                except InterfaceError:
                    links.setdefault(ns, [])       # gone meanwhile: nothing to apply
        try:
            return engine.apply(self.path, text=self.good, only=only, missing_ok=True,
                                dry_run=dry_run, links=links)
        finally:
            self.metrics.apply_seconds.labels(scope).observe(time.perf_counter() - t0)

    def _remember(self, plans: list[InterfacePlan]) -> None:
        """Record the program id each planned interface has now (after an apply)."""
        by_ns: dict[str | None, set[str]] = {}
        for p in plans:
            if not p.error:
                by_ns.setdefault(p.netns, set()).add(p.iface)
        for ns, names in by_ns.items():
            # one request per interface: a namespace dump costs more with every interface
            # it holds, and would make each event's cost grow with the node's size
            for x in self._states(ns, names):
                if x.ifname in names:
                    self.known[(ns, x.ifindex)] = Known(x.ifname, x.prog_id)
                    self.drifted.discard((ns, x.ifindex))
                    self.metrics.drift.labels(x.ifname, ns or "").set(0)
        self.metrics.interfaces.set(len(self.known))

    @staticmethod
    def _states(ns: str | None, names: Collection[str]) -> list[netlink.XdpState]:
        out = []
        for n in names:
            try:
                out.append(netlink.read_xdp_by_name(n, ns))
            except InterfaceError:
                continue                  # gone meanwhile: its RTM_DELLINK follows
        return out

    def full(self, trigger: str, intent: bool = False) -> None:
        """Reconcile every interface of the config. ``intent`` (start, config edit, SIGHUP):
        the config itself changed, so it is applied even with ``on_drift: report``."""
        assert self.cfg is not None
        t0 = time.perf_counter()
        report = self.cfg.on_drift == "report" and not intent
        try:
            plans = self._apply("all", dry_run=report)
            if report:
                plans = self._report_then_apply_new(plans)
            else:
                self.known = {}
                self._remember(plans)
        except XdpDispatchError as e:
            self.metrics.reconciles.labels(trigger, "error").inc()
            self.log("reconcile", "failed", trigger=trigger, error=e.message.splitlines()[0],
                     ms=round((time.perf_counter() - t0) * 1e3, 1))
            self.next_resync = time.monotonic() + min(RETRY_AFTER_FAILURE, self.resync)
            if not report:
                self._one_by_one(trigger)
            return
        changed = [_where(p.netns, p.iface) for p in plans if p.changed]
        outcome = "changed" if changed and not report else "unchanged"
        self.metrics.reconciles.labels(trigger, outcome).inc()
        self.metrics.last_success.set(time.time())
        self.log("reconcile", "applied" if outcome == "changed" else "nothing to change",
                 trigger=trigger, interfaces=len(plans),
                 changed=",".join(changed) if changed and not report else None,
                 ms=round((time.perf_counter() - t0) * 1e3, 1))
        if not self.ready:
            self.ready = True
            self.metrics.ready.set(1)
            sdnotify.notify("READY=1\nSTATUS=chains applied")
        self.next_resync = time.monotonic() + self.resync

    def _one_by_one(self, trigger: str) -> None:
        """After a failed full apply (all or nothing): each interface alone, so that one
        that cannot take its chain does not keep the others from theirs."""
        try:
            _cfg, targets, _objs = engine.prepare(self.path, text=self.good, missing_ok=True)
        except XdpDispatchError:
            return                   # not an interface's fault: nothing to split
        if len(targets) > 1:
            self.interfaces({(t.netns, t.iface): "after a failed full apply"
                             for t in targets}, trigger)

    def _report_then_apply_new(self, plans: list[InterfacePlan]) -> list[InterfacePlan]:
        """``on_drift: report``: drift of known interfaces is reported, not repaired;
        interfaces never seen before (missed events) get their chain."""
        links = {ns: {x.ifname: x for x in netlink.list_links(ns)}
                 for ns in {p.netns for p in plans}}
        new: set[tuple[str | None, str]] = set()
        for p in plans:
            x = links[p.netns].get(p.iface)
            if x is None or not p.changed:
                continue
            if (p.netns, x.ifindex) in self.known:
                self._report(p.netns, x.ifindex, p.iface, "; ".join(
                    f"{i.kind} {i.name}".strip() for i in interface_drift(p).items
                    if i.kind != "foreign") or "differs")
            else:
                new.add((p.netns, p.iface))
        if new:
            done = self._apply("interfaces", only=new)
            self._remember(done)
        return plans

    def _report(self, netns: str | None, ifindex: int, name: str, why: str) -> None:
        if (netns, ifindex) not in self.drifted:
            self.drifted.add((netns, ifindex))
            self.log("drift", "reported, not repaired (on_drift: report)",
                     interface=name, netns=netns, detail=why)
        self.metrics.drift.labels(name, netns or "").set(1)

    def interfaces(self, targets: dict[tuple[str | None, str], str], trigger: str) -> None:
        """Apply the config to ``targets`` only ((netns, name) -> why), touching no other
        interface; a batch that fails is retried one interface at a time."""
        t0 = time.perf_counter()
        try:
            plans = self._apply("interfaces", only=set(targets))
            self._remember(plans)
            self._done(targets, plans, trigger, t0)
        except XdpDispatchError as e:
            if len(targets) > 1:
                for k, why in targets.items():
                    self.interfaces({k: why}, trigger)
                return
            (ns, name), why = next(iter(targets.items()))
            self.metrics.reconciles.labels(trigger, "error").inc()
            self.log("apply", "failed", interface=name, netns=ns, why=why,
                     error=e.message.splitlines()[0],
                     ms=round((time.perf_counter() - t0) * 1e3, 1))

    def _done(self, targets: dict[tuple[str | None, str], str], plans: list[InterfacePlan],
              trigger: str, t0: float) -> None:
        ms = round((time.perf_counter() - t0) * 1e3, 1)
        changed = {(p.netns, p.iface) for p in plans if p.changed}
        self.metrics.last_success.set(time.time())
        for (ns, name), why in targets.items():
            outcome = "changed" if (ns, name) in changed else "unchanged"
            self.metrics.reconciles.labels(trigger, outcome).inc()
            self.log("apply", "chain attached" if outcome == "changed" else "nothing to change",
                     interface=name, netns=ns, why=why, ms=ms, batch=len(targets)
                     if len(targets) > 1 else None)

    # ------------------------------------------------------------------ link events

    def _watch_namespaces(self) -> None:
        assert self.cfg is not None
        want = decide.namespaces(self.cfg)
        for ns in list(self.monitors):
            if ns not in want:
                self.monitors.pop(ns).close()
        for ns in want:
            if ns not in self.monitors:
                try:
                    self.monitors[ns] = netlink.LinkMonitor(ns)
                except XdpDispatchError as e:
                    self.log("netns", "cannot watch (resync will retry)", netns=ns,
                             error=e.message)

    def _links(self, mon: netlink.LinkMonitor) -> None:
        assert self.cfg is not None
        try:
            events = mon.read()
        except netlink.MonitorOverrun:
            self.log("netlink", "notifications lost: full resync", netns=mon.netns)
            return self.full("resync")
        targets: dict[tuple[str | None, str], str] = {}
        repairs: dict[tuple[str | None, str], str] = {}
        for ev in events:
            x = ev.state
            d = decide.on_link(self.cfg, ev.netns, x.ifindex, x.ifname, x.prog_id, ev.gone,
                               self.known)
            key = (ev.netns, x.ifindex)
            if d.action == decide.FORGET:
                self.known.pop(key, None)
                self.drifted.discard(key)
                self.metrics.interfaces.set(len(self.known))
                self.log("forget", d.why, interface=x.ifname, netns=ev.netns)
            elif d.action == decide.APPLY:
                targets[(ev.netns, x.ifname)] = d.why
                repairs.pop((ev.netns, x.ifname), None)
            elif d.action in (decide.REPAIR, decide.REPORT):
                if ev.gone or (ev.netns, x.ifname) in targets:
                    continue
                # notifications may be stale (our own swaps): trust the state now
                try:
                    now = netlink.read_xdp(x.ifindex, netns=ev.netns)
                except XdpDispatchError:
                    continue
                d = decide.on_link(self.cfg, ev.netns, x.ifindex, now.ifname, now.prog_id,
                                   False, self.known)
                if d.action == decide.REPAIR:
                    repairs[(ev.netns, now.ifname)] = d.why
                elif d.action == decide.REPORT:
                    self._report(ev.netns, x.ifindex, now.ifname, d.why)
        if targets:
            self.interfaces(targets, "interface")
        if repairs:
            for (ns, name), why in repairs.items():
                self.log("drift", "repairing", interface=name, netns=ns, detail=why)
            self.interfaces(repairs, "drift")

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        """Apply, then loop until SIGTERM/SIGINT. Returns the exit code."""
        from inotify_simple import INotify  # type: ignore[import-untyped, unused-ignore]
        from inotify_simple import flags as fl  # type: ignore[import-untyped, unused-ignore]

        data, sha = self._read()
        self.load(data, sha)           # an invalid config at start: ConfigError (exit 2)
        # what the first new interface would otherwise wait for: the chain builders
        import dispatcher.chain.freplace.backend  # noqa: F401
        import dispatcher.chain.linked.backend  # noqa: F401
        import dispatcher.chain.linked.build  # noqa: F401
        rfd, wfd = socket.socketpair()
        rfd.setblocking(False)
        wfd.setblocking(False)
        old_wakeup = signal.set_wakeup_fd(wfd.fileno(), warn_on_full_buffer=False)
        old = {s: signal.signal(s, self._signal) for s in
               (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        ino = INotify(nonblocking=True)
        directory = os.path.dirname(self.path)
        name = os.path.basename(self.path)
        ino.add_watch(directory, fl.CLOSE_WRITE | fl.MOVED_TO | fl.MOVED_FROM | fl.CREATE
                      | fl.DELETE | fl.ATTRIB)
        try:
            if self.server is not None:
                self.server.start()
                self.log("http", "listening", address=self.server.address)
            self.log("start", "applying", config=self.path, generation=self.generation,
                     resync=self.resync)
            self.full("start", intent=True)
            wd = sdnotify.watchdog_interval()
            next_wd = time.monotonic() + wd if wd else None
            poller = select.poll()
            registered: dict[int, Any] = {}
            while not self.stop:
                want = {ino.fileno(): ino, rfd.fileno(): rfd,
                        **{m.fileno(): m for m in self.monitors.values()}}
                for fd in set(registered) - set(want):
                    poller.unregister(fd)
                for fd in set(want) - set(registered):
                    poller.register(fd, select.POLLIN)
                registered = want
                now = time.monotonic()
                self.last_loop = now
                tmo = decide.timeout(now, self.next_resync, self.debounce.deadline, next_wd)
                try:
                    ready = poller.poll(tmo * 1000)
                except InterruptedError:
                    ready = []
                for fd, _ev in ready:
                    obj = registered.get(fd)
                    if fd == rfd.fileno():
                        try:
                            while rfd.recv(64):
                                pass
                        except BlockingIOError:
                            pass
                    elif fd == ino.fileno():
                        if any(e.name in (name, "..data") or not e.name for e in ino.read()):
                            self.debounce.poke(time.monotonic())
                    elif isinstance(obj, netlink.LinkMonitor):
                        self._links(obj)
                now = time.monotonic()
                if self.stop:
                    break
                if self.hup:
                    self.hup = False
                    self.log("signal", "SIGHUP: re-reading the config")
                    self._config_event("signal")
                if self.debounce.due(now):
                    self._config_event("config")
                if next_wd is not None and now >= next_wd:
                    sdnotify.notify("WATCHDOG=1")
                    next_wd = now + (wd or 1.0)
                if self.next_resync is not None and time.monotonic() >= self.next_resync:
                    if self.cfg and self.monitors.keys() != set(decide.namespaces(self.cfg)):
                        self._watch_namespaces()
                    self.full("resync")
            sdnotify.notify("STOPPING=1")
            self.log("stop", "exiting; chains stay attached")
            return 0
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            signal.set_wakeup_fd(old_wakeup)
            ino.close()
            rfd.close()
            wfd.close()
            for m in self.monitors.values():
                m.close()
            self.monitors = {}
            if self.server is not None:
                self.server.stop()

    def _signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self.hup = True
        else:
            self.stop = True


def run(path: str, *, listen: str | None, resync: float, log_format: str,
        debounce: float = DEFAULT_DEBOUNCE) -> int:
    """``xdp-dispatch agent``: returns the exit code (0 after SIGTERM)."""
    if resync <= 0:
        from dispatcher.errors import UsageError

        raise UsageError("--resync must be a positive number of seconds")
    agent = Agent(path, listen=listen, resync=resync, debounce=debounce, log=Log(log_format))
    try:
        return agent.run()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EMFILE):
            raise ConfigError(f"{path}: cannot watch its directory: {e.strerror} "
                              "(fs.inotify.max_user_watches / max_user_instances)") from None
        raise
