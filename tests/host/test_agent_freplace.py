"""The agent on freplace chains (libxdp dispatchers), in the newest VM kernel: the host
tier runs the agent's other tests on linked chains (tests/host/test_agent.py), which the
host's kernel forces. Here: a glob's new interfaces get a dispatcher; a priority edit keeps
every component's program id (a dispatcher re-links its components, where a linked chain is
rebuilt); libxdp's `xdp-loader unload --all` behind its back is repaired; SIGTERM leaves the
chains, and a restarted agent changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.host import test_agent
from tests.host.agent_harness import THREE, config_text, count
from tests.host.test_agent import _swap_by_rename, start, wait_xdp

ns = test_agent.ns                  # the agent tests' fixtures: a private netns, the agents
agents = test_agent.agents

pytestmark = [pytest.mark.host_kernel, pytest.mark.freplace, pytest.mark.once]


def chain(ns, name: str) -> tuple[int, list[tuple[str, int, int]]]:  # type: ignore[no-untyped-def]
    """(dispatcher id, [(component, priority, program id)]) as status reads it."""
    import dispatcher

    (st,) = dispatcher.status(name, netns=ns.name)
    assert st.kind == "dispatcher", st.to_json()
    return st.dispatcher.id, [(c.name, c.priority, c.id) for c in st.programs]


def test_agent_keeps_a_freplace_chain_true(ns, tmp_path, env, agents) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("xdp-loader") is None:
        pytest.skip("xdp-loader (xdp-tools) is not installed: nothing removes the chain")
    names = [("xdp_counter", 10), ("xdp_drop_icmp", 20), ("xdp_pass", 30)]
    ns.add_pair("xh0", "xp0")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_text(ns.name, "xh*", dispatch="auto"))
    a = start(agents, str(cfg), env, tmp_path)
    wait_xdp(ns, "xh0", timeout=60)
    disp, comps = chain(ns, "xh0")
    assert [(n, p) for n, p, _i in comps] == names
    ns.add_pair("xh1", "xp1")                              # a new interface: its own chain
    wait_xdp(ns, "xh1", timeout=60)
    assert [(n, p) for n, p, _i in chain(ns, "xh1")[1]] == names
    # a priority edit: one reconcile; the components keep their program ids
    _swap_by_rename(cfg, config_text(ns.name, "xh*", [("count", "xdp_counter.o", 40),
                                                      *THREE[1:]], dispatch="auto"))
    a.wait(lambda ls: count(ls, "reconcile", trigger="config") == 1, timeout=60)
    _disp2, comps2 = chain(ns, "xh0")
    assert [(n, p) for n, p, _i in comps2] == [("xdp_drop_icmp", 20), ("xdp_pass", 30),
                                               ("xdp_counter", 40)]
    assert sorted(i for *_x, i in comps2) == sorted(i for *_x, i in comps)
    # libxdp removes the whole chain behind the agent's back: repaired
    old = ns.xdp("xh0")
    subprocess.run(["ip", "netns", "exec", ns.name, "xdp-loader", "unload", "--all", "xh0"],
                   check=True, capture_output=True, env={**os.environ, **env})
    wait_xdp(ns, "xh0", old=old, timeout=60)
    repaired = chain(ns, "xh0")
    assert [(n, p) for n, p, _i in repaired[1]] == [(n, p) for n, p, _i in comps2]
    # SIGTERM: the chains stay; a restarted agent changes nothing (same ids)
    before = {n: chain(ns, n) for n in ("xh0", "xh1")}
    assert a.stop() == 0
    b = start(agents, str(cfg), env, tmp_path)
    assert [x["msg"] for x in b.lines() if x["event"] == "reconcile"] == ["nothing to change"]
    assert {n: chain(ns, n) for n in ("xh0", "xh1")} == before
    b.stop()
