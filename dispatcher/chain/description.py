"""A linked chain's description (pure): the typed value, and its one encoding.

The description map is an ARRAY (key 4 bytes, one entry, ``BPF_F_RDONLY_PROG``, frozen)
named ``chain.rodata`` that the chain's main function references first (so it is
``map_ids[0]``), holding compact JSON + NUL with ``"mode": "linked"``; ``bpftool prog
show`` prints it as the metadata ``xdp_chain``. ``encode`` and ``parse`` are the two ends
of that format; a value ``parse`` does not recognise is not a linked chain of ours.
Reading it from the kernel is ``observe.read_description``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from dispatcher.record import record

DESC_MAP_NAME = "chain.rodata"
MODE = "linked"
VERSION = 1
MAX_SIZE = 1 << 20             # a description is a few KiB; refuse anything absurd


@record
class SlotDescription:
    """One slot: where its program came from, how it runs, and the maps it uses (by id)."""

    label: str
    priority: int
    actions: tuple[str, ...]
    frags: bool
    path: str                           # the object file (absolute path)
    sha256: str                         # hex prefix of its sha256 when linked
    program: str
    section: str
    maps: tuple[tuple[str, int], ...]   # (map name, map id), as the component uses them
    pin_dir: str = ""
    settings: str = ""                  # a config entry's load-time overrides (JSON)
    source: str = ""                    # the config file that manages the slot
    counter: int = -1                   # stats on: the slot's counter index (chain/stats.py)
    inlined: bool = False               # its entry is inlined into the chain's main function
    not_inlined: str = ""               # why it stays a bpf-to-bpf call (chains that inline)

    @property
    def map_ids(self) -> dict[str, int]:
        return dict(self.maps)

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label, "priority": self.priority, "actions": list(self.actions),
            "frags": self.frags, "object": self.path, "sha256": self.sha256,
            "program": self.program, "section": self.section, "maps": dict(self.maps),
            **({"pin_dir": self.pin_dir} if self.pin_dir else {}),
            **({"settings": self.settings} if self.settings else {}),
            **({"source": self.source} if self.source else {}),
            **({"counter": self.counter} if self.counter >= 0 else {}),
            **({"inlined": True} if self.inlined else {}),
            **({"inlined": False, "not_inlined": self.not_inlined} if self.not_inlined
               else {}),
        }


@record
class ChainDescription:
    tool: str                           # "xdp-dispatch VERSION"
    btf: str                            # hybrid | none: how the chain's BTF was made
    frags: bool
    slots: tuple[SlotDescription, ...]  # in slot order
    version: int = VERSION
    stats_map: int = 0                  # id of the chain.stats map; 0: stats off
    inline: bool = True                 # entries are inlined into main where they can be

    @property
    def stats(self) -> str:
        return "counts" if self.stats_map else "off"

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.slots]

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "mode": MODE, "tool": self.tool, "btf": self.btf,
                "frags": self.frags, "slots": [s.to_json() for s in self.slots],
                **({"stats_map": self.stats_map} if self.stats_map else {}),
                **({} if self.inline else {"inline": False})}


def encode(desc: ChainDescription) -> bytes:
    """The map value: compact JSON + NUL."""
    return json.dumps(desc.to_json(), separators=(",", ":")).encode() + b"\0"


def parse(value: bytes) -> ChainDescription | None:
    """The description a map value holds, or None if it is not one of ours (any
    malformed field, wrong type or absurd size included)."""
    raw = value[:MAX_SIZE].split(b"\0", 1)[0]
    try:
        doc = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("mode") != MODE or not isinstance(
            doc.get("slots"), list):
        return None
    try:
        slots = tuple(_slot(s) for s in doc["slots"])
        return ChainDescription(_str(doc.get("tool", "")), _str(doc.get("btf", "")),
                                _bool(doc.get("frags", False)), slots,
                                _int(doc.get("version", VERSION)), _int(doc.get("stats_map", 0)),
                                _bool(doc.get("inline", True)))
    except (TypeError, ValueError):
        return None


def _slot(s: object) -> SlotDescription:
    if not isinstance(s, Mapping):
        raise TypeError("slot")
    acts = s.get("actions", [])
    maps = s.get("maps", {})
    if not isinstance(acts, list) or not isinstance(maps, Mapping):
        raise TypeError("slot fields")
    return SlotDescription(
        _str(s.get("label", "?")), _int(s.get("priority", 0)), tuple(_str(a) for a in acts),
        _bool(s.get("frags", False)), _str(s.get("object", "")), _str(s.get("sha256", "")),
        _str(s.get("program", "")), _str(s.get("section", "")),
        tuple((_str(k), _int(v)) for k, v in maps.items()), _str(s.get("pin_dir", "")),
        _str(s.get("settings", "")), _str(s.get("source", "")), _int(s.get("counter", -1)),
        _bool(s.get("inlined", False)), _str(s.get("not_inlined", "")))


def _str(v: object) -> str:
    if not isinstance(v, str):
        raise TypeError("string expected")
    return v


def _int(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError("integer expected")
    return v


def _bool(v: object) -> bool:
    if not isinstance(v, bool):
        raise TypeError("boolean expected")
    return v
