"""Hostile local state (issue 11): directories and files others could have made or can
write, names that would leave their directory, a lock someone else holds. Real bpffs,
real interfaces; each case failed before the checks it covers existed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
import yaml

from dispatcher.errors import ConflictError
from dispatcher.kernel import bpffs
from dispatcher.safeio import UnsafePathError
from tests.cli import assert_one_line_error, run_cli
from tests.host import nettools
from tests.objects import example

pytestmark = [pytest.mark.host_kernel, pytest.mark.host_tier]   # files / ELF sections: no kernel or chain-kind dependence

USER = 1000      # any uid but root's: the unprivileged user who got there first


def _victim(tmp_path: object) -> str:
    """A directory with a file root must never delete."""
    d = os.path.join(str(tmp_path), "victim")
    os.mkdir(d)
    with open(os.path.join(d, "precious"), "w") as f:
        f.write("keep me")
    return d


# -- the bpffs xdp/ directory, pin directories, the lock ---------------------------------

def test_clean_refuses_an_xdp_dir_a_user_made_and_follows_no_symlink(bpffs_dir: str,
                                                                     tmp_path: object) -> None:
    """A user creates xdp/ first and puts a symlink named like a pin directory in it:
    root's clean refuses the directory in one line and deletes nothing (it used to delete
    the symlink target's files and die with NotADirectoryError)."""
    victim = _victim(tmp_path)
    xdp = os.path.join(bpffs_dir, "xdp")
    os.mkdir(xdp, 0o755)
    os.symlink(victim, os.path.join(xdp, "dispatch-1-999999"))
    os.lchown(os.path.join(xdp, "dispatch-1-999999"), USER, USER)
    os.chown(xdp, USER, USER)
    cp = run_cli("clean", env={"LIBXDP_BPFFS": bpffs_dir})
    assert_one_line_error(cp, f"refusing lock directory {xdp}", f"owned by uid {USER}",
                          f"rm -r {xdp}")
    assert cp.returncode == 5
    assert os.listdir(victim) == ["precious"]


def test_clean_refuses_a_world_writable_xdp_dir(bpffs_dir: str) -> None:
    xdp = os.path.join(bpffs_dir, "xdp")
    os.mkdir(xdp)
    os.chmod(xdp, 0o777)
    cp = run_cli("clean", env={"LIBXDP_BPFFS": bpffs_dir})
    assert_one_line_error(cp, f"refusing lock directory {xdp}", "writable by group/others",
                          f"chmod go-w {xdp}")
    assert cp.returncode == 5


def test_an_xdp_symlink_is_refused(bpffs_dir: str, tmp_path: object) -> None:
    victim = _victim(tmp_path)
    os.symlink(victim, os.path.join(bpffs_dir, "xdp"))
    cp = run_cli("clean", env={"LIBXDP_BPFFS": bpffs_dir})
    assert_one_line_error(cp, "is a symbolic link")
    assert os.listdir(victim) == ["precious"]


def test_remove_pin_dir_follows_no_symlink(bpffs_dir: str, tmp_path: object) -> None:
    """bpffs.remove_pin_dir: a symbolic link entry is unlinked (its target stays), a
    symbolic link in place of the pin directory is left alone (False), a real one goes."""
    victim = _victim(tmp_path)
    xdp = os.path.join(bpffs_dir, "xdp")
    os.mkdir(xdp, 0o700)
    real = os.path.join(xdp, "dispatch-1-1")
    os.mkdir(real, 0o700)
    os.symlink(victim, os.path.join(real, "prog0-link"))
    linked = os.path.join(xdp, "dispatch-1-2")
    os.symlink(victim, linked)
    assert bpffs.pin_subdirs(xdp) == ["dispatch-1-1"]
    assert bpffs.remove_pin_dir(linked) is False
    assert os.path.islink(linked)
    assert bpffs.remove_pin_dir(real) is True
    assert not os.path.lexists(real)
    assert bpffs.remove_pin_dir(real) is False            # gone: nothing to do
    assert os.listdir(victim) == ["precious"]


def test_remove_pin_dir_refuses_a_pin_dir_a_user_owns(bpffs_dir: str) -> None:
    xdp = os.path.join(bpffs_dir, "xdp")
    os.mkdir(xdp, 0o700)
    d = os.path.join(xdp, "dispatch-1-3")
    os.mkdir(d, 0o700)
    os.chown(d, USER, USER)
    with pytest.raises(UnsafePathError, match=f"refusing pin directory {d}: owned by uid"):
        bpffs.remove_pin_dir(d)
    assert os.path.isdir(d)


