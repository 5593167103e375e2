"""``xdp-dispatch agent`` on the host (linked chains): new interfaces, config edits
(rename-swap and a ConfigMap ``..data`` swap), invalid edits, drift repaired or reported,
kill -9 and SIGTERM restarts, /metrics and /readyz. Interfaces live in a private netns
named in the config, so other tests' interfaces are never touched."""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.host import nettools
from tests.host.agent_harness import THREE, AgentProc, Netns, config_text, count

# The agent's own work (inotify, rtnetlink events, HTTP, signals, reconcile decisions) does
# not depend on the chain kind, and each case runs dozens of commands: host tier only.
pytestmark = [pytest.mark.host_kernel, pytest.mark.host_tier]


@pytest.fixture
def ns() -> Iterator[Netns]:
    if nettools.IP_TOOL is None:
        pytest.skip("iproute2 `ip` is not installed: cannot create interfaces")
    n = Netns()
    yield n
    n.destroy()


@pytest.fixture
def agents(tmp_path, env) -> Iterator[list[AgentProc]]:  # type: ignore[no-untyped-def]
    started: list[AgentProc] = []
    yield started
    for a in started:
        a.stop(signal.SIGKILL)


def start(agents: list[AgentProc], cfg: str, env: dict[str, str], tmp_path,  # type: ignore[no-untyped-def]
          *extra: str, resync: float = 300, wait: bool = True) -> AgentProc:
    a = AgentProc(cfg, env, tmp_path / "agent.log", *extra, resync=resync)
    agents.append(a)
    if wait:
        a.started()
    return a


def wait_xdp(ns: Netns, name: str, timeout: float = 10, old: int | None = None) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pid = ns.xdp(name)
        if pid and pid != old:
            return pid
        time.sleep(0.002)
    raise AssertionError(f"{name}: no chain after {timeout}s")


def chain_labels(ns: Netns, name: str) -> list[tuple[str, int]]:
    import dispatcher

    (st,) = dispatcher.status(name, netns=ns.name)
    assert st.description is not None, st.to_json()
    return [(s.label, s.priority) for s in st.description.slots]


def test_glob_twenty_veths_one_by_one(ns, tmp_path, env, agents) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(ns.name, "xh*"))
    a = start(agents, str(cfg), env, tmp_path)
    times = []
    for i in range(20):
        t0 = time.monotonic()
        ns.add_pair(f"xh{i}", f"xp{i}")
        wait_xdp(ns, f"xh{i}")
        times.append(time.monotonic() - t0)
        assert ns.xdp(f"xp{i}") == 0          # the peer does not match: untouched
    for i in range(20):
        assert chain_labels(ns, f"xh{i}") == [("count", 10), ("icmp", 20), ("pass", 30)]
    print(f"reaction: median {statistics.median(times) * 1e3:.0f} ms, "
          f"max {max(times) * 1e3:.0f} ms")
    a.wait(lambda ls: count(ls, "apply", msg="chain attached") == 20)
    for i in range(20):
        ns.delete(f"xh{i}")
    a.wait(lambda ls: count(ls, "forget") == 20)
    lines = a.lines()
    assert not [x for x in lines if x["msg"] == "failed"], lines
    assert a.stop() == 0
    # no residue: no pins left under the private bpffs root but its own files
    left = [p for p in os.listdir(env["LIBXDP_BPFFS"]) if p.startswith("dispatch-")]
    assert not left, left


def _swap_by_rename(path, text: str) -> None:  # type: ignore[no-untyped-def]
    tmp = path.parent / ".c.yaml.swp"
    tmp.write_text(text)
    os.rename(tmp, path)


def _configmap(dirpath, text: str, gen: int) -> None:  # type: ignore[no-untyped-def]
    """kubelet's AtomicWriter: a new timestamped directory, ..data swapped atomically."""
    d = dirpath / f"..2026_12_03_{gen:02d}"
    d.mkdir()
    (d / "config.yaml").write_text(text)
    tmp = dirpath / "..data_tmp"
    os.symlink(d.name, tmp)
    os.rename(tmp, dirpath / "..data")
    if not (dirpath / "config.yaml").is_symlink():
        os.symlink("..data/config.yaml", dirpath / "config.yaml")


