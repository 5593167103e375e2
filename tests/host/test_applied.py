"""Records of the last apply (``dispatcher/applied.py``): re-applying or planning an
unchanged file on an unchanged system is answered from the record, and every change to
what a plan reads (the file, an object, the chains, a new interface matching a pattern,
the ownership records, ``--exclusive``) makes it plan afresh and do the right thing.
Real kernel: linked chains on the host (no freplace there), freplace chains in the VMs."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator

import pytest
import yaml

import dispatcher
from dispatcher.config import applied, apply
from dispatcher.config.plan import plan_text
from tests.cli import run_cli
from tests.host import nettools
from tests.objects import EXAMPLES_DIR

# The record is keyed on every interface of the namespaces a config names: each test's
# interfaces live in a network namespace of its own, so tests running beside it (pytest
# -n) leave its records alone.
pytestmark = pytest.mark.host_kernel


def write_cfg(path: str, name: str | list[str], progs: list[tuple[str, str, int]],
              netns: str) -> str:
    """A config chaining ``progs`` ((entry name, object path, priority)) on ``name``."""
    with open(path, "w") as f:
        yaml.safe_dump({"version": 1, "interfaces": [
            {"name": name, "netns": netns, "mode": "skb", "programs": [
                {"name": n, "object": o, "priority": p} for n, o, p in progs]}]}, f)
    return path


def ids(iface: str, netns: str) -> tuple[int | None, list[int | None]]:
    (st,) = dispatcher.status(iface, netns=netns)
    return (st.dispatcher.id if st.dispatcher else None), [c.id for c in st.programs]


@pytest.fixture
def ns(private: str) -> Iterator[str]:
    """A network namespace of this test's own (its interfaces are the only ones there)."""
    name = f"xdpd-ap-{secrets.token_hex(3)}"
    nettools.ip("netns", "add", name)
    try:
        yield name
    finally:
        nettools.ip("netns", "del", name, check=False)


def add_pair(ns: str, a: str, b: str) -> None:
    nettools.ip("link", "add", a, "type", "veth", "peer", "name", b, netns=ns)


def unload_all(ns: str, *ifaces: str) -> None:
    for i in ifaces:
        dispatcher.unload(i, all=True, netns=ns)


def full_plan(cfg: str, exclusive: bool = False) -> list[dict[str, object]]:
    return [applied.plan_record(p) for p in apply.make_plan(cfg, exclusive=exclusive)[1]]


