"""Per-component counters of linked chains (pure: layout, arithmetic, no I/O).

When stats are on, a linked chain's generated main counts, after each component returns,
one packet and its length (``data_end - data`` as the component left it) into a
``BPF_MAP_TYPE_PERCPU_ARRAY`` named ``chain.stats`` that the chain owns and its program
references (so the map lives exactly as long as some chain uses it; no pins). Key =
``counter * 6 + action`` (action 0..4 = XDP_ABORTED..XDP_REDIRECT, 5 = any other code),
value = ``{u64 packets; u64 bytes}`` per CPU.

``counter`` is the slot's counter index, recorded per slot in the description (with the
map's id). It is NOT the slot number. Why: counts must survive chain changes keyed by
the component's identity. A rebuild reuses the old chain's map (reopened by the id in
its description) and gives each kept component (same label, object sha256 and program,
i.e. ``build._old_slot``) its old counter index; new components get indexes no slot of
the old chain uses (``assign_counters``), zeroed before the swap. So the old chain keeps
counting into the very cells the new one continues: nothing is copied and no packet is
lost or counted twice around the swap (a copy-then-swap would miss the packets counted
between the copy and the swap). A component whose object changed (an upgrade) is a new
identity and starts at zero. 10 slots old + 10 new fit in ``MAX_COUNTERS``.

"Chain ended here" is derived, not counted: a slot's verdict ends the chain when its bit
is not in the slot's chain-call actions, and every verdict of the last slot ends it (a
last "continue" returns XDP_PASS). So ``ended = sum of the counts of the actions that do
not continue`` (+ all of the last slot). "other" codes (> 4, or negative) count as ending
the chain: libxdp's and our ``1 << verdict`` test has no bit for them (on x86 a code of
32 or more shifts modulo 32; such a program is broken anyway).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from dispatcher.chain.model import STATS_MODES
from dispatcher.obj.actions import XDP_ACTIONS
from dispatcher.record import record

MAP_NAME = "chain.stats"
NUM_ACTIONS = 6                         # XDP_ABORTED .. XDP_REDIRECT, other
ACTION_NAMES = (*XDP_ACTIONS, "other")
OTHER = 5
VALUE_SIZE = 16                         # u64 packets, u64 bytes
MAX_COUNTERS = 20                       # 10 kept slots + 10 new ones in one change
MAX_ENTRIES = MAX_COUNTERS * NUM_ACTIONS
MODES = STATS_MODES
# Default for linked chains: the measured cost is within the target of 2 ns per
# slot on the host (README "Per-component statistics" has the figures).
DEFAULT_LINKED = "counts"


def key(counter: int, action: int) -> int:
    return counter * NUM_ACTIONS + action


def assign_counters(kept: Sequence[int | None], old_used: Sequence[int]) -> list[int]:
    """Counter index per slot: a kept slot's old index, else the lowest index that no
    slot of the old chain (``old_used``) and no other new slot uses."""
    taken = set(old_used) | {k for k in kept if k is not None}
    out = []
    free = (i for i in range(MAX_COUNTERS) if i not in taken)
    for k in kept:
        if k is None:
            k = next(free)
        out.append(k)
    return out


def sum_percpu(raw: bytes) -> tuple[int, int]:
    """(packets, bytes) of one per-CPU value: the CPUs' values summed."""
    pk = by = 0
    for off in range(0, len(raw) - VALUE_SIZE + 1, VALUE_SIZE):
        p, b = struct.unpack_from("<QQ", raw, off)
        pk += p
        by += b
    return pk, by


@record
class ActionCount:
    packets: int
    bytes: int


