"""The table of which libxdp releases read / extend each dispatcher version, and status."""

from __future__ import annotations

from dispatcher.chain import protocol
from dispatcher.chain.state import Component, DispatcherInfo, InterfaceState, ProgFacts
from dispatcher.chain.versions import Releases, libxdp_compat, writer_of
from dispatcher.render import status_json, status_text


def _prog(pid: int, name: str) -> ProgFacts:
    return ProgFacts(id=pid, name=name, full_name=name, tag="00" * 8, btf_id=1, map_ids=())


def test_size_decides_who_reads() -> None:
    # libxdp 1.3-1.5 read a v2 value only at exactly 124 bytes; 1.6 reads v2 of any size
    # >= 124 and its own v3 only at exactly 128.
    assert libxdp_compat(2, 124).reads == Releases("1.3.0", None)
    assert libxdp_compat(2, 128).reads == Releases("1.6.0", None)
    assert libxdp_compat(2, 128).extends is None
    assert libxdp_compat(3, 124).reads is None


def test_libxdp_table() -> None:
    v1, v2, v3 = libxdp_compat(1, 84), libxdp_compat(2, 124), libxdp_compat(3, 128)
    assert (v1.reads, v1.extends) == (Releases("1.0.0", None), Releases("1.0.0", "1.2.10"))
    assert (v2.reads, v2.extends) == (Releases("1.3.0", None), Releases("1.3.0", "1.5.8"))
    assert (v3.reads, v3.extends) == (Releases("1.6.0", None), Releases("1.6.0", None))
    assert not v3.note and "XDP_ATTACH_DEVBIND" in libxdp_compat(3, 128, devbound=True).note
    assert libxdp_compat(3, 124).reads is None          # wrong size: nobody reads it
    assert libxdp_compat(4, 128).reads is None
    assert str(v2.extends) == "1.3.0 to 1.5.8" and str(v3.reads) == "1.6.0 and later"
    assert [writer_of(v) for v in ("1.2.10", "1.3.1", "1.5.4", "1.6.3", "2.0.0", "x")] == [
        1, 2, 2, 3, 3, 0]


def _state(version: int) -> InterfaceState:
    cfg = protocol.decode_config(protocol.encode_config(version, [10, 50], [4, 4], [0, 0], False))
    return InterfaceState(
        "veth0", 3, "skb", "dispatcher", main=_prog(10, "xdp_dispatcher"),
        dispatcher=DispatcherInfo(10, version, False), config=cfg,
        programs=(Component(0, "a", 19, "00" * 8, 10, ("XDP_PASS",), False),))


def test_status_says_version_and_libxdp() -> None:
    js = status_json([_state(2), _state(3), InterfaceState("lo", 1, None, "none")])
    assert js[0]["dispatcher_version"] == 2
    assert js[0]["libxdp"] == {"reads": {"first": "1.3.0", "last": None},
                               "extends": {"first": "1.3.0", "last": "1.5.8"}, "note": None}
    assert js[1]["dispatcher_version"] == 3
    assert js[1]["libxdp"]["extends"] == {"first": "1.6.0", "last": None}
    assert js[1]["dispatcher"] == {"id": 10, "version": 3, "frags": False, "devbound": False}
    assert js[0]["dispatcher"] == {"id": 10, "version": 2, "frags": False}   # keys unchanged
    assert js[2]["dispatcher_version"] is None and js[2]["libxdp"] is None
    # a linked chain is one plain program to libxdp: no dispatcher version, no libxdp info
    linked = InterfaceState("veth1", 4, "skb", "linked", main=_prog(77, "xdp_chain"),
                            dispatcher=DispatcherInfo(77, 1, False, name="xdp_chain"))
    (lj,) = status_json([linked])
    assert lj["dispatcher_version"] is None and lj["libxdp"] is None
    assert "libxdp" not in status_text([linked])
    lines = status_text([_state(3)]).splitlines()
    assert lines[6] == (" " * 19 + "dispatcher v3: read by libxdp 1.6.0 and later, "
                        "extended by 1.6.0 and later")


def test_a_packet_changing_component_narrows_who_extends() -> None:
    """Issue 13 (9): on a kernel that checks packet-changing extensions, libxdp before
    1.5.5 (stubs without the no-op call) cannot re-attach such a component, so it cannot
    extend the chain; status says which component and why."""
    v1, v2, v3 = (libxdp_compat(v, size, changes_packets=("rw",))
                  for v, size in ((1, 84), (2, 124), (3, 128)))
    assert v2.extends == Releases("1.5.5", "1.5.8") and v2.reads == Releases("1.3.0", None)
    assert v1.extends is None                             # 1.0-1.2: none has the no-op
    assert v3.extends == Releases("1.6.0", None)
    assert v2.note == "rw changes packet data: libxdp before 1.5.5 cannot re-attach it on " \
                      "this kernel"
    two = libxdp_compat(3, 128, devbound=True, changes_packets=("a", "b"))
    assert two.note == ("device-bound: libxdp adds to it only for callers passing "
                        "XDP_ATTACH_DEVBIND; xdp-loader cannot; a, b change packet data: "
                        "libxdp before 1.5.5 cannot re-attach them on this kernel")
    assert libxdp_compat(2, 128, changes_packets=("rw",)) == libxdp_compat(2, 128)  # no extender


def test_status_names_packet_changing_components_only_where_the_kernel_checks() -> None:
    from dispatcher.record import replace

    st = _state(2)
    rw = replace(st.programs[0], changes_packets=True)
    st = replace(st, programs=(rw, replace(rw, slot=1, name="b", changes_packets=False)))
    (js,) = status_json([replace(st, packet_check=True)])
    assert js["libxdp"]["extends"] == {"first": "1.5.5", "last": "1.5.8"}
    assert js["libxdp"]["note"].startswith("a changes packet data")
    assert [p["changes_packet_data"] for p in js["programs"]] == [True, False]
    assert "extended by 1.5.5 to 1.5.8 (a changes packet data: libxdp before 1.5.5" in \
        status_text([replace(st, packet_check=True)])
    (old,) = status_json([st])                          # a kernel without the check
    assert old["libxdp"]["extends"] == {"first": "1.3.0", "last": "1.5.8"}
    assert old["libxdp"]["note"] is None
    assert "changes_packet_data" not in status_json([_state(2)])[0]["programs"][0]


def test_which_kernels_check_packet_changing_extensions() -> None:
    from dispatcher.kernel.packet_changes import kernel_checks as checks

    assert [checks(r) for r in ("6.1.0-57-amd64", "6.12.25", "6.12.26", "6.12.95+deb12-amd64",
                                "6.13", "6.18.44-fc-v1147", "7.2.13+deb14-amd64", "5.15.0")] \
        == [False, False, True, True, True, True, True, False]


def test_helper_calls_are_read_from_xlated_instructions() -> None:
    from dispatcher.kernel.packet_changes import helper_calls
    from dispatcher.obj import insn as bi

    prog = bi.encode([bi.mov64_reg(6, 1), bi.call_helper(44), bi.call_pseudo(1),
                      bi.mov64_imm(0, 2), bi.exit_insn(), bi.call_helper(-5), bi.exit_insn()])
    assert helper_calls(prog) == [44, -5]
