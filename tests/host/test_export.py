"""``export``: the live chains written as a config file. The file passes ``check``, ``plan``
of it is empty, and ``apply`` of it to a fresh interface rebuilds the same chain (linked
chains on the host; dispatchers with xdp-loader's programs need freplace: VM)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.cli import run_cli
from tests.host import nettools
from tests.objects import EXAMPLES_DIR

pytestmark = [pytest.mark.host_kernel, pytest.mark.once]   # export is kernel-agnostic


@pytest.fixture
def pair(netns_veth, env):  # type: ignore[no-untyped-def]
    b = nettools.create_veth_ns()
    try:
        yield netns_veth.host_if, b.host_if
    finally:
        for i in (netns_veth.host_if, b.host_if):
            run_cli("unload", i, "--all", env=env)
        nettools.destroy_veth_ns(b)


def _chain(iface: str) -> list[tuple[object, ...]]:
    import dispatcher

    (st,) = dispatcher.status(iface)
    assert st.description is not None, st.to_json()
    return [(s.label, s.priority, s.actions, s.path, s.program, s.settings)
            for s in st.description.slots]


def _export_check_plan(tmp_path, iface: str, env) -> str:  # type: ignore[no-untyped-def]
    cp = run_cli("export", iface, env=env, check=True)
    path = tmp_path / "exported.yaml"
    path.write_text(cp.stdout)
    run_cli("check", str(path), env=env, check=True)
    cp = run_cli("plan", str(path), "--json", env=env)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    items = json.loads(cp.stdout)["interfaces"][0]["items"]
    assert items and {i["action"] for i in items} == {"keep"}, items
    return str(path)


def _rebuild_on(tmp_path, text: str, old: str, new: str, env) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(text)
    doc["interfaces"][0]["name"] = new
    path = tmp_path / "fresh.yaml"
    path.write_text(yaml.safe_dump(doc))
    run_cli("apply", str(path), env=env, check=True)
    # the same components, priorities, actions, objects and settings
    assert _chain(new) == _chain(old)


def test_export_of_load_chain(pair, tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    run_cli("load", a, "-m", "skb", "--dispatch", "linked", "-p", "7",
            os.path.join(EXAMPLES_DIR, "xdp_counter.o"), env=env, check=True)
    run_cli("load", a, "-m", "skb", "--dispatch", "linked", "-A", "XDP_PASS,XDP_DROP",
            os.path.join(EXAMPLES_DIR, "xdp_pass.o"), env=env, check=True)
    path = _export_check_plan(tmp_path, a, env)
    text = Path(path).read_text()
    assert "dispatch: linked" in text and "mode: skb" in text
    _rebuild_on(tmp_path, text, a, b, env)


def test_export_of_apply_chain_with_settings(pair, tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "interfaces": [{
        "name": a, "mode": "skb", "dispatch": "linked", "programs": [
            {"name": "count", "object": os.path.join(EXAMPLES_DIR, "xdp_counter.o"),
             "priority": 10},
            {"name": "icmp", "object": os.path.join(EXAMPLES_DIR, "xdp_drop_icmp.o"),
             "priority": 20, "chain_call_actions": ["pass", "aborted"]},
            {"name": "globals", "object": os.path.join(EXAMPLES_DIR, "xdp_globals.o"),
             "priority": 30, "globals": {"drop_port": 53}},
        ]}]}))
    run_cli("apply", str(cfg), env=env, check=True)
    path = _export_check_plan(tmp_path, a, env)
    text = Path(path).read_text()
    assert '"count"' in text and "drop_port" in text
    # the exported file, applied on the same interface, changes nothing
    cp = run_cli("apply", path, env=env, check=True)
    assert "Nothing to change." in cp.stdout
    _rebuild_on(tmp_path, text, a, b, env)


def test_export_all_and_empty_interface(pair, tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    cp = run_cli("export", b, env=env, check=True)      # named, no XDP: programs []
    doc = yaml.safe_load(cp.stdout)
    assert doc["interfaces"] == [{"name": b, "mode": "native", "programs": []}]
    run_cli("load", a, "-m", "skb", "--dispatch", "linked",
            os.path.join(EXAMPLES_DIR, "xdp_pass.o"), env=env, check=True)
    doc = yaml.safe_load(run_cli("export", env=env, check=True).stdout)
    names = [i["name"] for i in doc["interfaces"]]
    assert a in names and b not in names


@pytest.mark.freplace
@pytest.mark.skipif(shutil.which("xdp-loader") is None, reason="xdp-loader not installed")
def test_export_xdp_loader_chain(pair, tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    """xdp-loader's programs (no object known): comments; apply's own entries: entries."""
    a, b = pair
    subprocess.run(["xdp-loader", "load", "-m", "skb", a,
                    os.path.join(EXAMPLES_DIR, "xdp_pass.o")], check=True, capture_output=True)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "interfaces": [{
        "name": a, "mode": "skb", "programs": [
            {"name": "count", "object": os.path.join(EXAMPLES_DIR, "xdp_counter.o"),
             "priority": 10}]}]}))
    run_cli("apply", str(cfg), env=env, check=True)
    cp = run_cli("export", a, env=env, check=True)
    assert "# foreign: \"xdp_pass\"" in cp.stdout
    path = tmp_path / "exported.yaml"
    path.write_text(cp.stdout)
    run_cli("check", str(path), env=env, check=True)
    cp = run_cli("plan", str(path), "--json", env=env)
    assert cp.returncode == 0, cp.stdout
    acts = sorted(i["action"] for i in json.loads(cp.stdout)["interfaces"][0]["items"])
    assert acts == ["foreign", "keep"]
