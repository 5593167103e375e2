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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dispatcher import safeio
from dispatcher.kernel import bpf
from dispatcher.kernel.bpffs import DirLock

DEFAULT_DIR = "/run/xdp-dispatch"
RECORDS_VERSION = 1


def state_dir() -> str:
    return os.environ.get("XDP_DISPATCH_STATE_DIR", DEFAULT_DIR)


def records_path() -> str:
    return os.path.join(state_dir(), "owned.json")


def ensure_state_dir() -> str:
    """The state directory, created 0700 if missing; UnsafePathError (exit 5) if it is a
    symbolic link, not owned by root or writable by group/others: whoever can write there
    could make root trust forged records."""
    d = state_dir()
    safeio.make_trusted_dir(d, what="state directory")
    return d


def check_state_dir() -> bool:
    """Whether the state directory exists (False: no records); UnsafePathError if it
    exists and is not trusted (see ``ensure_state_dir``)."""
    d = state_dir()
    if not os.path.lexists(d):
        return False
    safeio.check_trusted_dir(d, what="state directory")
    return True


def read_state(path: str) -> bytes | None:
    """The bytes of the state file ``path`` (None if it or the state directory is
    missing), read by ``safeio.read_state_file`` after checking the state directory."""
    if not check_state_dir():
        return None
    d = os.path.dirname(path)
    if os.path.abspath(d) != os.path.abspath(state_dir()):
        if not os.path.lexists(d):
            return None
        safeio.check_trusted_dir(d, what="state directory")
    try:
        return safeio.read_state_file(path)
    except FileNotFoundError:
        return None


def write_state(path: str, data: bytes) -> None:
    """Write a state file atomically (``safeio.write_atomic``) in the trusted state
    directory (a subdirectory of it is created 0700 and checked too)."""
    ensure_state_dir()
    d = os.path.dirname(path)
    if os.path.abspath(d) != os.path.abspath(state_dir()):
        safeio.make_trusted_dir(d, what="state directory")
    safeio.write_atomic(path, data)


def remove_state(path: str) -> bool:
    """Remove the state file ``path`` (unlinked relative to its trusted directory, the
    directory then fsynced). False if it was not there."""
    d = os.path.dirname(path)
    if not check_state_dir() or not os.path.lexists(d):
        return False
    safeio.check_trusted_dir(d, what="state directory")
    fd = safeio.open_dir(d)
    try:
        gone = safeio.unlink_in(fd, os.path.basename(path))
        os.fsync(fd)
        return gone
    finally:
        os.close(fd)


if TYPE_CHECKING:
    from dispatcher.config.plan import Owner


def _damaged(path: str, why: str) -> safeio.UnsafePathError:
    aside = f"{path}.damaged"
    return safeio.UnsafePathError(
        f"{path} is damaged ({why}); xdp-dispatch will not overwrite it. Move it aside to "
        f"start over: mv {path} {aside} (the programs it recorded then show as not managed)")


def _entries() -> list[dict[str, Any]]:
    """The validated program entries of the records file ([] if there is none)."""
    path = records_path()
    data = read_state(path)
    if data is None:
        return []
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:       # UnicodeDecodeError is a ValueError
        raise _damaged(path, f"not valid JSON: {str(e).splitlines()[0][:80]}") from None
    if not isinstance(doc, dict):
        raise _damaged(path, f"expected a JSON object, got {type(doc).__name__}")
    progs = doc.get("programs", [])
    if not isinstance(progs, list):
        raise _damaged(path, f'"programs" must be a list, got {type(progs).__name__}')
    for i, d in enumerate(progs):
        problem = _entry_problem(d)
        if problem:
            raise _damaged(path, f"programs[{i}]: {problem}")
    return progs


_FIELDS: dict[str, tuple[type, ...]] = {
    "prog_id": (int,), "iface": (str,), "name": (str,), "object": (str,), "sha256": (str,),
    "program": (str,), "priority": (int,), "actions": (int,)}
_OPTIONAL: dict[str, tuple[type, ...]] = {"netns": (str, type(None)), "config": (str,),
                                          "settings": (str,)}


def _entry_problem(d: Any) -> str | None:
    if not isinstance(d, dict):
        return f"expected an object, got {type(d).__name__}"
    for key, types in (*_FIELDS.items(), *_OPTIONAL.items()):
        if key not in d:
            if key in _FIELDS:
                return f'missing "{key}"'
            continue
        v = d[key]
        if not isinstance(v, types) or isinstance(v, bool):
            return f'"{key}" has the wrong type ({type(v).__name__})'
    return None


def read() -> dict[int, Owner]:
    """Every ownership record, by program id. UnsafePathError (naming the file and what
    to do) if the file or the state directory is damaged or untrusted: never treated as
    "no records" (the next write would lose every record)."""
    from dispatcher.config.plan import Owner  # status reads labels only, never records

    out = {}
    for d in _entries():
        o = Owner.from_json(d)
        out[o.prog_id] = o
    return out


def managed_labels() -> dict[int, str]:
    """Program id -> the config file that loaded it (or "xdp-dispatch" for a record without
    one, and for programs ``load`` attached: see ``record_loaded``), read without building
    records (``status`` calls this on every run)."""
    labels = dict.fromkeys(_loaded_ids(), "xdp-dispatch")
    labels.update((int(d["prog_id"]), str(d.get("config") or "xdp-dispatch"))
                  for d in _entries())
    return labels


# Programs `xdp-dispatch load` attached (directly, or as freplace components) are ours but
# no config's: they are kept apart from the records above, which `apply` reads as "this
# config's, remove when no longer in it". Only `status` reads these ("Managed by").
def loaded_path() -> str:
    return os.path.join(state_dir(), "loaded.json")


def _loaded_ids() -> set[int]:
    path = loaded_path()
    data = read_state(path)
    if data is None:
        return set()
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise _damaged(path, f"not valid JSON: {str(e).splitlines()[0][:80]}") from None
    ids = doc.get("programs") if isinstance(doc, dict) else None
    if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise _damaged(path, 'expected {"programs": [program id, ...]}')
    return set(ids)


def record_loaded(prog_ids: Iterable[int]) -> None:
    """Remember that ``load`` attached these programs (ids of programs that are gone are
    dropped on every write, as for the records above)."""
    new = {i for i in prog_ids if i}
    if not new:
        return
    with DirLock(ensure_state_dir()):
        ids = {i for i in _loaded_ids() | new if bpf.prog_alive(i)}
        write_state(loaded_path(), json.dumps(
            {"version": RECORDS_VERSION, "programs": sorted(ids)}).encode())


def update(add: list[Owner], drop: set[int]) -> None:
    """Add records and drop others (and every record whose program is gone), atomically."""
    with DirLock(ensure_state_dir()):
        cur = read()
        for pid in drop:
            cur.pop(pid, None)
        for o in add:
            cur[o.prog_id] = o
        cur = {pid: o for pid, o in cur.items() if bpf.prog_alive(pid)}
        write_state(records_path(), json.dumps(
            {"version": RECORDS_VERSION, "programs": [o.to_json() for o in cur.values()]},
            indent=1).encode())


def snapshot() -> bytes | None:
    """The records file's bytes (None: no file), for ``restore``."""
    return read_state(records_path())


def restore(data: bytes | None) -> None:
    """Put the records file back as ``snapshot`` found it (an apply rolled back whole)."""
    with DirLock(ensure_state_dir()):
        if data is None:
            remove_state(records_path())
        else:
            write_state(records_path(), data)
