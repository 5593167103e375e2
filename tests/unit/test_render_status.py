"""Status rendering: xdp-loader's exact layout (column widths, rule, rows)."""

from __future__ import annotations

from dispatcher import protocol
from dispatcher.render import status_text
from dispatcher.state import Component, DispatcherInfo, InterfaceState, ProgFacts


def _prog(pid: int, name: str, tag: str) -> ProgFacts:
    return ProgFacts(id=pid, name=name, full_name=name, tag=tag, btf_id=1, map_ids=())


def test_layout_matches_xdp_loader() -> None:
    cfg = protocol.decode_config(protocol.encode_config(2, [50, 50], [4, 4], [0, 0], False))
    st = InterfaceState(
        "veth0", 3, "skb", "dispatcher", main=_prog(10, "xdp_dispatcher", "90f686eb86991928"),
        dispatcher=DispatcherInfo(10, 2, False), config=cfg,
        programs=(Component(0, "xdp_p0", 19, "3b185187f1855c4c", 50, ("XDP_PASS",), False),
                  Component(1, "xdp_p1", 21, "3b185187f1855c4c", 50, ("XDP_PASS",), False)))
    none = InterfaceState("lo", 1, None, "none")
    text = status_text([st, none])
    # The lines below are xdp-loader 1.3.1's output (shared/reference/machines.md), plus our
    # protocol-version note at the end of the dispatcher row.
    assert text.splitlines() == [
        "CURRENT XDP PROGRAM STATUS:",
        "",
        "Interface        Prio  Program name      Mode     ID   Tag               Chain actions",
        "-" * 86,
        "veth0                  xdp_dispatcher    skb      10   90f686eb86991928  (dispatcher v2)",
        " =>              50     xdp_p0                    19   3b185187f1855c4c  XDP_PASS",
        " =>              50     xdp_p1                    21   3b185187f1855c4c  XDP_PASS",
        "lo                     <No XDP program loaded!>",
        "",
    ]


def test_error_of_one_interface_does_not_hide_others() -> None:
    bad = InterfaceState("eth9", 9, None, "none", error="cannot read")
    ok = InterfaceState("lo", 1, None, "none")
    lines = status_text([bad, ok]).splitlines()
    assert any("eth9" in ln and "cannot read" in ln for ln in lines)
    assert any(ln.startswith("lo ") for ln in lines)