@record
class ComponentStats:
    """One slot's counts (totals since the component joined the chain, or rates)."""

    slot: int
    name: str
    priority: int
    actions: tuple[ActionCount, ...]       # indexed like ACTION_NAMES
    ended: int                             # packets whose chain ended at this slot
    run_time_ns: int | None = None         # stats timing: time spent in the component

    @property
    def packets(self) -> int:
        return sum(a.packets for a in self.actions)

    @property
    def bytes(self) -> int:
        return sum(a.bytes for a in self.actions)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "slot": self.slot, "name": self.name, "priority": self.priority,
            "packets": self.packets, "bytes": self.bytes, "ended": self.ended,
            "actions": {n: {"packets": a.packets, "bytes": a.bytes}
                        for n, a in zip(ACTION_NAMES, self.actions, strict=True)}}
        if self.run_time_ns is not None:
            out["run_time_ns"] = self.run_time_ns
        return out


def ending_actions(continue_on: Sequence[str], last: bool) -> list[int]:
    """Action indexes whose verdict ends the chain at a slot (see the module doc)."""
    return [i for i, n in enumerate(ACTION_NAMES) if last or n not in continue_on]


def component_stats(slot: int, name: str, priority: int, continue_on: Sequence[str],
                    last: bool, counts: Sequence[tuple[int, int]],
                    run_time_ns: int | None = None) -> ComponentStats:
    """One slot's stats from its ``NUM_ACTIONS`` (packets, bytes) totals."""
    acts = tuple(ActionCount(p, b) for p, b in counts)
    ended = sum(acts[i].packets for i in ending_actions(continue_on, last))
    return ComponentStats(slot, name, priority, acts, ended, run_time_ns)


def rates(before: ComponentStats, after: ComponentStats, seconds: float) -> ComponentStats:
    """Per-second rates between two samples of the same component (counts that went
    down, e.g. the component was replaced meanwhile, give 0)."""
    def r(a: int, b: int) -> int:
        return round(max(b - a, 0) / seconds) if seconds > 0 else 0

    acts = tuple(ActionCount(r(x.packets, y.packets), r(x.bytes, y.bytes))
                 for x, y in zip(before.actions, after.actions, strict=True))
    run = (None if after.run_time_ns is None or before.run_time_ns is None
           else r(before.run_time_ns, after.run_time_ns))
    return ComponentStats(after.slot, after.name, after.priority, acts,
                          r(before.ended, after.ended), run)


# ------------------------------------------------------------------ freplace chains
# Each component's fexit program (``chain.counting``) counts into a per-CPU array of its
# own: keys 0..5 are the actions (like a linked chain's cells with counter 0),
# ``TIME_KEY`` holds (run time in ns, timed packets) and ``START_KEY`` the clock its
# fentry program read (``stats: timing``). Pins: ``chain.fexit``.

TIME_KEY = NUM_ACTIONS               # 6
START_KEY = NUM_ACTIONS + 1          # 7
FEXIT_ENTRIES = NUM_ACTIONS + 2
FEXIT_MAP_NAME = "xdpd_fexit"        # the kernel keeps 15 characters of a map's name


# ------------------------------------------------------------------ pin names

def interface_dir(nsid: int, ifindex: int, mode: str) -> str:
    """The directory whose presence says: count the freplace chain of this interface
    (``mode`` counts | timing). ``nsid``: the network namespace's inode number."""
    return f"{nsid}-{ifindex}-{mode}"


def component_dir(nsid: int, ifindex: int, prog_id: int) -> str:
    """The directory holding one component's counters (``map``) and links (``fexit``,
    ``fentry``)."""
    return f"{nsid}-{ifindex}-{prog_id}"


def parse_dir(name: str) -> tuple[int, int, str | int] | None:
    """(nsid, ifindex, mode or prog id) from a name above, or None."""
    parts = name.split("-")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    last: str | int
    if parts[2] in MODES and parts[2] != "off":
        last = parts[2]
    elif parts[2].isdigit() and parts[2] == str(int(parts[2])) and int(parts[2]) > 0:
        last = int(parts[2])
    else:
        return None
    return int(parts[0]), int(parts[1]), last
