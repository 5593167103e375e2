"""What the agent does about an event (pure: config, event and known state in, a decision
out). No I/O: the service (``service.py``) observes and acts."""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.config.model import ChainConfig, expand_names

APPLY, FORGET, REPAIR, REPORT, IGNORE = "apply", "forget", "repair", "report", "ignore"

Key = tuple[str | None, int]          # (netns, ifindex): survives a rename


@dataclass(frozen=True, slots=True)
class Known:
    """An interface the agent made right: its name and the XDP program id it left."""

    name: str
    prog_id: int


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    netns: str | None
    name: str
    why: str


def namespaces(cfg: ChainConfig) -> list[str | None]:
    """The network namespaces the config names (None: the agent's own), in file order."""
    out: list[str | None] = []
    for i in cfg.interfaces:
        if i.netns not in out:
            out.append(i.netns)
    return out


def entry_for(cfg: ChainConfig, netns: str | None, name: str) -> str | None:
    """The name or pattern of the config entry that covers interface ``name`` in ``netns``
    (as written), or None."""
    for i in cfg.interfaces:
        if i.netns != netns:
            continue
        for item in i.names():
            if expand_names(item, [name], i.exact_names()) == [name]:
                return item
    return None


def on_link(cfg: ChainConfig, netns: str | None, ifindex: int, name: str, prog_id: int,
            gone: bool, known: dict[Key, Known]) -> Decision:
    """The decision for one RTM_NEWLINK (``gone`` False) or RTM_DELLINK notification."""
    was = known.get((netns, ifindex))
    if gone:
        return Decision(FORGET if was else IGNORE, netns, name, "interface removed")
    entry = entry_for(cfg, netns, name)
    if entry is None:
        if was is not None:
            return Decision(FORGET, netns, name,
                            f"renamed from {was.name}: no longer matched by the config")
        return Decision(IGNORE, netns, name, "not in the config")
    if was is None:
        return Decision(APPLY, netns, name, f"new interface matches {entry!r}")
    if was.prog_id != prog_id:
        what = (f"XDP program {was.prog_id} removed" if not prog_id else
                f"XDP program {was.prog_id} replaced by {prog_id}")
        return Decision(REPAIR if cfg.on_drift == "repair" else REPORT, netns, name,
                        f"{what} by another tool (on_drift: {cfg.on_drift})")
    return Decision(IGNORE, netns, name, "unchanged")


class Debounce:
    """Fires once ``delay`` seconds after the last poke (a burst of file events -> one)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.deadline: float | None = None

    def poke(self, now: float) -> None:
        self.deadline = now + self.delay

    def due(self, now: float) -> bool:
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            return True
        return False


def timeout(now: float, *deadlines: float | None) -> float:
    """Seconds until the earliest deadline (0 if one has passed), for poll()."""
    ds = [d for d in deadlines if d is not None]
    return max(0.0, min(ds) - now) if ds else 3600.0