@pytest.fixture
def objs(tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Private copies of the example objects (tests overwrite them)."""
    out = {}
    for n in ("xdp_pass", "xdp_counter", "xdp_drop_icmp"):
        out[n] = str(tmp_path / f"{n}.o")
        shutil.copy(os.path.join(EXAMPLES_DIR, f"{n}.o"), out[n])
    return out


@pytest.fixture
def applied_cfg(ns, objs, tmp_path) -> Iterator[tuple[str, str, str, str]]:  # type: ignore[no-untyped-def]
    """(config, netns, interface A, interface B): a 2-program chain on A, applied."""
    a, b = "xdap-a", "xdap-b"
    add_pair(ns, a, b)
    cfg = write_cfg(str(tmp_path / "c.yaml"), a, [("pass", objs["xdp_pass"], 10),
                                                   ("counter", objs["xdp_counter"], 20)], ns)
    try:
        plans = dispatcher.apply_config(cfg)
        assert any(p.changed for p in plans)
        yield cfg, ns, a, b
    finally:
        unload_all(ns, a, b)


def test_reapply_is_answered_from_the_record(applied_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg, ns, a, _b = applied_cfg
    before = ids(a, ns)
    reused = applied.reuse(cfg)
    assert reused is not None, "the apply did not leave a usable record"
    assert [applied.plan_record(p) for p in reused] == full_plan(cfg)
    assert not any(p.changed for p in reused)
    # the command prints exactly what a full plan prints, and changes nothing
    cp = run_cli("apply", cfg)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == plan_text(apply.make_plan(cfg)[1]) + "Nothing to change.\n"
    assert run_cli("plan", cfg).returncode == 0
    assert ids(a, ns) == before


def _edit_config(cfg: str, ns: str, a: str, objs: dict[str, str]) -> None:
    write_cfg(cfg, a, [("pass", objs["xdp_pass"], 10), ("counter", objs["xdp_counter"], 5)], ns)


def _replace_object(cfg: str, ns: str, a: str, objs: dict[str, str]) -> None:
    shutil.copy(os.path.join(EXAMPLES_DIR, "xdp_drop_icmp.o"), objs["xdp_pass"] + ".new")
    os.replace(objs["xdp_pass"] + ".new", objs["xdp_pass"])


def _other_writer(cfg: str, ns: str, a: str, objs: dict[str, str]) -> None:
    dispatcher.unload(a, all=True, netns=ns)


def _owned_records(cfg: str, ns: str, a: str, objs: dict[str, str]) -> None:
    # another apply or load rewrote the ownership records (same content here)
    from dispatcher.config import ownership

    with open(ownership.records_path(), "a") as f:
        f.write("\n")


MUTATIONS: dict[str, tuple[Callable[[str, str, str, dict[str, str]], None], set[str]]] = {
    "config edited": (_edit_config, {"update"}),
    "object file replaced": (_replace_object, {"upgrade"}),
    "chain changed by another writer": (_other_writer, {"add"}),
    "ownership records rewritten": (_owned_records, set()),
}


@pytest.mark.parametrize("what", list(MUTATIONS))
def test_any_change_plans_afresh(applied_cfg, objs, what: str) -> None:  # type: ignore[no-untyped-def]
    cfg, ns, a, _b = applied_cfg
    mutate, actions = MUTATIONS[what]
    mutate(cfg, ns, a, objs)
    assert applied.reuse(cfg) is None, f"record reused after: {what}"
    plans = dispatcher.apply_config(cfg)
    assert {i.action for p in plans for i in p.items} - {"keep"} == actions
    assert not any(p.changed for p in apply.make_plan(cfg)[1])
    assert applied.reuse(cfg) is not None      # and the new result is recorded


def test_exclusive_and_dry_run(applied_cfg, objs) -> None:  # type: ignore[no-untyped-def]
    cfg, ns, a, _b = applied_cfg
    assert applied.reuse(cfg, exclusive=True) is None      # recorded without --exclusive
    _edit_config(cfg, ns, a, objs)
    plans = dispatcher.apply_config(cfg, dry_run=True)
    assert any(p.changed for p in plans)
    assert applied.reuse(cfg) is None      # a dry run with changes records nothing
    assert run_cli("plan", cfg).returncode == 2


def test_missing_config_after_apply_is_the_usual_error(applied_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg, _ns, _a, _b = applied_cfg
    os.unlink(cfg)
    assert applied.reuse(cfg) is None
    cp = run_cli("apply", cfg)
    assert cp.returncode == 2 and "Traceback" not in cp.stderr and cfg in cp.stderr


def test_new_interface_matching_the_pattern(ns, objs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    add_pair(ns, "xdap1a", "xdap1b")
    try:
        cfg = write_cfg(str(tmp_path / "g.yaml"), "xdap?a",
                        [("pass", objs["xdp_pass"], 10), ("counter", objs["xdp_counter"], 20)],
                        ns)
        dispatcher.apply_config(cfg)
        assert applied.reuse(cfg) is not None
        add_pair(ns, "xdap2a", "xdap2b")
        assert applied.reuse(cfg) is None
        plans = dispatcher.apply_config(cfg)
        assert [(p.iface, p.changed) for p in plans] == [("xdap1a", False), ("xdap2a", True)]
        names = [c.name for c in dispatcher.status("xdap2a", netns=ns)[0].programs]
        assert names in (["xdp_pass", "xdp_counter"], ["pass", "counter"])   # freplace, linked
    finally:
        unload_all(ns, "xdap1a", "xdap2a")


def test_no_record_when_the_system_changed_while_planning(applied_cfg, objs) -> None:  # type: ignore[no-untyped-def]
    """The fingerprint read before the plan must still hold when the record is written:
    here another writer attaches a program to B (same namespace) in between."""
    cfg, ns, _a, b = applied_cfg
    applied.forget(cfg)
    rec = apply._Recorder(cfg, False)
    c, targets, _o = apply.prepare(cfg)
    links = rec.fingerprint(targets)
    plans = apply.observe_plan(c, targets, links=links)
    dispatcher.load(b, [objs["xdp_pass"]], mode="skb", netns=ns)
    rec.remember(c, plans, {})
    assert applied.reuse(cfg) is None
    dispatcher.unload(b, all=True, netns=ns)
    # read again from scratch, the record is written
    links = rec.fingerprint(targets)
    rec.remember(c, apply.observe_plan(c, targets, links=links), {})
    assert applied.reuse(cfg) is not None


def test_reapply_from_the_record_imports_no_config_or_object_stack(applied_cfg) -> None:  # type: ignore[no-untyped-def]
    """What makes it fast: no YAML/pydantic, no ELF reader, no chain-changing code."""
    from tests.unit.test_import_cost import REAPPLY_FORBIDDEN, heavy, modules_after

    cfg, _ns, _a, _b = applied_cfg
    mods = modules_after("from dispatcher.cli import main\n"
                         f"assert main(['apply', {cfg!r}]) == 0")
    assert "dispatcher.config.applied" in mods
    assert heavy(mods, REAPPLY_FORBIDDEN) == []
