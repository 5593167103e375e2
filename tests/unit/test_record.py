"""``dispatcher.record`` behaves as ``dataclass(frozen=True, slots=True)`` on the same class
bodies: construction (positional, keyword, defaults, errors), equality, hashing, repr,
immutability, slots, pattern matching, ``replace``, inheritance of methods/properties."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from dispatcher.record import record, replace


def _body() -> dict[str, object]:
    """A fresh class namespace (both decorators consume their class)."""
    def total(self) -> int:  # type: ignore[no-untyped-def]
        return self.a + self.b  # type: ignore[no-any-return]

    def double(self) -> int:  # type: ignore[no-untyped-def]
        return 2 * self.a  # type: ignore[no-any-return]

    return {"__annotations__": {"a": "int", "b": "int", "name": "str", "tags": "tuple[str, ...]",
                                "KIND": "ClassVar[str]"},
            "__module__": __name__, "__qualname__": "Thing",
            "b": 2, "name": "x", "tags": (), "KIND": "thing",
            "total": total, "double": property(double)}


def make(kind: str) -> type:
    cls = type("Thing", (), _body())
    return record(cls) if kind == "record" else dataclasses.dataclass(frozen=True, slots=True)(cls)


@pytest.fixture(params=["record", "dataclass"])
def Thing(request) -> type:  # type: ignore[no-untyped-def]
    return make(request.param)


CALLS = [((1,), {}), ((1, 3), {}), ((), {"a": 1, "name": "y"}), ((1, 2, "z", ("t",)), {}),
         ((), {}), ((1,), {"a": 2}), ((1,), {"c": 3}), ((1, 2, "n", (), 5), {})]


@pytest.mark.parametrize("args,kwargs", CALLS)
def test_construction_matches_dataclasses(args, kwargs) -> None:  # type: ignore[no-untyped-def]
    R, D = make("record"), make("dataclass")
    try:
        d = D(*args, **kwargs)
    except TypeError:
        with pytest.raises(TypeError):
            R(*args, **kwargs)
        return
    r = R(*args, **kwargs)
    assert [getattr(r, f.name) for f in dataclasses.fields(D)] == \
        [getattr(d, f.name) for f in dataclasses.fields(D)]
    assert repr(r) == repr(d)


def test_value_semantics(Thing) -> None:  # type: ignore[no-untyped-def]
    a, b, c = Thing(1), Thing(1), Thing(2)
    assert a == b and a != c and hash(a) == hash(b) and len({a, b, c}) == 2
    assert a != (1, 2, "x", ())                # only the same class compares equal
    assert a.total() == 3 and c.double == 4 and Thing.KIND == "thing"
    with pytest.raises(AttributeError):
        a.a = 5
    with pytest.raises(AttributeError):
        del a.b
    with pytest.raises((AttributeError, TypeError)):   # dataclasses 3.11: TypeError here
        a.other = 1
    assert not hasattr(a, "__dict__") and Thing.__match_args__ == ("a", "b", "name", "tags")
    match a:
        case Thing(1, 2, name):
            assert name == "x"
        case _:
            pytest.fail("no match")


def test_replace() -> None:
    r = make("record")(1, tags=("a",))
    r2 = replace(r, b=7)
    assert (r2.a, r2.b, r2.tags) == (1, 7, ("a",)) and r.b == 2
    with pytest.raises(TypeError):
        replace(r, nope=1)


def test_default_order_checked() -> None:
    cls = type("Bad", (), {"__annotations__": {"a": "int", "b": "int"}, "a": 1,
                           "__module__": __name__})
    with pytest.raises(TypeError, match="without a default"):
        record(cls)


def test_own_methods_kept() -> None:
    @record
    class Named:
        name: str
        secret: str = ""
        LIMIT: ClassVar[int] = 3

        def __repr__(self) -> str:
            return f"<{self.name}>"

    n = Named("a", "s")
    assert repr(n) == "<a>" and Named.LIMIT == 3 and n == Named("a", "s") and hash(n)
    assert Named.__qualname__.endswith("Named") and Named.__init__.__qualname__.endswith(
        "Named.__init__")