def test_config_edits_one_reconcile_each(ns, tmp_path, env, agents) -> None:  # type: ignore[no-untyped-def]
    ns.add_pair("xh0", "xp0")
    cmdir = tmp_path / "cm"
    cmdir.mkdir()
    _configmap(cmdir, config_text(ns.name, "xh*"), 1)
    cfg = cmdir / "config.yaml"
    a = start(agents, str(cfg), env, tmp_path)
    first = wait_xdp(ns, "xh0")
    # ConfigMap swap with a priority change: exactly one reconcile, applied
    progs = [("count", "xdp_counter.o", 40), *THREE[1:]]
    _configmap(cmdir, config_text(ns.name, "xh*", progs), 2)
    a.wait(lambda ls: count(ls, "reconcile", trigger="config") == 1)
    time.sleep(0.5)
    assert count(a.lines(), "reconcile", trigger="config") == 1
    assert chain_labels(ns, "xh0") == [("icmp", 20), ("pass", 30), ("count", 40)]
    second = ns.xdp("xh0")
    assert second != first                    # a linked chain is relinked on any change
    # a swap to the same content: no reconcile at all
    _configmap(cmdir, config_text(ns.name, "xh*", progs), 3)
    time.sleep(0.6)
    assert count(a.lines(), "reconcile", trigger="config") == 1
    # an edit that changes nothing on the interface (a comment): one reconcile, same chain
    _configmap(cmdir, "# note\n" + config_text(ns.name, "xh*", progs), 4)
    a.wait(lambda ls: count(ls, "reconcile", trigger="config") == 2)
    assert ns.xdp("xh0") == second
    assert [x for x in a.lines() if x.get("trigger") == "config"][-1]["msg"] == \
        "nothing to change"
    a.stop()


def test_rename_swap_and_invalid_edit(ns, tmp_path, env, agents) -> None:  # type: ignore[no-untyped-def]
    ns.add_pair("xh0", "xp0")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(ns.name, "xh*"))
    a = start(agents, str(cfg), env, tmp_path)
    wait_xdp(ns, "xh0")
    _swap_by_rename(cfg, config_text(ns.name, "xh*", THREE[:2]))     # remove "pass"
    a.wait(lambda ls: count(ls, "reconcile", trigger="config") == 1)
    time.sleep(0.5)
    assert count(a.lines(), "reconcile", trigger="config") == 1
    assert chain_labels(ns, "xh0") == [("count", 10), ("icmp", 20)]
    kept = ns.xdp("xh0")
    # invalid edit (unknown key, in place): reported, chain untouched, old config in force
    cfg.write_text(config_text(ns.name, "xh*", THREE[:2]).replace("mode: skb", "mood: skb"))
    a.wait(lambda ls: count(ls, "config", msg="refused; the last good config stays in force")
           == 1)
    assert ns.xdp("xh0") == kept
    code, body = a.get("/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    assert fams["xdp_dispatch_agent_config_errors"].samples[0].value == 1
    assert fams["xdp_dispatch_agent_config_valid"].samples[0].value == 0
    # a new interface meanwhile gets the last good chain
    ns.add_pair("xh1", "xp1")
    wait_xdp(ns, "xh1")
    assert chain_labels(ns, "xh1") == [("count", 10), ("icmp", 20)]
    a.stop()


@pytest.mark.parametrize("mode,tool", [("repair", "ip"), ("report", "ip"),
                                       ("repair", "xdp-loader")])
def test_drift_behind_its_back(ns, tmp_path, env, agents, mode, tool) -> None:  # type: ignore[no-untyped-def]
    if tool == "xdp-loader" and shutil.which("xdp-loader") is None:
        pytest.skip("xdp-loader (xdp-tools) is not installed")
    ns.add_pair("xh0", "xp0")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(ns.name, "xh*", extra=f"on_drift: {mode}"))
    a = start(agents, str(cfg), env, tmp_path)
    old = wait_xdp(ns, "xh0")
    if tool == "ip":
        nettools.ip("link", "set", "dev", "xh0", "xdpgeneric", "off", netns=ns.name)
    else:
        subprocess.run(["ip", "netns", "exec", ns.name, "xdp-loader", "unload", "--all",
                        "xh0"], check=True, capture_output=True, env={**os.environ, **env})
    if mode == "repair":
        new = wait_xdp(ns, "xh0", old=old, timeout=5)
        assert new != old
        assert chain_labels(ns, "xh0") == [("count", 10), ("icmp", 20), ("pass", 30)]
        a.wait(lambda ls: count(ls, "apply", msg="chain attached") >= 1)
    else:
        a.wait(lambda ls: count(ls, "drift", msg="reported, not repaired (on_drift: report)")
               == 1)
        time.sleep(0.3)
        assert ns.xdp("xh0") == 0
        _code, body = a.get("/metrics")
        drift = [s for f in text_string_to_metric_families(body)
                 if f.name == "xdp_dispatch_agent_drift" for s in f.samples]
        assert [(s.labels["interface"], s.value) for s in drift] == [("xh0", 1.0)]
    a.stop()


