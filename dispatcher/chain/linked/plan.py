"""Planning a linked chain change (pure): which slots of the attached chain are kept,
which go, and which removed slot a re-added program takes the place of (same label,
object, program and settings: a config update), so its unpinned maps carry over."""

from __future__ import annotations

from dispatcher.chain import rules
from dispatcher.chain.description import ChainDescription
from dispatcher.chain.model import ChangeRequest
from dispatcher.chain.state import InterfaceState
from dispatcher.chain.stats import DEFAULT_LINKED
from dispatcher.record import record


@record
class LinkedPlan:
    remove_all: bool
    description: ChainDescription | None     # the attached chain's, if it is a linked one
    removed: frozenset[int]                  # its slots that go
    reuse: tuple[int, ...]                   # per added program: the removed slot it takes, or -1
    stats: bool = False                      # the new chain counts per component
    inline: bool = True                      # the new chain inlines its entries into main

    @property
    def empty(self) -> bool:
        """Nothing is left: the chain goes."""
        kept = 0 if self.description is None or self.remove_all else \
            len(self.description.slots) - len(self.removed)
        return kept == 0 and not self.reuse


def plan(st: InterfaceState, req: ChangeRequest) -> LinkedPlan:
    remove_all = rules.check_linked(st, req)
    desc = st.description if st.kind == "linked" else None
    removed: set[int] = set()
    if desc is not None and not remove_all:
        removed = rules.slots_named(req.iface, desc.labels, req.remove_names)
    reusable = sorted(removed)
    reuse = []
    for n in req.add:
        hit = -1
        for i in reusable:
            assert desc is not None
            s = desc.slots[i]
            if n.sha256 and (s.label, s.sha256, s.program, s.settings) == (
                    n.label or n.prog.name, n.sha256, n.prog.name, n.settings):
                hit = i
                reusable.remove(i)
                break
        reuse.append(hit)
    return LinkedPlan(remove_all, desc, frozenset(removed), tuple(reuse), stats_on(desc, req),
                      inline_on(desc, req))


def stats_on(desc: ChainDescription | None, req: ChangeRequest) -> bool:
    """Counts on: as asked, else as the attached chain has them, else the default."""
    want = req.stats or (desc.stats if desc is not None else DEFAULT_LINKED)
    return want == "counts"


def inline_on(desc: ChainDescription | None, req: ChangeRequest) -> bool:
    """Inlining on: as asked, else as the attached chain has it, else on."""
    if req.inline is not None:
        return req.inline
    return desc.inline if desc is not None else True
