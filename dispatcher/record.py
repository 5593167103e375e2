"""``record``: frozen value classes for the modules every command imports, built without
``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``...) and
compiles each class's methods with ``exec``; under the VM's software emulation that is a
large part of a short command's run time. ``@record`` behaves as
``@dataclass(frozen=True, slots=True)`` for what these modules use -- annotated fields
with plain defaults (no ``field()``, no ``__post_init__``): ``__init__`` (positional or
keyword), ``__repr__``, ``__eq__``, ``__hash__``, ``__match_args__``, ``__slots__``,
immutability; methods the class defines itself are kept -- built from plain closures.
Type checkers see it as a frozen dataclass transform; ``tests/unit/test_record.py``
checks it against ``dataclasses`` on the same classes.

When to use which (checked by ``tests/unit/test_import_cost.py``):

* ``@record`` in every module that ``status`` (and ``--help``, ``import dispatcher``)
  imports: none of them imports ``dataclasses``, at module level or in a function (but
  ``replace`` below, for dataclass instances, which exist only once it is imported), and
  running ``status`` leaves ``dataclasses`` and ``inspect`` unimported. A value class that
  a start-up path might import later (state, protocol, netlink, bpf, render...) uses
  ``@record`` too, and so does any new frozen value class that fits it.
* ``dataclasses`` only in modules off that path, and only for what ``@record`` lacks:
  mutable classes (``kernel.loader``'s loader, the chain builders' accumulators),
  ``field(default_factory=...)``, ``__post_init__`` checks (``obj.insn.Insn``),
  ``cached_property`` (``obj.btf``, which needs a ``__dict__``), or where the command
  imports ``dataclasses`` anyway (``config``: pydantic does). ``load`` pays for it today
  through the ELF reader (``obj.btf``, ``obj.insn``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from typing_extensions import dataclass_transform

    _T = TypeVar("_T")

    @dataclass_transform(frozen_default=True)
    def record(cls: type[_T]) -> type[_T]: ...

    def replace(obj: _T, /, **changes: Any) -> _T: ...

else:
    _MISSING = object()

    class FrozenRecordError(AttributeError):
        """Assignment to a record's field (as ``dataclasses.FrozenInstanceError``)."""

    def _fields(cls):
        out = {}
        for klass in reversed(cls.__mro__[:-1]):
            for name, ann in klass.__dict__.get("__annotations__", {}).items():
                if str(ann).startswith(("ClassVar", "typing.ClassVar")):
                    continue
                out.pop(name, None)
                out[name] = klass.__dict__.get(name, _MISSING)
        return out

    def record(cls):
        fields = _fields(cls)
        names = tuple(fields)
        defaults = {n: d for n, d in fields.items() if d is not _MISSING}
        after_default = False
        for n in names:
            if n in defaults:
                after_default = True
            elif after_default:
                raise TypeError(f"{cls.__qualname__}: field {n!r} without a default follows "
                                "one with a default")
        qualname = cls.__qualname__
        setter = object.__setattr__
        npos = len(names)

        def __init__(self, *args, **kwargs):
            if len(args) > npos:
                raise TypeError(f"{qualname}.__init__() takes {npos + 1} positional arguments "
                                f"but {len(args) + 1} were given")
            for n, v in zip(names, args, strict=False):
                if n in kwargs:
                    raise TypeError(f"{qualname}.__init__() got multiple values for "
                                    f"argument {n!r}")
                setter(self, n, v)
            for n in names[len(args):]:
                if n in kwargs:
                    setter(self, n, kwargs.pop(n))
                elif n in defaults:
                    setter(self, n, defaults[n])
                else:
                    raise TypeError(f"{qualname}.__init__() missing required argument: {n!r}")
            if kwargs:
                raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument "
                                f"{next(iter(kwargs))!r}")

        def __repr__(self):
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
            return f"{self.__class__.__qualname__}({inner})"

        def __eq__(self, other):
            if other.__class__ is self.__class__:
                return all(getattr(self, n) == getattr(other, n) for n in names)
            return NotImplemented

        def __hash__(self):
            return hash(tuple(getattr(self, n) for n in names))

        def __setattr__(self, name, value):
            raise FrozenRecordError(f"cannot assign to field {name!r}")

        def __delattr__(self, name):
            raise FrozenRecordError(f"cannot delete field {name!r}")

        ns = {k: v for k, v in cls.__dict__.items()
              if k not in fields and k not in ("__dict__", "__weakref__")}
        own_hash = cls.__dict__.get("__hash__", _MISSING)
        explicit_hash = not (own_hash is _MISSING or (own_hash is None and "__eq__" in cls.__dict__))
        for fn in (__init__, __repr__, __eq__, __hash__, __setattr__, __delattr__):
            fn.__qualname__ = f"{qualname}.{fn.__name__}"
            if fn.__name__ == "__hash__":
                if not explicit_hash:
                    ns["__hash__"] = fn
            elif fn.__name__ in ("__setattr__", "__delattr__") and fn.__name__ in cls.__dict__:
                raise TypeError(f"{qualname}: a record cannot define {fn.__name__}")
            elif fn.__name__ not in cls.__dict__:
                ns[fn.__name__] = fn
        ns["__slots__"] = names
        ns["__match_args__"] = names
        ns["__record_fields__"] = names
        new = type(cls)(cls.__name__, cls.__bases__, ns)
        new.__qualname__ = qualname
        return new

    def replace(obj, /, **changes):
        """A copy of a record (or a dataclass) with some fields changed, as
        ``dataclasses.replace``."""
        cls = type(obj)
        if not hasattr(cls, "__record_fields__"):
            import dataclasses

            return dataclasses.replace(obj, **changes)
        for n in cls.__record_fields__:
            if n not in changes:
                changes[n] = getattr(obj, n)
        return cls(**changes)