def test_kill9_mid_reconcile_then_sigterm_keeps_ids(ns, tmp_path, env, agents) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(ns.name, "xh*"))
    a = start(agents, str(cfg), env, tmp_path)
    for i in range(6):
        ns.add_pair(f"xh{i}", f"xp{i}")
    a.wait(lambda ls: count(ls, "apply") >= 1, timeout=10)
    a.stop(signal.SIGKILL)                     # mid-burst
    b = start(agents, str(cfg), env, tmp_path)
    ids = {f"xh{i}": wait_xdp(ns, f"xh{i}") for i in range(6)}
    for i in range(6):
        assert chain_labels(ns, f"xh{i}") == [("count", 10), ("icmp", 20), ("pass", 30)]
    assert b.stop() == 0                       # SIGTERM: exits 0, chains stay
    assert {n: ns.xdp(n) for n in ids} == ids
    c = start(agents, str(cfg), env, tmp_path)
    assert [x["msg"] for x in c.lines() if x["event"] == "reconcile"] == ["nothing to change"]
    assert {n: ns.xdp(n) for n in ids} == ids
    c.stop()


def test_metrics_and_readiness(tmp_path, env, agents) -> None:  # type: ignore[no-untyped-def]
    """Not ready while the first apply fails (its netns does not exist yet), ready after."""
    n = Netns()
    name = n.name
    n.destroy()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(name, "xh*"))
    a = start(agents, str(cfg), env, tmp_path, wait=False)
    a.wait(lambda ls: count(ls, "reconcile", msg="failed") >= 1)
    assert a.get("/readyz")[0] == 503
    assert a.get("/healthz")[0] == 200
    try:
        nettools.ip("netns", "add", name)
        nettools.ip("link", "add", "xh0", "type", "veth", "peer", "name", "xp0", netns=name)
        nettools.ip("link", "set", "xh0", "up", netns=name)
        a.wait(lambda ls: count(ls, "reconcile", trigger="resync", msg="applied") >= 1,
               timeout=15)
        assert a.get("/readyz") == (200, "ready\n")
        code, body = a.get("/metrics")
        assert code == 200
        fams = {f.name: f for f in text_string_to_metric_families(body)}
        rec = {(s.labels["trigger"], s.labels["outcome"]): s.value
               for s in fams["xdp_dispatch_agent_reconciles"].samples
               if s.name.endswith("_total")}
        assert rec[("start", "error")] == 1 and rec[("resync", "changed")] == 1
        assert fams["xdp_dispatch_agent_ready"].samples[0].value == 1
        assert fams["xdp_dispatch_agent_config_generation"].samples[0].value == 1
        assert fams["xdp_dispatch_agent_last_success_timestamp_seconds"].samples[0].value > 0
        assert any(s.name.endswith("_count") and s.value >= 2
                   for s in fams["xdp_dispatch_agent_apply_duration_seconds"].samples)
        info = fams["xdp_dispatch_chain_info"].samples
        assert [s.labels["interface"] for s in info] == ["xh0"]
        assert a.get("/nope")[0] == 404
        a.stop()
    finally:
        nettools.ip("netns", "del", name, check=False)


