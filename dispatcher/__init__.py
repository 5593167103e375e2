"""xdp-dispatch: run several XDP programs on one interface, in pure Python.

The public API is re-exported lazily so that ``import dispatcher`` stays cheap.
"""

from __future__ import annotations

from typing import Any

_API = {"load", "load_plain", "unload", "unload_all", "status", "clean", "probe_features",
        "read_object", "select_program", "LoadResult", "check_config", "plan_config",
        "apply_config", "config_drift", "status_report", "managed_by", "StatusReport"}

__all__ = sorted(_API | {"__version__"})


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from dispatcher.version import __version__
        return __version__
    if name in _API:
        from dispatcher import api
        return getattr(api, name)
    raise AttributeError(f"module 'dispatcher' has no attribute {name!r}")
