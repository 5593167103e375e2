"""The inlining switch of linked chains through the CLI and configs (issue 12): `load
--inline on|off`, kept by rebuilds, shown per slot by `status --json` and `plan`; the
config key ``inline`` planned and applied. The oracle table for inlined chains is in
test_linked.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.host import nettools
from tests.objects import example

pytestmark = pytest.mark.host_kernel


def _progs(v: nettools.VethNs, env: dict[str, str]) -> list[dict[str, object]]:
    cp = run_cli("status", v.peer_if, "--netns", v.netns, "--json", env=env)
    assert cp.returncode == 0, cp.stderr
    progs = json.loads(cp.stdout)["interfaces"][0]["programs"]
    assert isinstance(progs, list)
    return progs


def test_load_inline_switch_is_kept_by_rebuilds(netns_veth: nettools.VethNs,
                                                bpffs_dir: str) -> None:
    v = netns_veth
    env = {"LIBXDP_BPFFS": bpffs_dir}
    base = ("-m", "skb", "--netns", v.netns, "--dispatch", "linked")
    cp = run_cli("load", v.peer_if, *base, "--inline", "off", example("xdp_counter"),
                 example("xdp_drop_icmp"), env=env)
    assert cp.returncode == 0, cp.stderr
    try:
        progs = _progs(v, env)
        assert [(p["inlined"], p["not_inlined"]) for p in progs] == \
            [(False, "inlining is turned off")] * 2
        assert not nettools.ping(v.peer_ip, count=1, timeout=1)     # drop_icmp ends it
        # a rebuild without the flag keeps the chain's setting
        cp = run_cli("load", v.peer_if, *base, example("xdp_pass"), env=env)
        assert cp.returncode == 0, cp.stderr
        assert [p["inlined"] for p in _progs(v, env)] == [False] * 3
        cp = run_cli("load", v.peer_if, *base, "--inline", "on", example("xdp_globals"),
                     env=env)
        assert cp.returncode == 0, cp.stderr
        progs = _progs(v, env)
        assert [p["inlined"] for p in progs] == [True] * 4
        assert not any("not_inlined" in p for p in progs)
        assert not nettools.ping(v.peer_ip, count=1, timeout=1)
        cp = run_cli("load", v.peer_if, *base, "--inline", "maybe", example("xdp_pass"),
                     env=env)
        assert cp.returncode == 2 and "--inline" in cp.stderr and "Traceback" not in cp.stderr
    finally:
        run_cli("unload", v.peer_if, "--all", "--netns", v.netns, env=env)


def test_config_inline_key_plans_and_applies(netns_veth: nettools.VethNs, bpffs_dir: str,
                                             tmp_path: Path) -> None:
    """``inline: false|true`` per interface: applied on creation, shown by `plan` per kept
    slot, a difference alone is a planned change (``~ inline``) that apply makes."""
    import yaml

    v = netns_veth
    env = {"LIBXDP_BPFFS": bpffs_dir, "XDP_DISPATCH_STATE_DIR": str(tmp_path / "state")}
    cfg = tmp_path / "c.yaml"

    def write(inline: bool) -> str:
        cfg.write_text(yaml.safe_dump({"version": 1, "interfaces": [{
            "name": v.host_if, "mode": "skb", "dispatch": "linked", "inline": inline,
            "programs": [{"name": "count", "object": example("xdp_counter")},
                         {"name": "icmp", "object": example("xdp_drop_icmp")}]}]}))
        return str(cfg)

    try:
        assert run_cli("apply", write(False), env=env).returncode == 0
        cp = run_cli("status", v.host_if, "--json", env=env)
        progs = json.loads(cp.stdout)["interfaces"][0]["programs"]
        assert [p["inlined"] for p in progs] == [False, False]
        cp = run_cli("plan", str(cfg), env=env)
        assert cp.returncode == 0 and "not inlined: inlining is turned off" in cp.stdout, \
            cp.stdout
        cp = run_cli("plan", write(True), env=env)
        assert cp.returncode == 2 and "~ inline   off -> on" in cp.stdout, cp.stdout
        assert run_cli("apply", str(cfg), env=env).returncode == 0
        cp = run_cli("status", v.host_if, "--json", env=env)
        progs = json.loads(cp.stdout)["interfaces"][0]["programs"]
        assert [p["inlined"] for p in progs] == [True, True]
        assert run_cli("plan", str(cfg), env=env).returncode == 0
    finally:
        run_cli("unload", v.host_if, "--all", env=env)
