"""Which components xdp-dispatch manages: records keyed by program id, kept in
``/run/xdp-dispatch/owned.json`` (``XDP_DISPATCH_STATE_DIR`` overrides the directory).

Program ids are unique system-wide and never reused while the program exists, so a
record is valid exactly as long as its program is alive; records of programs that are
gone are dropped on every write. The file lives outside bpffs, so libxdp's reading of
the dispatcher pins is untouched; it survives process exit and restarts of the tool
(not a reboot, after which no program exists anyway).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from dispatcher.errors import KernelError
from dispatcher.kernel import bpf
from dispatcher.kernel.bpffs import DirLock

DEFAULT_DIR = "/run/xdp-dispatch"


def state_dir() -> str:
    return os.environ.get("XDP_DISPATCH_STATE_DIR", DEFAULT_DIR)


def records_path() -> str:
    return os.path.join(state_dir(), "owned.json")


if TYPE_CHECKING:
    from dispatcher.config.plan import Owner


def read() -> dict[int, Owner]:
    from dispatcher.config.plan import Owner  # status reads labels only, never records

    try:
        with open(records_path()) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}
    out = {}
    for d in data.get("programs", []):
        try:
            o = Owner.from_json(d)
        except (KeyError, TypeError, ValueError):
            continue
        out[o.prog_id] = o
    return out


def managed_labels() -> dict[int, str]:
    """Program id -> the config file that loaded it (or "xdp-dispatch"), read without
    building records (``status`` calls this on every run)."""
    try:
        with open(records_path()) as f:
            data = json.load(f)
        return {int(d["prog_id"]): str(d.get("config") or "xdp-dispatch")
                for d in data.get("programs", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _alive(prog_id: int) -> bool:
    try:
        with bpf.prog_get_fd_by_id(prog_id):
            return True
    except KernelError:
        return False


def update(add: list[Owner], drop: set[int]) -> None:
    """Add records and drop others (and every record whose program is gone), atomically."""
    os.makedirs(state_dir(), mode=0o700, exist_ok=True)
    with DirLock(state_dir()):
        cur = read()
        for pid in drop:
            cur.pop(pid, None)
        for o in add:
            cur[o.prog_id] = o
        cur = {pid: o for pid, o in cur.items() if _alive(pid)}
        import tempfile  # only when writing: `status` reads the records

        fd, tmp = tempfile.mkstemp(dir=state_dir(), prefix=".owned.")
        with os.fdopen(fd, "w") as f:
            json.dump({"version": 1, "programs": [o.to_json() for o in cur.values()]}, f,
                      indent=1)
        os.replace(tmp, records_path())


def snapshot() -> bytes | None:
    """The records file's bytes (None: no file), for ``restore``."""
    try:
        with open(records_path(), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def restore(data: bytes | None) -> None:
    """Put the records file back as ``snapshot`` found it (an apply rolled back whole)."""
    with DirLock(state_dir()):
        if data is None:
            try:
                os.unlink(records_path())
            except FileNotFoundError:
                pass
            return
        import tempfile  # only when writing

        fd, tmp = tempfile.mkstemp(dir=state_dir(), prefix=".owned.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, records_path())
