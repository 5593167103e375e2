"""Fuzz the object reader: truncated or mutated objects raise ObjectFileError, nothing else.

The suite runs a few thousand cases. For a longer run:
    XDP_DISPATCH_FUZZ_EXAMPLES=200000 python -m pytest tests/unit/test_elf_fuzz.py
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.errors import ObjectFileError
from dispatcher.obj.elf import parse_object
from dispatcher.obj.link import link_program
from tests.objects import example

N = int(os.environ.get("XDP_DISPATCH_FUZZ_EXAMPLES", "1500"))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


SEEDS = [_read(example(n)) for n in ("xdp_counter", "xdp_globals", "xdp_subprogs")]


def _exercise(data: bytes) -> None:
    try:
        spec = parse_object(data, "fuzz.o")
    except ObjectFileError:
        return
    for prog in spec.programs:
        try:
            link_program(spec, prog, {m.name: 3 for m in spec.maps})
        except ObjectFileError:
            pass


@settings(max_examples=N // 3, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.sampled_from(SEEDS), cut=st.integers(min_value=0, max_value=1 << 16))
def test_truncated(seed: bytes, cut: int) -> None:
    _exercise(seed[: cut % (len(seed) + 1)])


@settings(max_examples=N * 2 // 3, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.sampled_from(SEEDS),
       edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
                      min_size=1, max_size=8))
def test_mutated(seed: bytes, edits: list[tuple[int, int]]) -> None:
    buf = bytearray(seed)
    for pos, val in edits:
        buf[pos % len(buf)] = val
    _exercise(bytes(buf))
