"""The tier has what tests/tier_requirements.py says it must have.

Skips for a missing tool become failures through the conftest hook; this also catches
what never skips but silently shrinks, e.g. a parametrization over Debian's objects that
finds none.
"""

from __future__ import annotations

import pytest

from tests import tier_requirements as tr

CHECKABLE = [n for n, r in tr.REQUIREMENTS.items() if r.present is not None]


@pytest.mark.parametrize("name", CHECKABLE)
def test_tier_has_what_it_requires(name: str) -> None:
    if name not in tr.required():
        pytest.skip(f"not required here (tier {tr.tier() or 'none: not a CI tier run'})")
    present = tr.REQUIREMENTS[name].present
    assert present is not None and present(), \
        f"tier {tr.tier()} requires {tr.REQUIREMENTS[name].what}, which is missing"
