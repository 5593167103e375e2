"""`status` on the real kernel: the "managed by" column / `managed_by` key, and drift
against a config file (`--config`, exit 0 no drift, 2 drift, 1 unreadable interface)."""

from __future__ import annotations

import json
import os

import pytest

from tests.cli import assert_one_line_error, run_cli
from tests.host import test_apply as _apply
from tests.host.test_apply import write_cfg
from tests.objects import EXAMPLES_DIR

pytestmark = [pytest.mark.host_kernel, pytest.mark.once]

veth = _apply.veth
state_dir = _apply.state_dir


def status_json(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    cp = run_cli("status", *args, "--json")
    assert cp.returncode in (0, 2), cp.stderr
    return cp.returncode, json.loads(cp.stdout)


def drift_items(d: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(i["kind"], i["name"]) for i in d["drift"]["interfaces"][0]["items"]]


def test_managed_by_and_drift_of_one_program(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    entry = {"name": "filter", "object": "xdp_settings.o", "priority": 10,
             "globals": {"ports": [53, 0, 0, 0]}}
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if, [entry])
    run_cli("apply", cfg, check=True)
    cp = run_cli("status", veth.host_if, "--config", cfg)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert lines[2].split()[-2:] == ["Managed", "by"]
    row = next(ln for ln in lines if "xdp_settings" in ln)
    assert row.endswith(os.path.abspath(cfg))
    assert lines[-1] == "No drift."
    rc, d = status_json(veth.host_if, "--config", cfg)
    (iface,) = d["interfaces"]
    pid = (iface["programs"][0] if iface["kind"] == "dispatcher" else iface["main"])["id"]
    who = (iface["programs"][0] if iface["kind"] == "dispatcher" else iface["main"])["managed_by"]
    assert rc == 0 and who == os.path.abspath(cfg)
    assert d["drift"]["drifted"] is False and d["drift"]["config"] == cfg
    # The file changes: priority and globals differ from the kernel.
    entry["priority"] = 12
    entry["globals"] = {"ports": [54, 0, 0, 0]}
    second = {"name": "count", "object": "xdp_counter.o", "priority": 20}
    write_cfg(tmp_path / "c.yaml", veth.host_if, [entry, second])
    rc, d = status_json(veth.host_if, "--config", cfg)
    assert rc == 2 and d["drift"]["drifted"] is True
    import dispatcher  # the Python API gives the same

    assert dispatcher.status_report(veth.host_if, config=cfg).to_json() == d
    assert [p.changed for p in dispatcher.plan_config(cfg)] == [True]
    assert dispatcher.check_config(cfg).interfaces[0].programs[0].priority == 12
    items = d["drift"]["interfaces"][0]["items"]
    assert [(i["kind"], i["name"], i["id"]) for i in items] == [
        ("differs", "filter", pid), ("missing", "count", None)]
    assert items[0]["fields"] == {"priority": {"kernel": 10, "file": 12}}
    assert items[0]["detail"].startswith("globals differ from what was loaded")
    cp = run_cli("status", "--config", cfg)             # all interfaces, text
    assert cp.returncode == 2
    assert "  differs  filter" in cp.stdout and "  missing  count" in cp.stdout
    assert "Drift: 2 difference(s) on 1 interface(s)." in cp.stdout
    # Unloaded behind the tool's back: both are missing.
    run_cli("unload", veth.host_if, "--all", check=True)
    rc, d = status_json(veth.host_if, "--config", cfg)
    assert rc == 2 and drift_items(d) == [("missing", "filter"), ("missing", "count")]


def test_foreign_program_is_listed_not_drift(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    # `load` keeps no ownership record: to `apply`, such a program is foreign; `status`
    # says xdp-dispatch put it there, whatever the chain kind (attached directly here,
    # a freplace component in the VMs, as for a linked chain's components).
    run_cli("load", veth.host_if, os.path.join(EXAMPLES_DIR, "xdp_pass.o"), "-m", "skb",
            check=True)
    rc, d = status_json(veth.host_if)
    iface = d["interfaces"][0]
    progs = iface["programs"] if iface["kind"] == "dispatcher" else [iface["main"]]
    assert rc == 0 and [p["managed_by"] for p in progs] == ["xdp-dispatch"]
    cp = run_cli("status", veth.host_if)
    row = next(ln for ln in cp.stdout.splitlines() if "xdp_pass" in ln)
    assert row.split()[-1] == "xdp-dispatch"
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if,
                    [{"name": "count", "object": "xdp_counter.o"}])
    rc, d = status_json(veth.host_if, "--config", cfg)
    assert rc == 2 and drift_items(d) == [("missing", "count"), ("foreign", "xdp_pass")]


def test_unknown_interface_in_config(tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    """A config naming an absent interface is a config error (as for `plan`): one line
    with file:line:col on stderr, exit 2, no status printed."""
    cfg = write_cfg(tmp_path / "c.yaml", "xdpd-nonexist", [{"name": "p", "object": "xdp_pass.o"}])
    cp = run_cli("status", "--config", cfg, "--json")
    assert_one_line_error(cp, "c.yaml:3:9: interfaces[0].name:", "xdpd-nonexist")
    assert cp.returncode == 2 and cp.stdout == ""


@pytest.mark.freplace
def test_chain_drift_and_managed_by(veth, tmp_path, state_dir) -> None:  # type: ignore[no-untyped-def]
    progs = [{"name": "pass", "object": "xdp_pass.o", "priority": 10},
             {"name": "count", "object": "xdp_counter.o", "priority": 20}]
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if, progs)
    run_cli("apply", cfg, check=True)
    rc, d = status_json(veth.host_if, "--config", cfg)
    assert rc == 0
    assert [p["managed_by"] for p in d["interfaces"][0]["programs"]] == [os.path.abspath(cfg)] * 2
    progs[1]["chain_call_actions"] = ["XDP_PASS", "XDP_DROP"]
    write_cfg(tmp_path / "c.yaml", veth.host_if, progs[1:])
    rc, d = status_json(veth.host_if, "--config", cfg)
    items = d["drift"]["interfaces"][0]["items"]
    assert rc == 2 and [(i["kind"], i["name"]) for i in items] == [("differs", "count"),
                                                                  ("extra", "pass")]
    assert items[0]["fields"] == {"chain_call_actions": {"kernel": ["XDP_PASS"],
                                                         "file": ["XDP_DROP", "XDP_PASS"]}}
    run_cli("apply", cfg, check=True)
    assert status_json(veth.host_if, "--config", cfg)[0] == 0


def test_a_program_another_tool_attached_is_managed_by_nobody(veth, state_dir) -> None:  # type: ignore[no-untyped-def]
    """iproute2 attaches a program: `status` shows "-" (JSON null), where one `load`
    attached shows xdp-dispatch."""
    import subprocess

    subprocess.run(["ip", "link", "set", "dev", veth.host_if, "xdpgeneric", "obj",
                    os.path.join(EXAMPLES_DIR, "xdp_pass.o"), "sec", "xdp"], check=True)
    rc, d = status_json(veth.host_if)
    assert rc == 0 and d["interfaces"][0]["main"]["managed_by"] is None
    row = next(ln for ln in run_cli("status", veth.host_if).stdout.splitlines()
               if "xdp_pass" in ln)
    assert row.split()[-1] == "-"
