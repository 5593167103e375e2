"""Which libxdp releases read and which extend each dispatcher version (pure data + rules).

From xdp-tools' ``check_dispatcher_version`` and ``xdp_multiprog__generate``
(lib/libxdp/libxdp.c) at each release series:

* A libxdp series writes one dispatcher version (1.0-1.2: v1, 1.3.0-1.5.8: v2, 1.6.0-: v3).
* It reads a dispatcher of its own version or older, never a newer one ("XDP dispatcher
  version N higher than supported M", EOPNOTSUPP: ``status`` and ``unload`` fail there).
* Size rules when reading: 1.3-1.5 read v2 only when the map value is exactly 124 bytes,
  1.6 reads v3 only when it is exactly 128; older versions are read without a size check.
* It extends (adds to, or removes some of) only a dispatcher of exactly its own version: an
  older one is refused with "Refusing transparent upgrade, unload first" (EBUSY); removing
  every program still works wherever it can read.
* Adding to a device-bound v3 dispatcher needs the library flag XDP_ATTACH_DEVBIND, which
  xdp-loader has no option for: such a chain is extended only by programs using the library.
"""

from __future__ import annotations

from dispatcher.chain.protocol import V2_SIZE, V3_SIZE
from dispatcher.record import record


@record
class LibxdpSeries:
    """Consecutive libxdp releases that write the same dispatcher version."""

    first: str
    last: str | None          # newest release of the series; None while it is current
    writes: int               # the dispatcher version it writes
    own_size: int = 0         # exact value size it requires of its own version (0: unchecked)


SERIES = (
    LibxdpSeries("1.0.0", "1.2.10", 1),
    LibxdpSeries("1.3.0", "1.5.8", 2, V2_SIZE),
    LibxdpSeries("1.6.0", None, 3, V3_SIZE),
)


@record
class Releases:
    """A contiguous range of libxdp releases."""

    first: str
    last: str | None          # None: and every later release

    def __str__(self) -> str:
        if self.last is None:
            return f"{self.first} and later"
        return self.first if self.first == self.last else f"{self.first} to {self.last}"

    def to_json(self) -> dict[str, str | None]:
        return {"first": self.first, "last": self.last}


@record
class LibxdpCompat:
    """Which libxdp releases can read and which can extend one dispatcher."""

    reads: Releases | None
    extends: Releases | None
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {"reads": self.reads.to_json() if self.reads else None,
                "extends": self.extends.to_json() if self.extends else None,
                "note": self.note or None}

    def describe(self, version: int) -> str:
        reads = f"read by libxdp {self.reads}" if self.reads else "read by no libxdp release"
        ext = f"extended by {self.extends}" if self.extends else "extended by none"
        return f"dispatcher v{version}: {reads}, {ext}" + (f" ({self.note})" if self.note else "")


def series_reads(s: LibxdpSeries, version: int, value_size: int) -> bool:
    if version > s.writes:
        return False
    if version == s.writes and s.own_size:
        return value_size == s.own_size
    return True


def _span(series: list[LibxdpSeries]) -> Releases | None:
    """The range covered by consecutive series (SERIES order), or None."""
    if not series:
        return None
    return Releases(series[0].first, series[-1].last)


#: The first libxdp whose stubs make a no-op packet-changing call (bpf_xdp_adjust_tail(ctx,
#: 0)): kernels that check it (Linux 6.13, stable 6.12.26) refuse an extension changing
#: packet data in place of a stub that does not, and libxdp re-attaches every component
#: to stubs of its own when it extends a chain.
PACKET_CHANGING_STUBS = "1.5.5"


def libxdp_compat(version: int, value_size: int, devbound: bool = False,
                  changes_packets: tuple[str, ...] = ()) -> LibxdpCompat:
    """The libxdp releases that read / extend a dispatcher of ``version`` whose config map
    value is ``value_size`` bytes. ``changes_packets``: its components that change packet
    data, on a kernel that checks it (libxdp before 1.5.5 cannot re-attach them)."""
    readers = [s for s in SERIES if series_reads(s, version, value_size)]
    extenders = _span([s for s in readers if s.writes == version])
    notes = []
    if devbound and extenders:
        notes.append("device-bound: libxdp adds to it only for callers passing "
                     "XDP_ATTACH_DEVBIND; xdp-loader cannot")
    if changes_packets and extenders:
        first = max(extenders.first, PACKET_CHANGING_STUBS, key=_key)
        if extenders.last is not None and _key(first) > _key(extenders.last):
            extenders = None
        else:
            extenders = Releases(first, extenders.last)
        notes.append(f"{', '.join(changes_packets)} "
                     f"{'changes' if len(changes_packets) == 1 else 'change'} packet data: "
                     f"libxdp before {PACKET_CHANGING_STUBS} cannot re-attach "
                     f"{'it' if len(changes_packets) == 1 else 'them'} on this kernel")
    return LibxdpCompat(_span(readers), extenders, "; ".join(notes))


def writer_of(libxdp_version: str) -> int:
    """The dispatcher version a libxdp release writes (``"1.3.1"`` -> 2); 0 if unknown."""
    try:
        key = _key(libxdp_version)
    except ValueError:
        return 0
    for s in SERIES:
        if _key(s.first) <= key and (s.last is None or key <= _key(s.last)):
            return s.writes
    return 0


def _key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))
