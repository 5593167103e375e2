"""Named fail points: the one place where tests make a change fail or pause mid-way.

Inert unless the environment enables it: ``XDP_DISPATCH_FAULT=POINT[@IFACE][:pause[SECONDS]]``
makes ``hit(POINT, iface)`` raise an ``XdpDispatchError`` (or pause) at POINT, of IFACE's
change only if given; ``POINT[@IFACE]:race`` makes ``lost_race(POINT, iface)`` true there
(every time: the retry limit is reached). A pause writes the file ``XDP_DISPATCH_FAULT_READY`` names, then
lasts SECONDS (default 30) or until someone deletes that file. Tests use it across process
boundaries (kill -9 at a step, a race against another tool at a step).

Points, in the order a change passes them (``POINTS``):

- ``dispatcher_loaded``: freplace: our dispatcher is loaded, no component yet.
- ``components_linked``: freplace: every component is loaded and linked to it.
- ``pinned``: freplace: the new dispatcher's pin directory is complete (under the lock).
- ``linked_built``: linked: the chain program is loaded, maps created (under the lock).
- ``swap``: any kind: right before the netlink swap (``:race`` makes it lose the race).
- ``attached``: any kind: the swap is done, the change is pending (commit/rollback next).
"""

from __future__ import annotations

import os
import time

from dispatcher.errors import XdpDispatchError

ENV = "XDP_DISPATCH_FAULT"
READY_ENV = ENV + "_READY"
POINTS = ("dispatcher_loaded", "components_linked", "pinned", "linked_built", "swap",
          "attached")


def _asked(point: str, iface: str) -> str | None:
    """The action the environment asks for at ``point`` (of ``iface``), or None."""
    spec = os.environ.get(ENV)
    if not spec:
        return None
    name, _, action = spec.partition(":")
    name, _, only = name.partition("@")
    if name != point or (only and only != iface):
        return None
    return action


def lost_race(point: str, iface: str = "") -> bool:
    """Whether the environment makes the swap at ``point`` lose its race."""
    assert point in POINTS, point
    return _asked(point, iface) == "race"


def hit(point: str, iface: str = "") -> None:
    """Fail or pause here if the environment asks for ``point`` (of ``iface``)."""
    assert point in POINTS, point
    action = _asked(point, iface)
    if action is None or action == "race":
        return
    if action.startswith("pause"):
        ready = os.environ.get(READY_ENV)
        if ready:
            with open(ready, "w") as f:
                f.write(point)
        end = time.monotonic() + float(action[5:] or 30)
        while time.monotonic() < end and (not ready or os.path.exists(ready)):
            time.sleep(0.02)
        return
    raise XdpDispatchError(f"injected failure at step '{point}' ({ENV})")
