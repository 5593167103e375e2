"""Status rendering: xdp-loader's exact layout (column widths, rule, rows)."""

from __future__ import annotations

from dispatcher.chain import protocol
from dispatcher.chain.state import Component, DispatcherInfo, InterfaceState, ProgFacts
from dispatcher.render import status_text


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
    # protocol-version note at the end of the dispatcher row and, after the chain, which
    # libxdp releases read / extend it.
    assert text.splitlines() == [
        "CURRENT XDP PROGRAM STATUS:",
        "",
        "Interface        Prio  Program name      Mode     ID   Tag               Chain actions",
        "-" * 86,
        "veth0                  xdp_dispatcher    skb      10   90f686eb86991928  (dispatcher v2)",
        " =>              50     xdp_p0                    19   3b185187f1855c4c  XDP_PASS",
        " =>              50     xdp_p1                    21   3b185187f1855c4c  XDP_PASS",
        "                   dispatcher v2: read by libxdp 1.3.0 and later, extended by 1.3.0 to 1.5.8",
        "lo                     <No XDP program loaded!>",
        "",
    ]


def test_error_of_one_interface_does_not_hide_others() -> None:
    bad = InterfaceState("eth9", 9, None, "none", error="cannot read")
    ok = InterfaceState("lo", 1, None, "none")
    lines = status_text([bad, ok]).splitlines()
    assert any("eth9" in ln and "cannot read" in ln for ln in lines)
    assert any(ln.startswith("lo ") for ln in lines)


def test_managed_by_column_and_json() -> None:
    from dispatcher.render import status_json

    cfg = protocol.decode_config(protocol.encode_config(2, [10, 50], [4, 4], [0, 0], False))
    st = InterfaceState(
        "veth0", 3, "skb", "dispatcher", main=_prog(10, "xdp_dispatcher", "90f686eb86991928"),
        dispatcher=DispatcherInfo(10, 2, False), config=cfg,
        programs=(Component(0, "xdp_counter", 19, "3b185187f1855c4c", 10, ("XDP_PASS",), False),
                  Component(1, "xdp_pass", 21, "3b185187f1855c4c", 50,
                            ("XDP_DROP", "XDP_PASS"), False)))
    legacy = InterfaceState("veth1", 4, "skb", "legacy", main=_prog(30, "xdp_pass", "00" * 8))
    managed = {19: "/etc/xdp-dispatch/config.yaml", 30: "xdp-dispatch"}
    lines = status_text([st, legacy], managed).splitlines()
    # xdp-loader's columns first, unchanged; "Managed by" after the chain actions.
    assert lines[2:] == [
        "Interface        Prio  Program name      Mode     ID   Tag               Chain actions"
        "      Managed by",
        "-" * 121,
        "veth0                  xdp_dispatcher    skb      10   90f686eb86991928  (dispatcher v2)",
        " =>              10     xdp_counter               19   3b185187f1855c4c  XDP_PASS"
        "           /etc/xdp-dispatch/config.yaml",
        " =>              50     xdp_pass                  21   3b185187f1855c4c  XDP_DROP,XDP_PASS"
        "  -",
        "                   dispatcher v2: read by libxdp 1.3.0 and later, extended by 1.3.0 to 1.5.8",
        "veth1                  xdp_pass          skb      30   0000000000000000"
        "                     xdp-dispatch",
        "",
    ]
    # without ownership data: exactly xdp-loader's layout
    assert "Managed by" not in status_text([st])
    js = status_json([st, legacy], managed)
    assert [p["managed_by"] for p in js[0]["programs"]] == ["/etc/xdp-dispatch/config.yaml", None]
    assert js[1]["main"]["managed_by"] == "xdp-dispatch"
    assert js[0]["programs"][0]["id"] == 19 and "slot" in js[0]["programs"][0]   # keys kept
    assert "managed_by" not in status_json([st])[0]["programs"][0]


def test_linked_chain_rows_and_managed_by() -> None:
    from dispatcher.render import status_json

    st = InterfaceState(
        "lo", 1, "skb", "linked", main=_prog(77, "xdp_chain", "fe4596f2ce4c57da"),
        dispatcher=DispatcherInfo(77, 1, False),
        programs=(Component(0, "pass", 0, "", 10, ("XDP_PASS",), False,
                            source="/etc/xdp-dispatch/config.yaml"),
                  Component(1, "counter", 0, "", 20, ("XDP_PASS",), False)))
    lines = status_text([st], {}).splitlines()
    assert lines[4].startswith("lo                     xdp_chain         skb      77   "
                               "fe4596f2ce4c57da  (linked chain)")
    assert lines[4].endswith("(linked chain)")          # the chain row has no manager cell
    # components have no program id or tag; a slot put there by `apply` names its config,
    # one put there by `load` is ours without a config.
    assert lines[5].split()[:6] == ["=>", "10", "pass", "-", "-", "XDP_PASS"]
    assert lines[5].endswith("/etc/xdp-dispatch/config.yaml")
    assert lines[6].endswith("  xdp-dispatch")
    js = status_json([st], {})[0]
    assert js["kind"] == "linked"
    assert [p["id"] for p in js["programs"]] == [None, None]
    assert [p["managed_by"] for p in js["programs"]] == ["/etc/xdp-dispatch/config.yaml",
                                                         "xdp-dispatch"]


def test_long_names_keep_the_columns_aligned() -> None:
    cfg = protocol.decode_config(protocol.encode_config(2, [10, 50], [4, 4], [0, 0], False))
    long_comp = "a_component_with_a_long_name"
    st = InterfaceState(
        "veth-with-long-name", 3, "skb", "dispatcher",
        main=_prog(123456, "xdp_dispatcher", "90f686eb86991928"),
        dispatcher=DispatcherInfo(123456, 2, False), config=cfg,
        programs=(Component(0, long_comp, 1234567, "3b185187f1855c4c", 10, ("XDP_PASS",), False),
                  Component(1, "xdp_pass", 21, "3b185187f1855c4c", 50, ("XDP_PASS",), False)))
    lines = status_text([st, InterfaceState("lo", 1, None, "none")], {21: "x.yaml"}).splitlines()
    header, rule, main, c0, c1 = lines[2:7]
    # every column starts where its header starts, whatever the name lengths
    for col in ("Prio", "Program name", "Mode", "ID", "Tag", "Chain actions", "Managed by"):
        assert col in header
    tag_at, id_at = header.index("Tag"), header.index("ID")
    assert main.index("90f686eb86991928") == tag_at
    assert c0.index("3b185187f1855c4c") == c1.index("3b185187f1855c4c") == tag_at
    assert main.index("123456") == c0.index("1234567") == c1.index("21") == id_at
    assert c0.index(long_comp) == c1.index("xdp_pass") == header.index("Program name") + 1
    assert c1.index("x.yaml") == header.index("Managed by")
    assert len(rule) >= len(header) and set(rule) == {"-"}
