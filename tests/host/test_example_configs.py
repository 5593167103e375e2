"""Every commented example in configs/ is applied on the real kernel.

Each file is rewritten for the test's veth pair: interface entries in order become the
host end (root netns) and the peer end (its netns), modes become skb, object paths
absolute, `pin_maps` directories move under a private bpffs directory. Then: `apply`,
`plan` is empty, a second `apply` changes nothing (same ids), and `status --config`
shows no drift. Files whose chains have more than one program need freplace (VM tier).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli import run_cli
from tests.host import test_apply as _apply
from tests.host.test_apply import status
from tests.objects import REPO

pytestmark = [pytest.mark.host_kernel, pytest.mark.once]

CONFIGS = Path(REPO) / "configs"
veth = _apply.veth
state_dir = _apply.state_dir


def _needs_chain(path: Path) -> bool:
    doc = yaml.safe_load(path.read_text())
    return any(sum(1 for p in i["programs"] if p.get("enabled", True)) > 1
               for i in doc["interfaces"])


CASES = [pytest.param(p.name, marks=[pytest.mark.freplace] if _needs_chain(p) else [])
         for p in sorted(CONFIGS.glob("*.yaml"))]


def _rewrite(src: Path, v: Any, pins: str) -> tuple[dict[str, Any], list[tuple[str, str | None]]]:
    doc = yaml.safe_load(src.read_text())
    ends = [(v.host_if, None), (v.peer_if, v.netns)]
    used = []
    for k, iface in enumerate(doc["interfaces"]):
        if k >= len(ends):
            pytest.skip(f"{src.name}: more interface entries than the fixture has ends")
        name, netns = ends[k]
        iface["name"] = name
        iface["mode"] = "skb"
        iface.pop("netns", None)
        if netns:
            iface["netns"] = netns
        used.append((name, netns))
        for p in iface["programs"]:
            p["object"] = str((src.parent / p["object"]).resolve())
            if "pin_maps" in p:
                p["pin_maps"] = os.path.join(pins, os.path.basename(p["pin_maps"]))
    return doc, used


def _ids(iface: str, netns: str | None) -> dict[str, Any]:
    import dispatcher

    (st,) = dispatcher.status(iface, netns=netns)
    return st.to_json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", CASES)
def test_example_config_applies(name: str, veth, tmp_path, state_dir, bpffs_dir) -> None:  # type: ignore[no-untyped-def]
    doc, used = _rewrite(CONFIGS / name, veth, bpffs_dir)
    cfg = tmp_path / name
    cfg.write_text(yaml.safe_dump(doc))
    run_cli("check", str(cfg), check=True)
    try:
        run_cli("apply", str(cfg), check=True)
        before = [_ids(n, ns) for n, ns in used]
        for (n, _ns), st in zip(used, before, strict=True):
            assert st["kind"] in ("dispatcher", "legacy"), (n, st)
        # (The config-file oracle, tests/host/config_oracle.py, is parked here until it has
        # run in the VMs: see test_apply_live.py's idempotency test and the stop note.)
        assert run_cli("plan", str(cfg)).returncode == 0
        cp = run_cli("apply", str(cfg), check=True)
        assert "Nothing to change." in cp.stdout
        assert [_ids(n, ns) for n, ns in used] == before
        cp = run_cli("status", "--config", str(cfg), "--json")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert json.loads(cp.stdout)["drift"]["drifted"] is False
        for p in (p for i in doc["interfaces"] for p in i["programs"] if "pin_maps" in p):
            assert os.listdir(p["pin_maps"]), f"nothing pinned under {p['pin_maps']}"
    finally:
        for n, ns in used:
            run_cli("unload", n, "--all", *(["--netns", ns] if ns else []))
    assert status(veth.host_if)["kind"] == "none"
