"""Dispatcher config layouts v1/v2/v3 against bytes real libxdp builds wrote.

Fixtures: tests/fixtures/dispatcher-config/ (README there says where each came from)."""

from __future__ import annotations

import os
import struct

import pytest

from dispatcher.chain import protocol
from dispatcher.chain.state import ProgFacts, components_from_config

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "dispatcher-config")


def fixture(name: str) -> bytes:
    with open(os.path.join(FIXTURES, name + ".hex")) as f:
        return bytes.fromhex(f.read().strip())


def fixtures_named(suffix: str) -> list[str]:
    return sorted(n[:-4] for n in os.listdir(FIXTURES) if n.endswith(suffix + ".hex"))


# libxdp's own chains of bpf/examples/{xdp_runcfg,xdp_frags,xdp_pass}.o (sorted by libxdp:
# priority 10 first, then 50 by name).
XDP_LOADER = {"libxdp-1.3.1-xdp-loader": 2, "libxdp-1.5.4-xdp-loader": 2,
              "libxdp-1.6.3-xdp-loader": 3}
ALL = sorted(n[:-4] for n in os.listdir(FIXTURES) if n.endswith(".hex"))


def test_fixtures_present() -> None:
    assert set(XDP_LOADER) <= set(ALL)
    assert "v1-from-libxdp-1.3.1-xdp-loader" in ALL
    for ver in ("1.3.1", "1.5.4", "1.6.3"):
        assert {f"libxdp-{ver}-mixed-frags", f"libxdp-{ver}-all-frags"} <= set(ALL)
    assert "libxdp-1.6.3-devbound" in ALL


@pytest.mark.parametrize("name", ALL)
def test_round_trip_is_byte_exact(name: str) -> None:
    raw = fixture(name)
    btf = 1 if name.startswith("v1-") else 0          # v1 has no magic: the BTF marker says 1
    cfg = protocol.decode_config(raw, btf_version=btf)
    assert len(raw) == protocol.LAYOUT_SIZE[cfg.version] == cfg.size
    assert protocol.encode(cfg) == raw


@pytest.mark.parametrize("name", sorted(XDP_LOADER))
def test_xdp_loader_chains_decode_exactly(name: str) -> None:
    cfg = protocol.decode_config(fixture(name))
    assert cfg.version == XDP_LOADER[name]
    assert (cfg.magic, cfg.num_progs_enabled) == (236, 3)
    assert cfg.run_prios == (10, 50, 50) + (0,) * 7
    assert [cfg.slot_actions(i) for i in range(3)] == [
        ("XDP_DROP", "XDP_PASS"), ("XDP_PASS",), ("XDP_PASS",)]
    assert all(a >> 31 for a in cfg.chain_call_actions[:3])
    assert cfg.chain_call_actions[3:] == (0,) * 7
    assert not cfg.is_xdp_devbound
    # The same slots encoded by us give libxdp's bytes.
    assert protocol.encode_config(cfg.version, [10, 50, 50], [6, 4, 4], [0, 0, 0],
                                  frags=cfg.is_xdp_frags) == fixture(name)


def test_v1_layout() -> None:
    raw = fixture("v1-from-libxdp-1.3.1-xdp-loader")
    assert len(raw) == 84
    cfg = protocol.decode_config(raw, btf_version=1)
    assert (cfg.version, cfg.magic, cfg.num_progs_enabled) == (1, 0, 3)
    assert cfg.run_prios[:3] == (10, 50, 50)
    assert cfg.program_flags == (0,) * 10 and not cfg.is_xdp_frags
    # a v1 value is only recognised through the BTF marker
    with pytest.raises(ValueError, match="no dispatcher version"):
        protocol.decode_config(raw)


def test_size_rules() -> None:
    v2 = fixture("libxdp-1.5.4-xdp-loader")
    v3 = fixture("libxdp-1.6.3-xdp-loader")
    v1 = fixture("v1-from-libxdp-1.3.1-xdp-loader")
    assert (len(v1), len(v2), len(v3)) == (84, 124, 128)
    with pytest.raises(ValueError, match="83 bytes, expected 84"):
        protocol.decode_config(v1[:83], btf_version=1)
    with pytest.raises(ValueError, match="123 bytes, expected 124"):
        protocol.decode_config(v2[:123])
    # v3 must be exactly 128: shorter or longer is refused (libxdp: EINVAL)
    for size in (124, 127, 129, 132):
        value = (v3 + bytes(8))[:size]
        with pytest.raises(ValueError, match=f"{size} bytes, expected exactly 128"):
            protocol.decode_config(value)
    assert protocol.decode_config(v3).size == 128
    # a longer v2 value is read (libxdp >= 1.6 does) but 1.3-1.5 would refuse it
    assert protocol.decode_config(v2 + bytes(4)).size == 128
    # the encoder writes exactly the layout size
    for version, size in ((2, 124), (3, 128)):
        assert len(protocol.encode_config(version, [1], [4], [0], frags=False)) == size


