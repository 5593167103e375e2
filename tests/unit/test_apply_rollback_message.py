"""The error ``apply`` gives when interface k fails: which interface, why, and what became of
the interfaces it had already changed (pure: pending changes are stand-ins that record
the order of rollbacks; the kernel side is tested in tests/host/test_apply_rollback.py)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from dispatcher.config import apply
from dispatcher.config.plan import InterfacePlan
from dispatcher.errors import KernelError, NetlinkOpError, VerifierError, XdpDispatchError


class FakePending:
    def __init__(self, name: str, log: list[str], fail: XdpDispatchError | None = None) -> None:
        self.name, self.log, self.fail = name, log, fail

    def rollback(self) -> None:
        self.log.append(self.name)
        if self.fail:
            raise self.fail


def pending(*specs: tuple[str, XdpDispatchError | None], log: list[str]) -> list[Any]:
    return [(InterfacePlan(n, None, "skb"), FakePending(n, log, f)) for n, f in specs]


def test_restores_newest_first_and_names_them() -> None:
    log: list[str] = []
    p = pending(("eth0", None), ("eth1", None), log=log)
    e = apply._failed_at(VerifierError("BPF_PROG_LOAD", 13, "x.o: program bad", "R1 invalid"),
                           InterfacePlan("eth2", None, "skb"), cast(Any, p))
    assert log == ["eth1", "eth0"] and p == []
    assert e.message == ("apply failed on eth2: x.o: program bad: BPF_PROG_LOAD: Permission denied "
                         "(EACCES): R1 invalid (restored eth0, eth1 to their previous chains)")
    assert str(e) == e.message and e.exit_code == 1 and isinstance(e, VerifierError)


def test_first_interface_failing_changed_nothing() -> None:
    e = apply._failed_at(XdpDispatchError("eth0: no such device", hint="check the name"),
                           InterfacePlan("eth0", "ns1", "skb"), [])
    assert e.message == "apply failed on eth0: no such device (no interface was changed)"
    assert e.hint == "check the name"


def test_message_not_prefixed_twice_and_netns_named() -> None:
    e = apply._failed_at(XdpDispatchError("eth0: busy"), InterfacePlan("eth0", None, "skb"), [])
    assert e.message.startswith("apply failed on eth0: busy")
    e = apply._failed_at(XdpDispatchError("busy"), InterfacePlan("eth0", "ns1", "skb"), [])
    assert e.message.startswith("apply failed on eth0 (netns ns1): busy")
    # the chain layer already named the interface with its netns: not repeated
    e = apply._failed_at(XdpDispatchError("eth0 (netns ns1): RTM_SETLINK: Invalid argument"),
                         InterfacePlan("eth0", "ns1", "skb"), [])
    assert e.message == ("apply failed on eth0 (netns ns1): RTM_SETLINK: Invalid argument "
                         "(no interface was changed)")


def test_an_interface_that_cannot_be_restored_is_named() -> None:
    log: list[str] = []
    lost = NetlinkOpError("RTM_SETLINK", 17, subject="eth0")
    p = pending(("eth0", lost), ("eth1", None), log=log)
    e = apply._failed_at(KernelError("BPF_PROG_LOAD", 22, "y.o"),
                           InterfacePlan("eth2", None, "skb"), cast(Any, p))
    assert log == ["eth1", "eth0"]
    assert e.message.endswith("(restored eth1 to its previous chain; could not restore eth0: "
                              "eth0: RTM_SETLINK: File exists (EEXIST))")


@pytest.mark.parametrize("spec,step,iface,hit", [
    ("pinned", "pinned", "eth0", True),
    ("pinned", "attached", "eth0", False),
    ("pinned@eth1", "pinned", "eth0", False),
    ("pinned@eth1", "pinned", "eth1", True),
])
def test_fault_hook_filters_by_step_and_interface(monkeypatch: pytest.MonkeyPatch, spec: str,
                                                  step: str, iface: str, hit: bool) -> None:
    from dispatcher import failpoints

    monkeypatch.setenv(failpoints.ENV, spec)
    if hit:
        with pytest.raises(XdpDispatchError, match=f"injected failure at step '{step}'"):
            failpoints.hit(step, iface)
    else:
        failpoints.hit(step, iface)


def test_fault_pause_ends_when_ready_file_is_removed(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Any) -> None:
    import threading
    import time

    from dispatcher import failpoints

    ready = tmp_path / "ready"
    monkeypatch.setenv(failpoints.ENV, "pinned:pause30")
    monkeypatch.setenv(failpoints.READY_ENV, str(ready))

    def release() -> None:
        while not ready.exists():
            time.sleep(0.01)
        ready.unlink()
    t = threading.Thread(target=release)
    t.start()
    start = time.monotonic()
    failpoints.hit("pinned", "eth0")
    t.join()
    assert time.monotonic() - start < 10
