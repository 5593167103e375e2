"""Suite-wide test policy.

``@pytest.mark.freplace`` tests need a kernel that allows BPF_PROG_TYPE_EXT. Where
the kernel refuses it (our 6.18 host) they skip and say why; inside the test VM
(XDP_DISPATCH_EXPECT_FREPLACE=1) a refusal is a failure, never a skip.
"""

from __future__ import annotations

import os
from functools import cache

import pytest


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
