"""Module-level caches, registered in one place so that one call empties them all.

A module that keeps state across calls (a parsed-object cache, feature probe results, the
installed code's stamp, lazily built library classes) registers a function that empties
it, when the module is imported::

    _PARSED: dict[tuple[str, bytes], ObjectSpec] = {}
    caches.register("obj.elf.parsed", _PARSED.clear)

``reset_all()`` calls every registered function: afterwards each module behaves as if
freshly imported (modules never imported have nothing cached, so nothing is missed).

Who calls it:

* long-running users of the Python API (a daemon that keeps ``dispatcher`` imported)
  after the system changed under them: a new kernel or changed sysctls (feature probes),
  a reinstalled package (the code stamp of apply records), object files rewritten;
* tests that change what a cache would hold (e.g. count parses, or probe a kernel setting
  they changed). There is no suite-wide autouse reset: the probe cache makes repeated
  kernel probes cheap, and re-probing in every test would slow the host and VM tiers.

A base module: it imports nothing from ``dispatcher``; caches inside functions
(``functools.cache``) register their ``cache_clear``.
"""

from __future__ import annotations

from collections.abc import Callable

_REGISTRY: dict[str, Callable[[], object]] = {}


def register(name: str, clear: Callable[[], object]) -> None:
    """Register ``clear`` (empties one cache) under ``name`` (``package.module.what``).
    Registering a name again replaces its function (a reloaded module)."""
    _REGISTRY[name] = clear


def reset_all() -> None:
    """Empty every registered cache."""
    for clear in list(_REGISTRY.values()):
        clear()


def names() -> tuple[str, ...]:
    """The registered caches' names, sorted."""
    return tuple(sorted(_REGISTRY))
