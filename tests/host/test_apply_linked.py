"""plan / apply of config files whose interface uses ``dispatch: linked`` (runs on the host
kernel, which refuses freplace, and the same in the VM): add, idempotence, update with
state kept, upgrade, removal, foreign slots, and ``dispatch: auto`` on the host."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tests.cli import run_cli
from tests.host import chain_oracle, nettools
from tests.objects import EXAMPLES_DIR

pytestmark = [pytest.mark.host_kernel, pytest.mark.once]   # config logic: host and 6.12 run it


def write_cfg(path, iface: str, programs: list[dict], dispatch: str = "linked") -> str:  # type: ignore[no-untyped-def,type-arg]
    progs = [{**p, "object": os.path.join(EXAMPLES_DIR, p["object"])} for p in programs]
    path.write_text(yaml.safe_dump({"version": 1, "interfaces": [
        {"name": iface, "mode": "skb", "dispatch": dispatch, "programs": progs}]}))
    return str(path)


def plan(cfg: str, env: dict[str, str], *extra: str) -> tuple[int, list[str]]:
    cp = run_cli("plan", cfg, "--json", *extra, env=env)
    assert cp.returncode in (0, 2), cp.stderr
    items = json.loads(cp.stdout)["interfaces"][0]["items"]
    return cp.returncode, sorted(i["action"] for i in items)


def status(iface: str) -> dict:  # type: ignore[type-arg]
    import dispatcher

    (st,) = dispatcher.status(iface)
    return st.to_json()  # type: ignore[no-any-return]


def _counter(st: dict, label: str) -> int:  # type: ignore[type-arg]
    import dispatcher

    (s,) = dispatcher.status(st["name"])
    assert s.description is not None
    slot = next(x for x in s.description.to_json()["slots"] if x["label"] == label)  # type: ignore[union-attr]
    mid = slot["maps"]["counters"]
    return sum(v[0] for (_m, k), v in chain_oracle.snapshot([mid]).items() if k == b"\0\0\0\0")


def test_linked_apply_update_upgrade_remove(veth, tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    progs = [{"name": "icmp", "object": "xdp_drop_icmp.o", "priority": 20},
             {"name": "count", "object": "xdp_counter.o", "priority": 10},
             {"name": "pass", "object": "xdp_pass.o", "priority": 30}]
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if, progs)
    assert plan(cfg, env) == (2, ["add", "add", "add"])
    run_cli("apply", cfg, check=True, env=env)
    st = status(veth.host_if)
    assert st["kind"] == "linked"
    assert [p["name"] for p in st["programs"]] == ["count", "icmp", "pass"]
    assert not nettools.ping(veth.peer_ip, count=2, timeout=1)
    seen = _counter(st, "count")
    assert seen >= 2
    chain_id = st["dispatcher"]["id"]
    # idempotent: nothing to do, same program
    assert plan(cfg, env) == (0, ["keep", "keep", "keep"])
    cp = run_cli("apply", cfg, check=True, env=env)
    assert "Nothing to change." in cp.stdout
    assert status(veth.host_if)["dispatcher"]["id"] == chain_id
    # priority change: rebuilt in the new order, the counter keeps counting
    progs[0]["priority"] = 5
    write_cfg(tmp_path / "c.yaml", veth.host_if, progs)
    assert plan(cfg, env) == (2, ["keep", "keep", "update"])
    run_cli("apply", cfg, check=True, env=env)
    st = status(veth.host_if)
    assert [p["name"] for p in st["programs"]] == ["icmp", "count", "pass"]
    assert _counter(st, "count") >= seen
    # upgrade one entry to another object
    progs[2]["object"] = "xdp_runcfg.o"
    write_cfg(tmp_path / "c.yaml", veth.host_if, progs)
    assert plan(cfg, env) == (2, ["keep", "keep", "upgrade"])
    run_cli("apply", cfg, check=True, env=env)
    st = status(veth.host_if)
    assert os.path.basename(st["programs"][2]["object"]) == "xdp_runcfg.o"
    assert plan(cfg, env)[0] == 0
    # remove an entry
    write_cfg(tmp_path / "c.yaml", veth.host_if, progs[1:])
    assert plan(cfg, env) == (2, ["keep", "keep", "remove"])
    run_cli("apply", cfg, check=True, env=env)
    assert [p["name"] for p in status(veth.host_if)["programs"]] == ["count", "pass"]
    assert nettools.ping(veth.peer_ip, count=1)
    assert plan(cfg, env)[0] == 0


def test_linked_foreign_slots_kept_unless_exclusive(veth, tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    import dispatcher

    dispatcher.load(veth.host_if, [os.path.join(EXAMPLES_DIR, "xdp_pass.o")], mode="skb",
                    priority=40, dispatch="linked")
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if,
                    [{"name": "count", "object": "xdp_counter.o", "priority": 10}])
    assert plan(cfg, env) == (2, ["add", "foreign"])
    run_cli("apply", cfg, check=True, env=env)
    assert [(p["name"], p["priority"]) for p in status(veth.host_if)["programs"]] == [
        ("count", 10), ("xdp_pass", 40)]
    assert plan(cfg, env) == (0, ["foreign", "keep"])
    assert plan(cfg, env, "--exclusive") == (2, ["keep", "remove"])
    run_cli("apply", cfg, "--exclusive", check=True, env=env)
    assert [p["name"] for p in status(veth.host_if)["programs"]] == ["count"]


def test_auto_dispatch_on_a_kernel_without_freplace(veth, tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    from dispatcher.chain.freplace.program import freplace as freplace_probe

    if freplace_probe().supported:
        pytest.skip("this kernel allows freplace: auto builds a dispatcher (test_apply.py)")
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if,
                    [{"name": "count", "object": "xdp_counter.o", "priority": 10},
                     {"name": "icmp", "object": "xdp_drop_icmp.o", "priority": 20}],
                    dispatch="auto")
    run_cli("apply", cfg, check=True, env=env)
    st = status(veth.host_if)
    assert st["kind"] == "linked" and [p["name"] for p in st["programs"]] == ["count", "icmp"]
    assert plan(cfg, env)[0] == 0


def test_reapply_reuses_a_pinned_devmap(veth, tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    # A redirecting program with a devmap pinned by name: the second apply (after the
    # chain was removed, so nothing is answered from the record) reuses the pin although
    # the kernel reports BPF_F_RDONLY_PROG on it.
    cfg = write_cfg(tmp_path / "c.yaml", veth.host_if,
                    [{"name": "fwd", "object": "xdp_redirect_devmap.o", "priority": 10},
                     {"name": "pass", "object": "xdp_pass.o", "priority": 20}])
    run_cli("apply", cfg, check=True, env=env)
    pin = os.path.join(env["LIBXDP_BPFFS"], "tx_port")
    assert os.path.exists(pin)
    run_cli("unload", veth.host_if, "--all", check=True, env=env)
    cp = run_cli("apply", cfg, env=env)
    assert cp.returncode == 0, cp.stderr
    assert [p["name"] for p in status(veth.host_if)["programs"]] == ["fwd", "pass"]
    assert nettools.ping(veth.peer_ip, count=1)
