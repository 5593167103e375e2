"""Bounded input (issue 11 cases 8-10 and 7): whatever file or text a user points us at,
the answer is one clear line and exit 2 (or 5 for state) in well under a second, never a
traceback, a hang or gigabytes of memory. No kernel needed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest
import yaml

from dispatcher import safeio
from dispatcher.config import applied, ownership
from dispatcher.config.model import (
    MAX_DEPTH,
    ExactName,
    expand_names,
    load_config,
    parse_config,
)
from dispatcher.errors import ConfigError, ObjectFileError
from dispatcher.obj.elf import read_bytes
from dispatcher.obj.spec import pin_name_problem
from tests.cli import assert_one_line_error, run_cli
from tests.objects import example

# The 349-byte bomb of the issue: nine levels of nine aliases (9**9 "lol"s once expanded).
BOMB = "version: 1\ninterfaces: []\n" + "a: &a [" + ",".join(['"lol"'] * 9) + "]\n" + "".join(
    f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))


def test_the_bomb_is_about_as_small_as_in_the_issue() -> None:
    assert 300 < len(BOMB) < 400


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("text, where, what", [
    (BOMB, ":3:", "YAML anchor &a"),
    ("version: 1\ninterfaces: &x [*x]\n", ":2:13:", "YAML anchor &x"),
    ("version: 1\ninterfaces: [{name: eth0, programs: []}]\nx: &y 1\nz: *y\n", ":3:4:",
     "anchor &y"),
    ("version: 1\ninterfaces: [{name: &n eth0, programs: []}]\n", ":2:21:", "anchor &n"),
    ("version: 1\ninterfaces: " + "[" * 5000 + "]" * 5000 + "\n", ":2:", "nested deeper"),
    ("version: 1\ninterfaces:\n" + "".join("  " * i + "- \n" for i in range(200)), ":",
     "nested deeper"),
])
def test_yaml_bombs_and_depth_are_refused_fast(tmp_path: Path, text: str, where: str,
                                               what: str) -> None:
    """Aliases expanded to 2.7 GB in 58 s; self-references and 5000 levels were
    RecursionError. Now: refused with file:line:col, exit 2, in well under a second."""
    t0 = time.process_time()      # CPU time: the test machine may be busy with a VM
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "c.yaml", str(tmp_path))
    assert time.process_time() - t0 < 0.8
    assert ei.value.message.startswith("c.yaml" + where) and what in ei.value.message, \
        ei.value.message
    cp = run_cli("check", _write(tmp_path, text), timeout=20)
    assert_one_line_error(cp, what)
    assert cp.returncode == 2


def test_nesting_up_to_the_limit_is_not_a_depth_error(tmp_path: Path) -> None:
    """Nesting just inside the limit gets the ordinary schema message."""
    def text(n: int) -> str:
        return "version: 1\ninterfaces: []\nx: " + "[" * n + "]" * n

    with pytest.raises(ConfigError) as ei:
        parse_config(text(MAX_DEPTH - 1), "c.yaml", str(tmp_path))
    assert ei.value.message.startswith('c.yaml:3:1: unknown key "x"'), ei.value.message
    with pytest.raises(ConfigError, match="nested deeper than"):
        parse_config(text(MAX_DEPTH), "c.yaml", str(tmp_path))


def test_tags_keep_their_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'c.yaml:1:10: version: cannot read "x" as '):
        parse_config("version: !!int x\ninterfaces: []\n", "c.yaml", str(tmp_path))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("dev", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused_not_read(dev: str) -> None:
    """/dev/zero as object or config read until MemoryError (1.4 GB)."""
    with pytest.raises(ObjectFileError, match=f"^{dev}: is a character device, not a regular"):
        read_bytes(dev)
    with pytest.raises(ConfigError, match=f"^{dev}: is a character device, not a regular"):
        load_config(dev)
    assert_one_line_error(run_cli("inspect", dev, timeout=20), "character device")
    assert_one_line_error(run_cli("check", dev, timeout=20), "character device")


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with pytest.raises(ObjectFileError, match="is a FIFO"):
        read_bytes(fifo)
    with pytest.raises(ConfigError, match="is a FIFO"):
        load_config(fifo)
    assert_one_line_error(run_cli("check", fifo, timeout=20), "FIFO")
    assert_one_line_error(run_cli("inspect", fifo, timeout=20), "FIFO")


def test_too_big_sparse_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(safeio.MAX_OBJECT_BYTES + 1)
    with pytest.raises(ObjectFileError, match="larger than the 256 MiB limit"):
        read_bytes(str(big))
    with pytest.raises(ConfigError, match="larger than the 1 MiB limit"):
        load_config(str(big))
    assert_one_line_error(run_cli("inspect", str(big)), "larger than the 256 MiB limit")


def test_directories_keep_their_messages(tmp_path: Path) -> None:
    with pytest.raises(ObjectFileError, match="is a directory, not a BPF object file"):
        read_bytes(str(tmp_path))
    with pytest.raises(ConfigError, match="cannot read: Is a directory"):
        load_config(str(tmp_path))


# -- names ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, ok", [
    ("counts", True), ("blocklist_v4", True), ("A1", True),
    ("", False), ("..", False), (".", False), ("../../x", False), ("a/b", False),
    (".rodata", False), ("a.b", False), ("x" * 256, False), ("caf\u00e9", False), ("a b", False),
])
def test_pin_names(name: str, ok: bool) -> None:
    assert (pin_name_problem(name) is None) == ok


def test_exact_names_are_never_globs(tmp_path: Path) -> None:
    cfg = parse_config('version: 1\ninterfaces:\n  - name: {exact: "x[1]"}\n    programs: []\n'
                       '  - name: ["y*", {exact: "z?"}]\n    programs: []\n',
                       "c.yaml", str(tmp_path))
    a, b = cfg.interfaces
    assert a.name == ExactName(exact="x[1]") and a.names() == ["x[1]"] and not a.is_glob("x[1]")
    assert b.names() == ["y*", "z?"] and b.is_glob("y*") and not b.is_glob("z?")
    present = ["x1", "x[1]", "y1", "zz", "z?"]
    assert expand_names(a.names(), present, a.exact_names()) == ["x[1]"]
    assert expand_names(a.names(), present) == ["x1"]            # the glob reading
    assert expand_names(b.names(), present, b.exact_names()) == ["y1", "z?"]


@pytest.mark.parametrize("text, msg", [
    ('name: {exact: "x[1]", other: 1}', "must be an interface name, a list of names or a glob"),
    ("name: {exact: 5}", "name.exact: must be an interface name (a string), got 5"),
    ('name: {exact: "a/b"}', 'name.exact: not a valid interface name: "a/b"'),
    ('name: {exact: "abcdefghijklmnop*"}', "interface names have at most 15 characters"),
    ('name: [{exact: "x"}, x]', 'name[1]: interface "x" is listed twice'),
])
def test_bad_exact_names(tmp_path: Path, text: str, msg: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(f"version: 1\ninterfaces:\n  - {text}\n    programs: []\n", "c.yaml",
                     str(tmp_path))
    assert msg in ei.value.message and ei.value.message.startswith("c.yaml:3:"), ei.value.message


def test_schema_documents_the_exact_form() -> None:
    from dispatcher.config.model import json_schema

    schema = json.dumps(json_schema())
    assert "ExactName" in schema and "exact" in schema


# -- state files ------------------------------------------------------------------------------

@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("XDP_DISPATCH_STATE_DIR", str(d))
    return d


DAMAGED = {"list": b"[]", "programs_int": b'{"programs": 5}', "truncated": b'{"version": 1, "p',
           "garbage": b"\x00\xff garbage", "deep": b"[" * 100000 + b"]" * 100000,
           "deep_inside": b'{"programs": [' + b"[" * 50000 + b"]" * 50000 + b"]}",
           "entry_str": b'{"programs": ["x"]}', "entry_types": b'{"programs": [{"prog_id": true}]}',
           "missing": b'{"programs": [{"prog_id": 1}]}'}


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_damaged_owned_json_is_one_clear_error_and_never_overwritten(
        state: Path, kind: str) -> None:
    state.mkdir(mode=0o700)
    owned = state / "owned.json"
    owned.write_bytes(DAMAGED[kind])
    for fn in (ownership.read, ownership.managed_labels,
               lambda: ownership.update([], set())):
        with pytest.raises(safeio.UnsafePathError) as ei:
            fn()
        msg = ei.value.message
        assert msg.startswith(f"{owned} is damaged (") and f"mv {owned} {owned}.damaged" in msg
        assert "\n" not in msg
    assert owned.read_bytes() == DAMAGED[kind]


def test_valid_owned_json_still_reads(state: Path) -> None:
    state.mkdir(mode=0o700)
    entry = {"prog_id": 7, "iface": "eth0", "netns": None, "name": "p", "object": "/x.o",
             "sha256": "00", "program": "p", "priority": 1, "actions": 2, "config": "/c.yaml",
             "settings": ""}
    (state / "owned.json").write_text(json.dumps({"version": 1, "programs": [entry]}))
    assert list(ownership.read()) == [7]
    assert ownership.managed_labels() == {7: "/c.yaml"}
    (state / "owned.json").unlink()
    assert ownership.read() == {}


def test_state_files_are_not_followed_or_trusted_from_others(state: Path, tmp_path: Path) -> None:
    state.mkdir(mode=0o700)
    target = tmp_path / "t.json"
    target.write_text('{"programs": []}')
    (state / "owned.json").symlink_to(target)
    with pytest.raises(safeio.UnsafePathError, match="is a symbolic link"):
        ownership.read()
    (state / "owned.json").unlink()
    (state / "owned.json").write_text('{"programs": []}')
    os.chmod(state / "owned.json", 0o666)
    with pytest.raises(safeio.UnsafePathError, match="writable by group/others"):
        ownership.read()


def test_state_dir_checks(state: Path) -> None:
    state.mkdir(mode=0o700)
    os.chmod(state, 0o777)
    with pytest.raises(safeio.UnsafePathError, match=r"refusing state directory .*: writable by "
                                                     r"group/others \(mode 0777\); chmod go-w"):
        ownership.check_state_dir()
    os.chmod(state, 0o700)
    assert ownership.check_state_dir() is True


@pytest.mark.parametrize("damage", [b"[" * 200000, b"{}", b"[]", b'{"version": 1}',
                                    b'{"version": 1, "inputs": {"config": 5}}', b"\xff\xfe",
                                    b'{"version": 1, "inputs": {}, "plans": [[]]}'])
def test_damaged_applied_records_mean_the_full_plan(state: Path, tmp_path: Path,
                                                    damage: bytes) -> None:
    cfg = _write(tmp_path, "version: 1\ninterfaces: []\n")
    path = Path(applied._record_path(cfg))
    path.parent.mkdir(parents=True, mode=0o700)
    os.chmod(state, 0o700)
    path.write_bytes(damage)
    assert applied.reuse(cfg) is None


def test_write_atomic_never_follows_or_leaves_temporaries(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    # a temporary name someone guessed, as a symlink to a victim: O_EXCL skips it
    (d / f".f.json.{os.getpid()}.0.tmp").symlink_to(victim)
    safeio.write_atomic(str(d / "f.json"), b"new")
    assert (d / "f.json").read_bytes() == b"new" and victim.read_text() == "keep"
    assert stat.S_IMODE(os.stat(d / "f.json").st_mode) == 0o600
    assert sorted(os.listdir(d)) == [f".f.json.{os.getpid()}.0.tmp", "f.json"]


# -- strict mode -----------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="files others can write matter only "
                                "when root reads them: the check runs as root only")


@needs_root
def test_world_writable_inputs_warn_by_default_and_are_refused_with_strict(
        tmp_path: Path) -> None:
    d = tmp_path / "w"
    d.mkdir()
    obj = d / "x.o"
    shutil.copy(example("xdp_pass"), obj)
    cfg = d / "c.yaml"
    cfg.write_text(f"version: 1\ninterfaces:\n  - name: eth0\n    programs:\n"
                   f"      - name: p\n        object: {obj}\n")
    os.chmod(obj, 0o666)
    cp = run_cli("check", str(cfg))
    assert cp.returncode == 0, cp.stderr
    warn = [ln for ln in cp.stderr.splitlines() if ln.startswith("xdp-dispatch: warning:")]
    assert len(warn) == 1 and str(obj) in warn[0] and "chmod o-w" in warn[0], cp.stderr
    assert "--strict" in warn[0] and "strict: true" in warn[0]
    cp = run_cli("check", "--strict", str(cfg))
    assert_one_line_error(cp, str(obj), "strict mode", "chmod o-w")
    assert cp.returncode == 2
    cfg.write_text(cfg.read_text() + "strict: true\n")
    assert_one_line_error(run_cli("check", str(cfg)), str(obj), "strict mode")
    assert_one_line_error(run_cli("inspect", "--strict", str(obj)), str(obj), "strict mode")
    # the config itself, and a directory others can write without the sticky bit
    os.chmod(obj, 0o644)
    os.chmod(d, 0o777)
    cp = run_cli("check", "--strict", str(cfg))
    assert_one_line_error(cp, str(cfg), f"its directory {d} is writable by others without the "
                                        "sticky bit")
    os.chmod(d, 0o1777)
    assert run_cli("check", "--strict", str(cfg)).returncode == 0
    os.chmod(d, 0o755)
    os.chmod(cfg, 0o666)
    assert_one_line_error(run_cli("check", str(cfg)), str(cfg), "strict mode")


def test_every_strict_hint_names_a_real_option() -> None:
    for cmd in ("inspect", "load", "plan", "apply", "check", "status"):
        cp = run_cli(cmd, "--help")
        assert "--strict" in cp.stdout, cmd
    assert "strict" in json.dumps(__import__("dispatcher.config.model", fromlist=["x"])
                                  .json_schema()["properties"])


def test_yaml_safe_dump_of_exact_names_round_trips(tmp_path: Path) -> None:
    text = yaml.safe_dump({"version": 1, "interfaces": [{"name": {"exact": "a*"},
                                                         "programs": []}]})
    cfg = parse_config(text, "c.yaml", str(tmp_path))
    assert cfg.interfaces[0].exact_names() == {"a*"}


def test_remove_state(state: Path, tmp_path: Path) -> None:
    assert ownership.remove_state(str(state / "owned.json")) is False      # no state dir
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (state / "j.json").symlink_to(victim)
    assert ownership.remove_state(str(state / "j.json")) is True           # the link goes
    assert victim.read_text() == "keep"
    assert ownership.remove_state(str(state / "applied" / "x.json")) is False
    ownership.write_state(str(state / "applied" / "x.json"), b"{}")
    assert stat.S_IMODE(os.stat(state / "applied").st_mode) == 0o700
    assert ownership.read_state(str(state / "applied" / "x.json")) == b"{}"
    assert ownership.remove_state(str(state / "applied" / "x.json")) is True
    os.chmod(state / "applied", 0o777)
    with pytest.raises(safeio.UnsafePathError, match="refusing state directory .*applied"):
        ownership.read_state(str(state / "applied" / "x.json"))
    os.chmod(state, 0o777)
    with pytest.raises(safeio.UnsafePathError):
        ownership.remove_state(str(state / "owned.json"))


@pytest.mark.parametrize("pin_maps, name, refused", [
    (None, "../x", True), (None, "ok_name", False), ("/sys/fs/bpf/p", "a/b", True),
    ("/sys/fs/bpf/p", "a.b", True), ("/sys/fs/bpf/p", "fine", False)])
def test_check_names_maps_that_cannot_be_pins(tmp_path: Path, pin_maps: str | None, name: str,
                                              refused: bool) -> None:
    """`check`/`plan` refuse (at the object's file:line:col) an object whose map would be
    pinned under a name that leaves the pin directory; pin_maps pins every map."""
    from dispatcher.config.model import check_config
    from dispatcher.obj.elf import read_object
    from dispatcher.record import replace

    spec = read_object(example("xdp_counter"))
    m = next(m for m in spec.maps if m.kind != "data")
    evil = replace(spec, maps=tuple(replace(x, name=name, pinning=0 if pin_maps else 1)
                                    if x is m else x for x in spec.maps))
    extra = f"\n        pin_maps: {pin_maps}" if pin_maps else ""
    cfg = parse_config(f"version: 1\ninterfaces:\n  - name: eth0\n    programs:\n"
                       f"      - name: p\n        object: x.o{extra}\n", "c.yaml", str(tmp_path))
    problems = check_config(cfg, read_object=lambda _p: evil)
    if refused:
        assert problems == [f'c.yaml:6:17: interfaces[0].programs[0].object: cannot use "x.o": '
                            f"map {name!r} is pinned by name but its name cannot be a pin: "
                            + (pin_name_problem(name) or "")], problems
    else:
        assert problems == []


def test_a_parent_others_can_write_is_refused_without_advice_to_delete_it(
        tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, 0o777)                       # no sticky bit: anyone may rename in it
    d = parent / "state"
    d.mkdir(mode=0o700)
    with pytest.raises(safeio.UnsafePathError) as ei:
        safeio.check_trusted_dir(str(d), what="state directory")
    assert ei.value.message == (
        f"refusing state directory {d}: its parent {parent} is writable by group/others "
        f"(mode 0777), so others could replace it; use a directory whose parents only root "
        f"can change, or chmod go-w {parent}")
    os.chmod(parent, 0o1777)                      # sticky, as /tmp: fine
    safeio.check_trusted_dir(str(d))