def test_listen_none_and_bad_config_at_start(tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    from tests.cli import assert_one_line_error, run_cli

    cfg = tmp_path / "c.yaml"
    cfg.write_text("version: 1\ninterfaces: 3\n")
    cp = run_cli("agent", str(cfg), "--listen", "none", env=env, timeout=30)
    assert cp.returncode == 2
    assert_one_line_error(cp, "c.yaml:2:13")
    cp = run_cli("agent", str(cfg), "--listen", "nonsense", env=env, timeout=30)
    assert cp.returncode == 2 and "--listen nonsense" in cp.stderr


def test_container_entry_as_the_image_runs_it(ns, tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    """ENTRYPOINT + CMD of deploy/kubernetes/Dockerfile, through the installed console
    script, with only the config path and the port replaced."""
    import json
    import re
    import subprocess
    import sys
    import urllib.request

    from tests.host.agent_harness import free_port
    from tests.objects import REPO

    with open(os.path.join(REPO, "deploy", "kubernetes", "Dockerfile")) as f:
        text = f.read()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    exe = os.path.join(os.path.dirname(sys.executable), entry[0])
    if not os.path.exists(exe):
        pytest.skip(f"{entry[0]} console script not installed next to {sys.executable}")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(config_text(ns.name, "xh*"))
    port = free_port()
    argv = [exe, *[str(cfg) if a == "/etc/xdp-dispatch/config.yaml" else a for a in entry[1:]],
            *[f"127.0.0.1:{port}" if a == "0.0.0.0:9720" else a for a in cmd]]
    ns.add_pair("xh0", "xp0")
    with open(tmp_path / "log", "wb") as log:
        p = subprocess.Popen(argv, stdout=log, stderr=log, env={**os.environ, **env})
        try:
            wait_xdp(ns, "xh0")
            end = time.monotonic() + 10
            while time.monotonic() < end:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.05)
            else:
                raise AssertionError("never ready")
            p.send_signal(signal.SIGTERM)
            assert p.wait(10) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    lines = [json.loads(x) for x in (tmp_path / "log").read_text().splitlines()]
    assert lines[-1]["event"] == "stop"
    assert ns.xdp("xh0")                      # left attached


def test_rename_into_the_glob_and_one_bad_interface(ns, tmp_path, env, agents) -> None:  # type: ignore[no-untyped-def]
    """A renamed interface that now matches gets its chain; an interface that cannot take
    its chain (hw mode on a veth) does not keep the others from theirs."""
    ns.add_pair("xh0", "xp0")
    ns.add_pair("xbad", "xpb")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(ns.name, "xh*") + config_text(ns.name, "xbad").split(
        "interfaces:\n", 1)[1].replace("mode: skb", "mode: hw"))
    a = start(agents, str(cfg), env, tmp_path)
    wait_xdp(ns, "xh0")
    a.wait(lambda ls: count(ls, "apply", msg="failed", interface="xbad") >= 1)
    assert ns.xdp("xbad") == 0
    assert a.get("/readyz")[0] == 503           # the file as a whole is not in force
    ns.add_pair("xz0", "xq0")
    time.sleep(0.3)
    assert ns.xdp("xz0") == 0
    nettools.ip("link", "set", "xz0", "down", netns=ns.name)
    nettools.ip("link", "set", "xz0", "name", "xh7", netns=ns.name)
    wait_xdp(ns, "xh7")
    assert chain_labels(ns, "xh7") == [("count", 10), ("icmp", 20), ("pass", 30)]
    a.stop()


def test_strict_config_writable_by_others_is_refused(tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    """As apply: a config others can change is refused with strict: true (exit 2)."""
    from tests.cli import run_cli

    d = tmp_path / "open"
    d.mkdir()
    cfg = d / "c.yaml"
    cfg.write_text("version: 1\nstrict: true\ninterfaces: []\n")
    os.chmod(cfg, 0o666)
    cp = run_cli("agent", str(cfg), "--listen", "none", env=env, timeout=30)
    assert cp.returncode == 2, cp.stderr
    assert "Traceback" not in cp.stderr and "c.yaml" in cp.stderr
