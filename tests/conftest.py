"""Suite-wide test policy.

``@pytest.mark.freplace`` tests need a kernel that allows BPF_PROG_TYPE_EXT. Where
the kernel refuses it (our 6.18 host) they skip and say why; inside the test VM
(XDP_DISPATCH_EXPECT_FREPLACE=1) a refusal is a failure, never a skip.

More generally, tests/tier_requirements.py lists what each tier must have (xdp-loader,
bpftool, Debian's objects, freplace in the VM...): in a tier run, a skip whose reason says
one of those is missing is reported as a failure.
"""

from __future__ import annotations

import os
from functools import cache

import pytest

from tests import tier_requirements


@cache
def _freplace_refused() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    try:
        from dispatcher.chain.freplace.program import freplace as freplace_probe

        p = freplace_probe()
    except Exception as e:  # inconclusive probe
        return f"freplace probe inconclusive: {e}"
    if p.supported:
        return None
    return f"kernel {os.uname().release} refuses freplace ({p.detail}); runs in the VM tier"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("freplace") is None:
        return
    reason = _freplace_refused()
    if reason is None:
        return
    if os.environ.get("XDP_DISPATCH_EXPECT_FREPLACE") == "1":
        pytest.fail(f"freplace expected on this kernel but: {reason}")
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A skip for lack of something this tier must have is a failure."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.skipped or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    need = tier_requirements.required_but_skipped(reason)
    if need is not None:
        rep.outcome = "failed"
        rep.longrepr = (f"tier {tier_requirements.tier()} requires "
                        f"{tier_requirements.REQUIREMENTS[need].what}, but the test skipped: "
                        f"{reason}")