def test_clean_in_a_root_xdp_dir_follows_no_symlink(bpffs_dir: str, tmp_path: object) -> None:
    victim = _victim(tmp_path)
    xdp = os.path.join(bpffs_dir, "xdp")
    os.mkdir(xdp, 0o700)
    os.symlink(victim, os.path.join(xdp, "dispatch-1-999999"))
    cp = run_cli("clean", env={"LIBXDP_BPFFS": bpffs_dir})
    assert "Traceback" not in cp.stderr and "internal error" not in cp.stderr, cp.stderr
    assert os.listdir(victim) == ["precious"]


@pytest.fixture
def held_lock(bpffs_dir: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """bpffs_dir/xdp, flocked by another process (until the test ends)."""
    xdp = os.path.join(bpffs_dir, "xdp")
    os.mkdir(xdp, 0o700)
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, xdp], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield xdp, proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_lock_wait_is_bounded_and_names_the_holder(held_lock: tuple[str, subprocess.Popen[str]]
                                                   ) -> None:
    xdp, proc = held_lock
    t0 = time.monotonic()
    with pytest.raises(ConflictError) as ei:
        with bpffs.DirLock(xdp, timeout=0.3):
            pass
    assert time.monotonic() - t0 < 3
    assert xdp in ei.value.message and f"pid {proc.pid} (" in ei.value.message, ei.value.message


def test_cli_gives_up_on_a_held_lock(held_lock: tuple[str, subprocess.Popen[str]],
                                     bpffs_dir: str) -> None:
    """Someone holds the protocol lock: clean ends within the configured wait with exit 4,
    naming the lock and its holder (it used to wait forever, silently)."""
    xdp, proc = held_lock
    os.mkdir(os.path.join(xdp, "dispatch-1-424242"), 0o700)     # something to clean
    t0 = time.monotonic()
    cp = run_cli("clean", env={"LIBXDP_BPFFS": bpffs_dir, bpffs.LOCK_TIMEOUT_ENV: "0.5"},
                 timeout=30)
    assert time.monotonic() - t0 < 20
    assert_one_line_error(cp, f"{xdp} is locked by another process (pid {proc.pid}")
    assert cp.returncode == 4
    assert "XDP_DISPATCH_LOCK_TIMEOUT" in cp.stderr


# -- names that reach a path ---------------------------------------------------------------

# No BTF (-g0): the kernel would refuse a BTF VAR named "../../x", but a legacy map needs
# no BTF, which is how the object pinned a map in another bpffs directory.
_EVIL_MAP = textwrap.dedent("""\
    // bpf-cc-flags: -g0
    #include <linux/bpf.h>
    #define SEC(n) __attribute__((section(n), used))
    struct def { unsigned int type, key_size, value_size, max_entries, map_flags, id, pinning; };
    struct def evil __asm__("NAME") SEC("maps") = { BPF_MAP_TYPE_ARRAY, 4, 8, 1, 0, 0, 2 };
    static void *(*lookup)(void *map, const void *key) = (void *)1;
    SEC("xdp") int prog(struct xdp_md *ctx)
    {
    \tint k = 0;
    \tlong *v = lookup(&evil, &k);
    \tif (v)
    \t\t*v += 1;
    \treturn XDP_PASS;
    }
    char _license[] SEC("license") = "GPL";
    """)


def _compile_evil(tmp: str, symbol: str) -> str:
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed: cannot build the hostile-map-name object")
    from tests.objects import REPO

    c, o = os.path.join(tmp, "evil.c"), os.path.join(tmp, "evil.o")
    with open(c, "w") as f:
        f.write(_EVIL_MAP.replace("NAME", symbol))
    subprocess.run(["bash", os.path.join(REPO, "scripts", "bpf-cc.sh"), c, o], check=True,
                   capture_output=True, timeout=120)
    return o


