"""``xdp-dispatch stats`` and ``metrics``: per-component counters of every chain.

Counting and its layout: ``dispatcher.chain.stats`` (pure); reading the map:
``chain.observe.read_counters``. This module gathers them per interface, computes rates
between two samples, and writes the Prometheus text exposition with the official client
(a private registry and a custom collector, so nothing global is touched).

JSON (``stats --json``), fixed keys::

    {"interfaces": [{"interface", "netns", "ifindex", "kind", "mode", "chain_id",
                     "stats": "counts"|"off",
                     "components": [{"slot", "name", "priority", "packets", "bytes",
                                     "ended", "actions": {"XDP_ABORTED": {"packets",
                                     "bytes"}, ..., "other": {...}}}]}],
     "interval": S}            # only with --interval: every count is then per second
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from dispatcher.chain import observe
from dispatcher.chain import stats as cs
from dispatcher.errors import XdpDispatchError
from dispatcher.record import record

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from dispatcher.chain.state import InterfaceState


@record
class InterfaceStats:
    interface: str
    netns: str
    ifindex: int
    kind: str                  # linked | dispatcher | legacy | none
    mode: str
    chain_id: int
    version: str               # the chain's format version (description / dispatcher)
    stats: str                 # counts | off
    components: tuple[cs.ComponentStats, ...]

    def to_json(self) -> dict[str, object]:
        return {"interface": self.interface, "netns": self.netns, "ifindex": self.ifindex,
                "kind": self.kind, "mode": self.mode, "chain_id": self.chain_id,
                "stats": self.stats, "components": [c.to_json() for c in self.components]}


def of_state(st: InterfaceState, netns: str | None) -> InterfaceStats:
    """One interface's counters (a linked chain's stats map; a freplace chain's fexit
    counters)."""
    desc = st.description
    if st.kind == "linked":
        setting, comps = _linked(st)
    elif st.kind == "dispatcher":
        setting, comps = _dispatcher(st, netns)
    else:
        setting, comps = "off", []
    version = str(st.dispatcher.version) if st.dispatcher is not None else ""
    del desc
    return InterfaceStats(st.name, netns or "", st.ifindex, st.kind, st.mode or "",
                          st.main.id if st.main else 0, version, setting, tuple(comps))


def _linked(st: InterfaceState) -> tuple[str, list[cs.ComponentStats]]:
    desc = st.description
    comps: list[cs.ComponentStats] = []
    if desc is None:
        return "off", comps
    if desc.stats_map:
        counts = observe.read_counters(desc.stats_map, [s.counter for s in desc.slots])
        n = len(desc.slots)
        for i, s in enumerate(desc.slots):
            vals = counts.get(s.counter, ((0, 0),) * cs.NUM_ACTIONS)
            comps.append(cs.component_stats(i, s.label, s.priority, s.actions, i == n - 1,
                                            vals))
    return desc.stats, comps


def _dispatcher(st: InterfaceState, netns: str | None) -> tuple[str, list[cs.ComponentStats]]:
    """A freplace chain's components, counted by their fexit programs (those that have
    them; ``chain.fexit``)."""
    from dispatcher.chain import fexit as counters
    from dispatcher.kernel import bpffs

    try:
        root = bpffs.bpffs_root()
    except XdpDispatchError:
        return "off", []
    setting, got = counters.read(root, netns, st.ifindex, [c.id for c in st.programs])
    comps = []
    n = len(st.programs)
    for i, c in enumerate(st.programs):
        if c.id not in got:
            continue
        counts, run_ns = got[c.id]
        comps.append(cs.component_stats(c.slot, c.name, c.priority, c.chain_call_actions,
                                        i == n - 1, counts, run_ns))
    return setting, comps


def collect(iface: str | None = None, netns: str | None = None) -> list[InterfaceStats]:
    """Every interface with a chain (or ``iface``), with its counters."""
    from dispatcher.kernel import bpffs

    root = bpffs.bpffs_root()               # a freplace chain's pins: its components
    states = observe.status(iface, netns=netns, root=root if bpffs.is_bpffs(root) else None,
                            packets=False)
    return [of_state(st, netns) for st in states
            if st.main is not None and (iface is not None or st.kind != "none")]


def rates(before: Sequence[InterfaceStats], after: Sequence[InterfaceStats],
          seconds: float) -> list[InterfaceStats]:
    """Per-second rates of each component present in both samples (same interface, slot
    and name); the others are left out."""
    old = {(i.interface, c.slot, c.name): c for i in before for c in i.components}
    out = []
    for i in after:
        comps = tuple(cs.rates(old[(i.interface, c.slot, c.name)], c, seconds)
                      for c in i.components if (i.interface, c.slot, c.name) in old)
        out.append(InterfaceStats(i.interface, i.netns, i.ifindex, i.kind, i.mode, i.chain_id,
                                  i.version, i.stats, comps))
    return out


def sample(iface: str | None, netns: str | None, interval: float | None
           ) -> list[InterfaceStats]:
    first = collect(iface, netns)
    if not interval:
        return first
    t0 = time.monotonic()
    time.sleep(interval)
    second = collect(iface, netns)
    return rates(first, second, time.monotonic() - t0)


def to_json(ifs: Sequence[InterfaceStats], interval: float | None = None) -> dict[str, object]:
    out: dict[str, object] = {"interfaces": [i.to_json() for i in ifs]}
    if interval:
        out["interval"] = interval
    return out


def text(ifs: Sequence[InterfaceStats], interval: float | None = None) -> str:
    unit = "/s" if interval else ""
    lines = []
    for i in ifs:
        where = i.interface + (f" (netns {i.netns})" if i.netns else "")
        lines.append(f"{where}: {i.kind} chain {i.chain_id}, stats {i.stats}")
        if i.stats == "off" or not i.components:
            continue
        head = "  %-4s %-5s %-17s %14s %14s %12s  %s" % (
            "Slot", "Prio", "Program", "Packets" + unit, "Bytes" + unit, "Ended" + unit,
            "Verdicts")
        lines.append(head)
        for c in i.components:
            mix = " ".join(f"{n.removeprefix('XDP_')}={a.packets}"
                           for n, a in zip(cs.ACTION_NAMES, c.actions, strict=True) if a.packets)
            lines.append("  %-4d %-5d %-17s %14d %14d %12d  %s" % (
                c.slot, c.priority, c.name, c.packets, c.bytes, c.ended, mix or "-"))
    return "\n".join(lines) + "\n" if lines else "no XDP chains\n"


# ------------------------------------------------------------------ Prometheus

class _Collector:
    def __init__(self, ifs: Sequence[InterfaceStats]) -> None:
        self.ifs = ifs

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["interface", "netns", "program", "priority", "action"]
        pk = CounterMetricFamily("xdp_dispatch_component_packets",
                                 "Packets each chain component returned, per verdict",
                                 labels=labels)
        by = CounterMetricFamily("xdp_dispatch_component_bytes",
                                 "Bytes (data_end - data after the component) per verdict",
                                 labels=labels)
        info = GaugeMetricFamily("xdp_dispatch_chain_info", "An XDP chain on an interface",
                                 labels=["interface", "netns", "mode", "kind",
                                         "dispatcher_version"])
        for i in self.ifs:
            info.add_metric([i.interface, i.netns, i.mode, i.kind, i.version], 1)
            for c in i.components:
                for n, a in zip(cs.ACTION_NAMES, c.actions, strict=True):
                    # verdicts never returned are left out (a series appears with its
                    # first packet), but every component has at least its XDP_PASS one
                    if not a.packets and not (n == "XDP_PASS" and not c.packets):
                        continue
                    lv = [i.interface, i.netns, c.name, str(c.priority), n]
                    pk.add_metric(lv, a.packets)
                    by.add_metric(lv, a.bytes)
        yield pk
        yield by
        yield info


class LiveCollector:
    """The same metrics, read at each scrape from the chains of ``namespaces`` (None: this
    process's own), for a long-running exporter (``xdp-dispatch agent``)."""

    def __init__(self, namespaces: Callable[[], Sequence[str | None]]) -> None:
        self.namespaces = namespaces

    def collect(self) -> Iterator[Metric]:
        ifs: list[InterfaceStats] = []
        for ns in self.namespaces():
            try:
                ifs += collect(None, ns)
            except XdpDispatchError:
                continue          # a namespace that is gone: no series
        yield from _Collector(ifs).collect()


def prometheus(ifs: Sequence[InterfaceStats]) -> bytes:
    """The Prometheus text exposition of ``ifs`` (names and labels: README)."""
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(ifs))
    return generate_latest(reg)