def test_devbound_is_the_byte_at_offset_124() -> None:
    v3 = bytearray(fixture("libxdp-1.6.3-xdp-loader"))
    assert not protocol.decode_config(bytes(v3)).is_xdp_devbound
    for off, expect in ((124, True), (123, False), (125, False), (127, False), (3, False)):
        b = bytearray(v3)
        b[off] |= 1
        cfg = protocol.decode_config(bytes(b))
        assert cfg.is_xdp_devbound is expect, off
    # in v2 the byte does not exist: a v2 value of 128 bytes is not device-bound
    v2 = fixture("libxdp-1.5.4-xdp-loader")
    assert not protocol.decode_config(v2 + b"\1\0\0\0").is_xdp_devbound
    # writing: devbound needs v3 and marks every used slot BPF_F_XDP_DEV_BOUND_ONLY
    b = protocol.encode_config(3, [1, 2], [4, 4], [0, 0x20], frags=False, devbound=True)
    assert b[124] == 1 and b[125:] == bytes(3)
    assert struct.unpack_from("<3I", b, 84) == (0x40, 0x60, 0)
    with pytest.raises(ValueError, match="needs version 3"):
        protocol.encode_config(2, [1], [4], [0], frags=False, devbound=True)


def test_devbound_fixture() -> None:
    raw = fixture("libxdp-1.6.3-devbound")
    cfg = protocol.decode_config(raw)
    assert cfg.version == 3 and cfg.is_xdp_devbound and raw[124] == 1
    assert cfg.program_flags[:4] == (0x40, 0x60, 0x40, 0)     # bound; the middle one also frags
    assert [cfg.slot_frags(i) for i in range(3)] == [False, True, False]
    # libxdp's own rule, reproduced by ours: devbound marks every used slot
    assert protocol.encode_config(3, [10, 50, 50], [6, 4, 4], [0, 0x20, 0], frags=False,
                                  devbound=True) == raw


def _prog(pid: int, name: str) -> ProgFacts:
    return ProgFacts(id=pid, name=name, full_name=name, tag="00" * 8, btf_id=1, map_ids=())


def test_component_frags_come_from_their_own_slot_flags() -> None:
    mixed = fixtures_named("-mixed-frags")
    assert len(mixed) == 3
    progs: list[ProgFacts | None] = [_prog(1, "xdp_runcfg"), _prog(2, "xdp_frags"), _prog(3, "xdp_pass")]
    for name in mixed:
        cfg = protocol.decode_config(fixture(name))
        assert not cfg.is_xdp_frags                    # one non-frags component clears it
        comps, problems = components_from_config(cfg, progs)
        assert [c.frags for c in comps] == [False, True, False] and not problems
    for name in fixtures_named("-all-frags"):
        cfg = protocol.decode_config(fixture(name))
        assert cfg.is_xdp_frags
        comps, _ = components_from_config(cfg, progs)
        assert [c.frags for c in comps] == [True] * 3


def test_per_slot_frags_without_fixtures() -> None:
    # The same rule on bytes we build: slot frags differ from the dispatcher's flag both ways.
    cfg = protocol.decode_config(protocol.encode_config(2, [1, 2], [4, 4], [0x20, 0], frags=False))
    comps, _ = components_from_config(cfg, [_prog(1, "a"), _prog(2, "b")])
    assert [c.frags for c in comps] == [True, False]
    cfg = protocol.decode_config(protocol.encode_config(3, [1, 2], [4, 4], [0, 0], frags=True))
    comps, _ = components_from_config(cfg, [_prog(1, "a"), _prog(2, "b")])
    assert [c.frags for c in comps] == [False, False]


def test_slot_count_bounds() -> None:
    full = protocol.encode_config(3, list(range(10)), [4] * 10, [0] * 10, frags=False)
    assert protocol.decode_config(full).num_progs_enabled == 10       # a full chain is fine
    with pytest.raises(ValueError, match="at most 10"):
        protocol.encode_config(2, [1] * 11, [4] * 11, [0] * 11, frags=False)
    b = bytearray(full)
    b[2] = 11
    with pytest.raises(ValueError, match="claims 11 programs"):
        protocol.decode_config(bytes(b))
    with pytest.raises(ValueError, match="cannot be written"):
        protocol.encode_config(1, [1], [4], [0], frags=False)


def test_the_host_libxdp_version_comes_from_its_dispatcher_objects_marker(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from dispatcher.chain.freplace import program

    assert program.libxdp_dispatcher_paths({"LIBXDP_OBJECT_PATH": "/x/bpf"}) == [
        "/x/bpf/xdp-dispatcher.o"]
    for version, path in ((3, program.OBJECT_V3), (2, program.OBJECT)):
        shutil.copyfile(str(path), tmp_path / "xdp-dispatcher.o")
        monkeypatch.setenv("LIBXDP_OBJECT_PATH", str(tmp_path))
        program.host_libxdp.cache_clear()
        assert program.host_libxdp() == (version, str(tmp_path / "xdp-dispatcher.o"))
        assert program.host_libxdp_probe().detail.endswith(
            f"writes dispatcher v{version}: by default a new chain is v{version}")
    monkeypatch.setenv("LIBXDP_OBJECT_PATH", str(tmp_path / "none"))
    program.host_libxdp.cache_clear()
    assert program.host_dispatcher_version() == 0        # no libxdp: the plan writes v2
    assert not program.host_libxdp_probe().supported
    assert program.host_libxdp_probe().detail.endswith("by default a new chain is v2")
    program.host_libxdp.cache_clear()