@pytest.mark.parametrize("symbol", ["../../x", "a/x"])
def test_a_pinned_map_name_that_leaves_the_pin_dir_is_refused(
        symbol: str, bpffs_dir: str, tmp_path: object, netns_veth: nettools.VethNs) -> None:
    """A legacy map symbol with '..' or '/' pinned by name: refused before anything is
    created, naming the map and the object (it used to pin the map two levels up)."""
    obj = _compile_evil(str(tmp_path), symbol)
    root = os.path.join(bpffs_dir, "a", "b")
    os.makedirs(root, 0o700)
    v = netns_veth
    cp = run_cli("load", v.peer_if, obj, "-m", "skb", "--netns", v.netns,
                 env={"LIBXDP_BPFFS": root,
                      "XDP_DISPATCH_STATE_DIR": os.path.join(str(tmp_path), "state")})
    try:
        assert_one_line_error(cp, obj, f"map '{symbol}'", "pin")
        assert cp.returncode == 2
    finally:
        run_cli("unload", v.peer_if, "--all", "--netns", v.netns,
                env={"LIBXDP_BPFFS": root,
                     "XDP_DISPATCH_STATE_DIR": os.path.join(str(tmp_path), "state")})
    assert not os.path.lexists(os.path.join(bpffs_dir, "x"))
    assert not os.path.lexists(os.path.join(bpffs_dir, "a", "b", "a"))
    assert nettools.xdp_attached(v.peer_if, v.netns) is None


def test_pin_maps_dir_a_user_owns_is_refused(bpffs_dir: str, tmp_path: object) -> None:
    """The loader refuses to pin (or reuse pins) in a pin_maps directory a user owns."""
    from dispatcher.kernel import loader
    from dispatcher.obj.elf import read_object

    d = os.path.join(bpffs_dir, "maps")
    os.mkdir(d, 0o755)
    os.chown(d, USER, USER)
    spec = read_object(example("xdp_blocklist"))
    with pytest.raises(UnsafePathError, match=f"refusing pin_maps directory {d}: owned by uid"):
        loader.open_object(spec, pin_root=d)
    assert os.listdir(d) == []


def test_plan_refuses_a_world_writable_pin_maps_dir(bpffs_dir: str, tmp_path: object,
                                                    netns_veth: nettools.VethNs) -> None:
    d = os.path.join(bpffs_dir, "maps")
    os.mkdir(d)
    os.chmod(d, 0o777)
    cfg = os.path.join(str(tmp_path), "c.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump({"version": 1, "interfaces": [{"name": netns_veth.host_if, "mode": "skb",
                        "programs": [{"name": "bl", "object": example("xdp_blocklist"),
                                      "pin_maps": d}]}]}, f)
    cp = run_cli("plan", cfg, env={"LIBXDP_BPFFS": bpffs_dir,
                                   "XDP_DISPATCH_STATE_DIR": os.path.join(str(tmp_path), "st")})
    assert_one_line_error(cp, "pin_maps", f"refusing pin_maps directory {d}",
                          "writable by group/others")


# -- the state directory ---------------------------------------------------------------------

