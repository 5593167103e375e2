"""XDP action names and chain-call action bitmaps (pure; kept apart from ``spec`` so that
reading attached chains does not build the object-file blueprint classes)."""

from __future__ import annotations

XDP_ACTIONS = ("XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT")


def actions_to_names(bitmap: int) -> tuple[str, ...]:
    """Names of the set action bits 0..4, ascending (bits above 4 are ignored)."""
    return tuple(n for i, n in enumerate(XDP_ACTIONS) if bitmap & (1 << i))


def names_to_actions(names: tuple[str, ...] | list[str]) -> int:
    """Bitmap from action names (case-insensitive, with or without ``XDP_``)."""
    bitmap = 0
    for raw in names:
        n = raw.strip().upper()
        if not n.startswith("XDP_"):
            n = "XDP_" + n
        if n not in XDP_ACTIONS:
            raise ValueError(f"unknown XDP action {raw!r} (expected one of {', '.join(XDP_ACTIONS)})")
        bitmap |= 1 << XDP_ACTIONS.index(n)
    return bitmap
