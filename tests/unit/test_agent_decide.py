"""The agent's decisions (pure) and its systemd notifications (a real unix socket)."""

from __future__ import annotations

import os
import socket

import pytest

from dispatcher.agent import decide, sdnotify
from dispatcher.agent.decide import Known
from dispatcher.config.model import parse_config

CFG = """
version: 1
on_drift: {drift}
interfaces:
  - name: "veth-t*"
    programs: []
  - name: [eth1, {{exact: "odd[1]"}}]
    netns: blue
    programs: []
"""


def cfg(drift: str = "repair"):  # type: ignore[no-untyped-def]
    return parse_config(CFG.format(drift=drift), "c.yaml", "/")


def test_namespaces_and_entries() -> None:
    c = cfg()
    assert decide.namespaces(c) == [None, "blue"]
    assert decide.entry_for(c, None, "veth-t3") == "veth-t*"
    assert decide.entry_for(c, "blue", "veth-t3") is None
    assert decide.entry_for(c, "blue", "odd[1]") == "odd[1]"
    assert decide.entry_for(c, "blue", "odd1") is None


@pytest.mark.parametrize("drift,action", [("repair", decide.REPAIR), ("report", decide.REPORT)])
def test_link_decisions(drift: str, action: str) -> None:
    c = cfg(drift)
    known = {(None, 5): Known("veth-t1", 100)}
    assert decide.on_link(c, None, 6, "veth-t2", 0, False, known).action == decide.APPLY
    assert decide.on_link(c, None, 6, "lo", 0, False, known).action == decide.IGNORE
    assert decide.on_link(c, None, 5, "veth-t1", 100, False, known).action == decide.IGNORE
    d = decide.on_link(c, None, 5, "veth-t1", 0, False, known)
    assert d.action == action and "100 removed" in d.why
    d = decide.on_link(c, None, 5, "veth-t1", 7, False, known)
    assert d.action == action and "replaced by 7" in d.why
    assert decide.on_link(c, None, 5, "veth-t1", 100, True, known).action == decide.FORGET
    assert decide.on_link(c, None, 6, "veth-t2", 0, True, known).action == decide.IGNORE
    assert decide.on_link(c, None, 5, "other", 100, False, known).action == decide.FORGET


def test_debounce_and_timeout() -> None:
    d = decide.Debounce(0.2)
    assert not d.due(10.0)
    d.poke(10.0)
    d.poke(10.1)
    assert not d.due(10.25)
    assert d.due(10.3) and not d.due(10.4)      # once
    assert decide.timeout(5.0, None, 7.5, 6.0) == 1.0
    assert decide.timeout(5.0, 4.0) == 0.0
    assert decide.timeout(5.0) == 3600.0


def test_sdnotify(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.notify("READY=1")
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify("READY=1")
        assert s.recv(100) == b"READY=1"
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 1.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert sdnotify.watchdog_interval() is None


def test_log_lines_text_and_json() -> None:
    import io
    import json

    from dispatcher.agent.service import Log

    out = io.StringIO()
    Log("json", out)("apply", "chain attached", interface="veth-t1", netns=None, ms=12.5)
    rec = json.loads(out.getvalue())
    assert rec["event"] == "apply" and rec["interface"] == "veth-t1" and "netns" not in rec
    out = io.StringIO()
    Log("text", out)("forget", "interface removed", interface="veth-t1")
    (line,) = out.getvalue().splitlines()
    assert line.endswith("forget: interface removed (interface=veth-t1)")
