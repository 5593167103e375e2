"""dispatcher.chain.stats and dispatcher.stats' pure parts: derived "ended here", rates,
JSON keys and the Prometheus exposition (parsed with the client's own parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from dispatcher import stats as dstats
from dispatcher.chain import stats as cs


def _comp(slot: int, counts: list[tuple[int, int]], last: bool = False) -> cs.ComponentStats:
    return cs.component_stats(slot, f"c{slot}", 10 + slot, ("XDP_PASS",), last, counts)


def test_ended_is_what_does_not_continue_and_everything_at_the_last_slot() -> None:
    counts = [(1, 10), (2, 20), (4, 40), (0, 0), (0, 0), (8, 80)]
    mid, last = _comp(0, counts), _comp(1, counts, last=True)
    assert (mid.packets, mid.bytes) == (15, 150)
    assert mid.ended == 1 + 2 + 8 and last.ended == 15
    j = mid.to_json()
    assert list(j) == ["slot", "name", "priority", "packets", "bytes", "ended", "actions"]
    assert list(j["actions"]) == [*cs.ACTION_NAMES]  # type: ignore[call-overload]


def test_rates_per_second_and_never_negative() -> None:
    a = _comp(0, [(0, 0), (0, 0), (100, 6400), (0, 0), (0, 0), (5, 0)])
    b = _comp(0, [(0, 0), (0, 0), (300, 19200), (0, 0), (0, 0), (0, 0)])
    r = cs.rates(a, b, 2.0)
    assert r.actions[2] == cs.ActionCount(100, 6400) and r.actions[5].packets == 0


def test_prometheus_names_labels_and_values() -> None:
    comps = (_comp(0, [(0, 0), (3, 300), (7, 700), (0, 0), (0, 0), (0, 0)]),
             _comp(1, [(0, 0)] * 6, last=True))
    ifs = [dstats.InterfaceStats("eth0", "", 2, "linked", "native", 42, "1", "counts", comps)]
    fams = {f.name: f for f in text_string_to_metric_families(dstats.prometheus(ifs).decode())}
    assert set(fams) == {"xdp_dispatch_component_packets", "xdp_dispatch_component_bytes",
                         "xdp_dispatch_chain_info"}
    pk = {(s.labels["program"], s.labels["action"]): s.value
          for s in fams["xdp_dispatch_component_packets"].samples}
    # verdicts never returned are left out; an idle component keeps its XDP_PASS series
    assert pk == {("c0", "XDP_DROP"): 3, ("c0", "XDP_PASS"): 7, ("c1", "XDP_PASS"): 0}
    s = fams["xdp_dispatch_component_bytes"].samples[0]
    assert s.name == "xdp_dispatch_component_bytes_total" and s.value == 300
    assert s.labels == {"interface": "eth0", "netns": "", "program": "c0", "priority": "10",
                        "action": "XDP_DROP"}
    [info] = fams["xdp_dispatch_chain_info"].samples
    assert info.value == 1 and info.labels == {"interface": "eth0", "netns": "",
                                               "mode": "native", "kind": "linked",
                                               "dispatcher_version": "1"}


def test_verdict_bar_shares_and_top_screen_fits_80x24() -> None:
    c = _comp(0, [(1, 0), (0, 0), (2, 0), (1, 0), (0, 0), (0, 0)])
    assert dstats.verdict_bar(c, 8) == "AAPPPPTT"
    assert dstats.verdict_bar(c, 3) in ("APT", "PPT", "APP")
    assert len(dstats.verdict_bar(c, 7)) == 7
    assert dstats.verdict_bar(_comp(1, [(0, 0)] * 6), 5) == "     "
    comps = tuple(_comp(i, [(0, 0), (0, 0), (9, 900), (0, 0), (0, 0), (0, 0)])
                  for i in range(10))
    ifs = [dstats.InterfaceStats(f"eth{k}", "", k, "linked", "skb", 1, "1", "counts", comps)
           for k in range(3)]
    lines = dstats.top_lines(ifs, 79, 24, paused=False, interval=1.0)
    assert len(lines) == 24 and max(map(len, lines)) <= 79
    assert lines[3].split()[:3] == ["Slot", "Program", "pps"]
    row = lines[4].split()
    assert row[:4] == ["0", "c0", "9", "7200"] and set(row[4]) == {"P"}
    only = dstats.top_lines(ifs, 79, 24, paused=True, interval=1.0, only="eth2")
    assert "PAUSED" in only[0] and only[2].startswith("eth2:")
