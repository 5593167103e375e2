"""plan / apply of config files on the real kernel (chains need freplace: VM tier)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.cli import assert_one_line_error, run_cli
from tests.host import nettools
from tests.host.counters import counter_packets
from tests.objects import EXAMPLES_DIR

pytestmark = pytest.mark.host_kernel


@pytest.fixture
def state_dir(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    d = tmp_path / "state"
    monkeypatch.setenv("XDP_DISPATCH_STATE_DIR", str(d))
    return d


def write_cfg(path, iface: str, programs: list[dict]) -> str:  # type: ignore[no-untyped-def,type-arg]
    import yaml

    progs = [{**p, "object": os.path.join(EXAMPLES_DIR, p["object"])} for p in programs]
    path.write_text(yaml.safe_dump({"version": 1, "interfaces": [
        {"name": iface, "mode": "skb", "programs": progs}]}))
    return str(path)


def plan(cfg: str, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    cp = run_cli("plan", cfg, "--json", *extra)
    assert cp.returncode in (0, 2), cp.stderr
    return cp.returncode, json.loads(cp.stdout)


def status(iface: str) -> dict:  # type: ignore[type-arg]
    import dispatcher

    (st,) = dispatcher.status(iface)
    return st.to_json()  # type: ignore[no-any-return]


@pytest.fixture
def veth(netns_veth):  # type: ignore[no-untyped-def]
    yield netns_veth
    run_cli("unload", netns_veth.host_if, "--all")


def test_single_program_apply_is_idempotent(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if, [{"name": "count", "object": "xdp_counter.o"}])
    rc, p = plan(cfg)
    assert rc == 2 and [i["action"] for i in p["interfaces"][0]["items"]] == ["add"]
    run_cli("apply", cfg, check=True)
    before = status(veth.host_if)
    rc, p = plan(cfg)
    assert rc == 0 and [i["action"] for i in p["interfaces"][0]["items"]] == ["keep"]
    cp = run_cli("apply", cfg, check=True)
    assert "Nothing to change." in cp.stdout
    assert status(veth.host_if) == before
    assert nettools.ping(veth.peer_ip, count=1)


def test_bad_config_changes_nothing(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"version: 1\ninterfaces:\n  - name: {veth.host_if}\n    mode: fast\n"
                   "    programs: []\n")
    cp = run_cli("apply", str(cfg))
    assert_one_line_error(cp, "bad.yaml:4:11", "mode")
    assert status(veth.host_if)["kind"] == "none"


@pytest.mark.freplace
def test_chain_apply_update_upgrade_remove(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    progs = [{"name": "icmp", "object": "xdp_drop_icmp.o", "priority": 20},
             {"name": "count", "object": "xdp_counter.o", "priority": 10},
             {"name": "pass", "object": "xdp_pass.o", "priority": 30}]
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if, progs)
    run_cli("apply", cfg, check=True)
    st = status(veth.host_if)
    disp = st["dispatcher"]["id"]
    ids = {p["name"]: p["id"] for p in st["programs"]}
    assert [p["name"] for p in st["programs"]] == ["xdp_counter", "xdp_drop_icmp", "xdp_pass"]
    counted = counter_packets(ids["xdp_counter"])
    assert not nettools.ping(veth.peer_ip, count=2)
    assert counter_packets(ids["xdp_counter"]) - counted >= 2   # the chain ran (slot 0 counted)
    # Idempotent: same dispatcher id.
    assert plan(cfg)[0] == 0
    run_cli("apply", cfg, check=True)
    assert status(veth.host_if)["dispatcher"]["id"] == disp
    # Priority change only: re-linked, not reloaded.
    progs[0]["priority"] = 5
    write_cfg(tmp_path / "c.yaml", veth.host_if, progs)
    rc, p = plan(cfg)
    assert rc == 2 and sorted(i["action"] for i in p["interfaces"][0]["items"]) == ["keep", "keep", "update"]
    run_cli("apply", cfg, check=True)
    st = status(veth.host_if)
    assert [p["name"] for p in st["programs"]] == ["xdp_drop_icmp", "xdp_counter", "xdp_pass"]
    assert {p["name"]: p["id"] for p in st["programs"]} == ids
    # Upgrade one entry (another object): the others keep their ids.
    progs[2]["object"] = "xdp_runcfg.o"
    write_cfg(tmp_path / "c.yaml", veth.host_if, progs)
    assert sorted(i["action"] for i in plan(cfg)[1]["interfaces"][0]["items"]) == ["keep", "keep", "upgrade"]
    run_cli("apply", cfg, check=True)
    st = status(veth.host_if)
    now = {p["name"]: p["id"] for p in st["programs"]}
    assert now["xdp_drop_icmp"] == ids["xdp_drop_icmp"] and now["xdp_counter"] == ids["xdp_counter"]
    assert "xdp_pass" not in now and "xdp_runcfg" in now
    # Remove an entry.
    write_cfg(tmp_path / "c.yaml", veth.host_if, progs[1:])
    run_cli("apply", cfg, check=True)
    assert [p["name"] for p in status(veth.host_if)["programs"]] == ["xdp_counter", "xdp_runcfg"]
    assert nettools.ping(veth.peer_ip, count=1)
    assert plan(cfg)[0] == 0


@pytest.mark.freplace
@pytest.mark.skipif(shutil.which("xdp-loader") is None, reason="xdp-loader not installed")
def test_foreign_programs_kept_unless_exclusive(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    subprocess.run(["xdp-loader", "load", "-m", "skb", "-P", "40", veth.host_if,
                    os.path.join(EXAMPLES_DIR, "xdp_pass.o")], check=True, capture_output=True)
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if,
                    [{"name": "count", "object": "xdp_counter.o", "priority": 10}])
    rc, p = plan(cfg)
    assert sorted(i["action"] for i in p["interfaces"][0]["items"]) == ["add", "foreign"]
    run_cli("apply", cfg, check=True)
    assert [(p["name"], p["priority"]) for p in status(veth.host_if)["programs"]] == [
        ("xdp_counter", 10), ("xdp_pass", 40)]
    assert plan(cfg)[0] == 0
    rc, p = plan(cfg, "--exclusive")
    assert rc == 2 and sorted(i["action"] for i in p["interfaces"][0]["items"]) == ["keep", "remove"]
    run_cli("apply", cfg, "--exclusive", check=True)
    assert [p["name"] for p in status(veth.host_if)["programs"]] == ["xdp_counter"]