def _forge_empty_record(cfg: str, iface: str) -> tuple[str, bytes]:
    """What an unprivileged user can compute: a valid record saying ``cfg`` is applied
    (nothing to change) on the current system. Returns (record path, bytes)."""
    from dispatcher.config import applied
    from dispatcher.config.plan import InterfacePlan

    with open(cfg, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    ins = applied.inputs(cfg, sha, [example("xdp_pass")], [], False)
    rec = {"version": applied.RECORD_VERSION, "inputs": ins,
           "system": applied.system([(None, iface)]),
           "plans": [applied.plan_record(InterfacePlan(iface, None, "skb"))]}
    return applied._record_path(cfg), json.dumps(rec).encode()


@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_forged_record_in_a_writable_state_dir_is_refused(
        mode: int, private: str, tmp_path: object, netns_veth: nettools.VethNs,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 case 2: with a group/world-writable state directory a user wrote a record
    with an empty plan and root's apply said "Nothing to change." with no program on the
    interface. Now the directory is refused (exit 5), and nothing is attached."""
    iface = netns_veth.host_if
    state = os.environ["XDP_DISPATCH_STATE_DIR"]
    cfg = os.path.join(str(tmp_path), "c.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump({"version": 1, "interfaces": [{"name": iface, "mode": "skb", "programs": [
            {"name": "pass", "object": example("xdp_pass")}]}]}, f)
    os.makedirs(os.path.join(state, "applied"), 0o700)
    path, data = _forge_empty_record(cfg, iface)
    os.chmod(state, mode)
    os.chmod(os.path.join(state, "applied"), mode)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, USER, USER)
    cp = run_cli("apply", cfg)
    assert "Nothing to change." not in cp.stdout
    assert_one_line_error(cp, f"refusing state directory {state}", "writable by group/others")
    assert cp.returncode == 5
    assert nettools.xdp_attached(iface) is None


def test_state_dir_symlink_and_foreign_owner_are_refused(private: str, tmp_path: object) -> None:
    state = os.environ["XDP_DISPATCH_STATE_DIR"]
    elsewhere = os.path.join(str(tmp_path), "elsewhere")
    os.mkdir(elsewhere, 0o700)
    os.symlink(elsewhere, state)
    cp = run_cli("status")
    assert_one_line_error(cp, f"refusing state directory {state}", "symbolic link")
    os.unlink(state)
    os.mkdir(state, 0o700)
    os.chown(state, USER, USER)
    cp = run_cli("status")
    assert_one_line_error(cp, f"refusing state directory {state}", f"owned by uid {USER}")
    assert cp.returncode == 5


def test_state_dir_is_created_private(private: str, tmp_path: object,
                                      netns_veth: nettools.VethNs) -> None:
    state = os.environ["XDP_DISPATCH_STATE_DIR"]
    cfg = os.path.join(str(tmp_path), "c.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump({"version": 1, "interfaces": [{"name": netns_veth.host_if, "mode": "skb",
                        "programs": [{"name": "pass", "object": example("xdp_pass")}]}]}, f)
    old = os.umask(0)
    try:
        run_cli("apply", cfg, check=True)
    finally:
        os.umask(old)
        run_cli("unload", netns_veth.host_if, "--all")
    st = os.stat(state)
    assert (st.st_mode & 0o777) == 0o700 and st.st_uid == 0
    owned = os.stat(os.path.join(state, "owned.json"))
    assert (owned.st_mode & 0o077) == 0
    assert not [n for n in os.listdir(state) if n.endswith(".tmp")]


_DAMAGED = {"list": b"[]", "programs_int": b'{"programs": 5}', "truncated": b'{"version": 1, "pro',
            "garbage": b"\x00\xff garbage", "deep": b"[" * 100000 + b"]" * 100000,
            "bad_entry": b'{"version": 1, "programs": [{"prog_id": "x"}]}'}


def _damaged_state_file_refused(name: str, data: bytes, iface: str, *writer: str) -> None:
    """``name`` in the state directory holds ``data``: `status` and the command ``writer``
    (which would write that file) each say so in one line naming it, exit 5 for status;
    nothing gets attached to ``iface``, and the file is left as it was."""
    state = os.environ["XDP_DISPATCH_STATE_DIR"]
    os.mkdir(state, 0o700)
    path = os.path.join(state, name)
    with open(path, "wb") as f:
        f.write(data)
    cp = run_cli("status", iface)
    assert_one_line_error(cp, f"{path} is damaged", f"mv {path} {path}.damaged")
    assert cp.returncode == 5
    cp = run_cli(*writer)
    try:
        assert_one_line_error(cp, f"{path} is damaged")
        assert nettools.xdp_attached(iface) is None
    finally:
        run_cli("unload", iface, "--all")
    with open(path, "rb") as f:
        assert f.read() == data


@pytest.mark.parametrize("kind", sorted(_DAMAGED))
def test_damaged_owned_json_is_reported_and_kept(kind: str, private: str, tmp_path: object,
                                                 netns_veth: nettools.VethNs) -> None:
    """Issue 11 case 7: a damaged owned.json is one clear error naming the file and the
    command that moves it aside; apply refuses rather than overwriting it (it used to be
    an internal error, or silently replaced, losing every record)."""
    cfg = os.path.join(str(tmp_path), "c.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump({"version": 1, "interfaces": [{"name": netns_veth.host_if, "mode": "skb",
                        "programs": [{"name": "pass", "object": example("xdp_pass")}]}]}, f)
    _damaged_state_file_refused("owned.json", _DAMAGED[kind], netns_veth.host_if, "apply", cfg)


_DAMAGED_LOADED = {**{k: v for k, v in _DAMAGED.items() if k != "bad_entry"},
                   "bad_id": b'{"version": 1, "programs": [1, "x"]}',
                   "bool_id": b'{"version": 1, "programs": [true]}'}


@pytest.mark.parametrize("kind", sorted(_DAMAGED_LOADED))
def test_damaged_loaded_json_is_reported_and_kept(kind: str, private: str,
                                                  netns_veth: nettools.VethNs) -> None:
    """loaded.json (programs `load` attached, for "Managed by") damaged: `load` refuses
    and attaches nothing (the record is written before the swap)."""
    _damaged_state_file_refused("loaded.json", _DAMAGED_LOADED[kind], netns_veth.host_if,
                                "load", netns_veth.host_if, example("xdp_pass"), "-m", "skb")


def test_damaged_applied_record_falls_back_to_the_full_plan(
        private: str, tmp_path: object, netns_veth: nettools.VethNs) -> None:
    """A deeply nested applied record used to crash apply with RecursionError; any damage
    now means the full plan."""
    from dispatcher.config import applied

    iface = netns_veth.host_if
    cfg = os.path.join(str(tmp_path), "c.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump({"version": 1, "interfaces": [{"name": iface, "mode": "skb", "programs": [
            {"name": "pass", "object": example("xdp_pass")}]}]}, f)
    path = applied._record_path(cfg)
    os.makedirs(os.path.dirname(path), 0o700)
    os.chmod(os.environ["XDP_DISPATCH_STATE_DIR"], 0o700)
    try:
        for damage in (b"[" * 100000, b'{"version": 1, "inputs": []}', b"\xff", b"{}"):
            with open(path, "wb") as f:
                f.write(damage)
            cp = run_cli("apply", cfg)
            assert cp.returncode == 0 and "Traceback" not in cp.stderr, cp.stderr
            assert nettools.xdp_attached(iface) is not None
            run_cli("unload", iface, "--all", check=True)
    finally:
        run_cli("unload", iface, "--all")


# -- interface names with glob characters ------------------------------------------------------

def test_exact_interface_name_with_glob_characters(private: str, tmp_path: object) -> None:
    """``name: {exact: "xd[..]"}`` plans and applies on exactly that interface, where a plain
    string is a glob that would match the wrong interface (or none)."""
    tag = os.urandom(2).hex()
    odd, plain = f"x[{tag}]", f"x{tag[0]}"       # the glob x[..] matches `plain`, not `odd`
    nettools.ip("link", "add", odd, "type", "veth", "peer", "name", plain)
    try:
        for n in (odd, plain):
            nettools.ip("link", "set", n, "up")
        cfg = os.path.join(str(tmp_path), "c.yaml")
        with open(cfg, "w") as f:
            yaml.safe_dump({"version": 1, "interfaces": [{"name": {"exact": odd}, "mode": "skb",
                            "programs": [{"name": "pass", "object": example("xdp_pass")}]}]}, f)
        cp = run_cli("plan", cfg)
        assert cp.returncode == 2 and odd in cp.stdout and "Traceback" not in cp.stderr, \
            cp.stdout + cp.stderr
        run_cli("apply", cfg, check=True)
        assert nettools.xdp_attached(odd) is not None
        assert nettools.xdp_attached(plain) is None
        assert run_cli("plan", cfg).returncode == 0
    finally:
        run_cli("unload", odd, "--all")
        nettools.ip("link", "del", odd, check=False)


# -- the fexit counters directory (freplace chains' per-component counters) -------------

def _xdp_dir(bpffs_dir: str) -> None:
    os.mkdir(os.path.join(bpffs_dir, "xdp"), 0o700)     # clean's own directory: root's


def test_clean_refuses_a_counters_dir_a_user_made_and_follows_no_symlink(
        bpffs_dir: str, tmp_path: object) -> None:
    """A user makes xdp-dispatch/fexit/ first, with a symlink named like a component's
    counters in it: clean's sweep refuses in one line and deletes nothing."""
    victim = _victim(tmp_path)
    _xdp_dir(bpffs_dir)
    top = os.path.join(bpffs_dir, "xdp-dispatch")
    fexit = os.path.join(top, "fexit")
    os.makedirs(fexit, 0o755)
    os.symlink(victim, os.path.join(fexit, "4026531840-1-999999"))
    os.chown(fexit, USER, USER)
    cp = run_cli("clean", env={"LIBXDP_BPFFS": bpffs_dir})
    assert_one_line_error(cp, f"refusing {fexit}", f"owned by uid {USER}")
    assert cp.returncode == 5
    assert os.listdir(victim) == ["precious"]


def test_a_counters_dir_symlink_is_refused(bpffs_dir: str, tmp_path: object) -> None:
    """xdp-dispatch/ itself a symlink (to a directory with a fexit/ of root's, even):
    refused, nothing under the target touched."""
    victim = _victim(tmp_path)
    os.mkdir(os.path.join(victim, "fexit"))
    os.mkdir(os.path.join(victim, "fexit", "4026531840-1-999999"))
    _xdp_dir(bpffs_dir)
    os.symlink(victim, os.path.join(bpffs_dir, "xdp-dispatch"))
    cp = run_cli("clean", env={"LIBXDP_BPFFS": bpffs_dir})
    assert_one_line_error(cp, "is a symbolic link")
    assert cp.returncode == 5
    assert sorted(os.listdir(victim)) == ["fexit", "precious"]
    assert os.listdir(os.path.join(victim, "fexit")) == ["4026531840-1-999999"]