# ------------------------------------------------------------------ top

BAR_LETTERS = {"XDP_ABORTED": "A", "XDP_DROP": "D", "XDP_PASS": "P", "XDP_TX": "T",
               "XDP_REDIRECT": "R", "other": "?"}


def verdict_bar(c: cs.ComponentStats, width: int) -> str:
    """The verdict mix as ``width`` letters (P pass, D drop, T tx, R redirect, A aborted,
    ? other), each action's share rounded, largest remainders first; blank when idle."""
    total = c.packets
    if total <= 0 or width <= 0:
        return " " * max(width, 0)
    exact = [a.packets * width / total for a in c.actions]
    cells = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: cells[i] - exact[i])[:width - sum(cells)]:
        cells[i] += 1
    return "".join(BAR_LETTERS[n] * k for n, k in zip(cs.ACTION_NAMES, cells, strict=True))


def top_lines(ifs: Sequence[InterfaceStats], width: int, height: int, *, paused: bool,
              interval: float, only: str | None = None) -> list[str]:
    """One screen of ``top``: per interface (or only ``only``), each component's pps and
    its verdict mix as a bar, in chain order; cut to ``width`` x ``height``."""
    state = "PAUSED" if paused else f"every {interval:g}s"
    head = [f"xdp-dispatch top - {state} - q quit, p pause, tab next interface, a all"[:width],
            ""]
    body: list[str] = []
    bar_w = max(width - 48, 10)
    for i in ifs:
        if only is not None and i.interface != only:
            continue
        where = i.interface + (f" (netns {i.netns})" if i.netns else "")
        body.append(f"{where}: {i.kind} chain {i.chain_id}, stats {i.stats}"[:width])
        if i.stats == "off":
            body.append("  (no counters: xdp-dispatch stats enable IFACE)"[:width])
            continue
        body.append(("  %-4s %-16s %10s %12s  %s" % ("Slot", "Program", "pps", "bps",
                                                     "verdicts"))[:width])
        for c in i.components:
            body.append(("  %-4d %-16s %10d %12d  %s" % (
                c.slot, c.name[:16], c.packets, c.bytes * 8, verdict_bar(c, bar_w)))[:width])
        body.append("")
    if not body:
        body = ["no XDP chains"]
    return (head + body)[:height]
