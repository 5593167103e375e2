"""``apply`` is all-or-nothing across interfaces, on the real kernel.

Every test starts from a chain applied by a first config, makes a second apply fail (or
race) in a precise way, and compares a full snapshot before and after: the XDP program
each interface runs (``ip -j link``), our reading of each chain (dispatcher id, every
component's id, name, priority, actions), every pin under a private bpffs root
(``LIBXDP_BPFFS``, honoured by us and by libxdp's xdp-loader) and the ownership records.
Chains of several programs need freplace (VM tier); the single-program variant runs on
any kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli import assert_one_line_error, run_cli
from tests.host import nettools
from tests.objects import EXAMPLES_DIR, REPO

pytestmark = [pytest.mark.host_kernel, pytest.mark.once]

needs_xdp_loader = pytest.mark.skipif(shutil.which("xdp-loader") is None,
                                      reason="xdp-loader (xdp-tools) not installed")


def write_cfg(path: Path, chains: dict[str, list[dict[str, Any]]]) -> str:
    import yaml

    doc = {"version": 1, "interfaces": [
        {"name": iface, "mode": "skb",
         "programs": [{**p, "object": os.path.join(EXAMPLES_DIR, p["object"])} for p in progs]}
        for iface, progs in chains.items()]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def chain_of(iface: str) -> tuple[object, ...]:
    import dispatcher

    (st,) = dispatcher.status(iface)
    j = st.to_json()
    return (nettools.xdp_attached(iface), j["kind"], j["dispatcher"], j["main"],
            [(p["id"], p["name"], p["priority"], p["chain_call_actions"]) for p in j["programs"]])


def pins(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, dirs, files in os.walk(root) for n in dirs + files)


def snapshot(ifaces: tuple[str, ...], root: str) -> tuple[object, ...]:
    owned = Path(os.environ["XDP_DISPATCH_STATE_DIR"]) / "owned.json"
    return (tuple(chain_of(i) for i in ifaces), pins(root),
            owned.read_text() if owned.exists() else None)


def ids(iface: str) -> list[int]:
    return [p[0] for p in chain_of(iface)[4]]  # type: ignore[index, union-attr]


def names(iface: str) -> list[str]:
    return [p[1] for p in chain_of(iface)[4]]  # type: ignore[index, union-attr]


def attached_dispatcher_dirs(*ifaces: str) -> list[str]:
    out = []
    for i in ifaces:
        xdp = nettools.xdp_attached(i)
        assert xdp is not None, i
        out.append(f"xdp/dispatch-{nettools.ip_json('link', 'show', 'dev', i)[0]['ifindex']}"
                   f"-{xdp['prog']['id']}")
    return sorted(out)


def dispatcher_dirs(root: str) -> list[str]:
    return sorted(p for p in pins(root) if p.startswith("xdp/dispatch-") and p.count("/") == 1)


class Paused:
    """``xdp-dispatch ARGS`` in a subprocess with a pause hook (XDP_DISPATCH_FAULT=...:pause):
    ``wait()`` until it sits at the step, ``go()`` lets it continue; ``finish()`` keeps
    releasing later pauses at the same step (a retry passes it again) until it exits."""

    def __init__(self, tmp_path: Path, fault: str, *args: str) -> None:
        self.ready = tmp_path / "fault-ready"
        env = dict(os.environ, PYTHONPATH=REPO, XDP_DISPATCH_FAULT=fault,
                   XDP_DISPATCH_FAULT_READY=str(self.ready))
        self.proc = subprocess.Popen([sys.executable, "-m", "dispatcher", *args], env=env,
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.pauses = 0

    def wait(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while not self.ready.exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                out, err = self.proc.communicate()
                raise AssertionError(f"never reached the pause: rc {self.proc.returncode}: "
                                     f"{out} {err}")
            time.sleep(0.02)
        self.pauses += 1

    def go(self) -> None:
        self.ready.unlink()

    def finish(self, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            if self.ready.exists():
                self.pauses += 1
                self.go()
            time.sleep(0.02)
        out, err = self.proc.communicate(timeout=max(1.0, end - time.monotonic()))
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


def one_error(cp: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """``assert_one_line_error``, allowing the notice of kernels without freplace."""
    notice = "xdp-dispatch: the running kernel refuses freplace"
    kept = "\n".join(ln for ln in cp.stderr.splitlines() if not ln.startswith(notice))
    assert_one_line_error(subprocess.CompletedProcess(cp.args, cp.returncode, cp.stdout, kept),
                          *fragments)


def xdp_loader(*args: str) -> None:
    subprocess.run(["xdp-loader", *args], check=True, capture_output=True, text=True)


# --- (a) the verifier rejects a program of the second interface ---------------------------

@pytest.mark.freplace
def test_verifier_rejects_third_program_of_second_interface(two, netns_veth, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                            private: str) -> None:
    a, b = two
    first = {a: [{"name": "count", "object": "xdp_counter.o", "priority": 10}],
             b: [{"name": "pass", "object": "xdp_pass.o", "priority": 10},
                 {"name": "icmp", "object": "xdp_drop_icmp.o", "priority": 20}]}
    cfg1 = write_cfg(tmp_path / "one.yaml", first)
    run_cli("apply", cfg1, check=True)
    before = snapshot(two, private)

    second = {a: first[a] + [{"name": "block", "object": "xdp_blocklist.o", "priority": 20},
                             {"name": "icmp", "object": "xdp_drop_icmp.o", "priority": 30}],
              b: [{**first[b][0], "priority": 5}, first[b][1],
                  {"name": "reject", "object": "xdp_reject.o", "priority": 30}]}
    cfg2 = write_cfg(tmp_path / "two.yaml", second)
    assert run_cli("plan", cfg2).returncode == 2
    cp = run_cli("apply", cfg2)

    assert cp.returncode == 1
    assert_one_line_error(cp, f"apply failed on {b}: ", "xdp_reject.o: program xdp_reject",
                          "BPF_PROG_LOAD", f"(restored {a} to its previous chain)")
    assert snapshot(two, private) == before            # same ids, same pins, same records
    assert "blocklist" not in pins(private)             # the new pinned map went with it
    assert run_cli("plan", cfg1).returncode == 0         # the first config still holds exactly
    assert nettools.ping(netns_veth.peer_ip, count=1)   # A's old chain forwards


def test_verifier_rejects_second_interface_single_programs(two, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                           private: str) -> None:
    """Any kernel: one program per interface is attached directly; interface A's program
    is replaced, B's is rejected, A gets its old program (same id) back."""
    a, b = two
    cfg1 = write_cfg(tmp_path / "one.yaml", {a: [{"name": "count", "object": "xdp_counter.o"}],
                                             b: []})
    run_cli("apply", cfg1, check=True)
    before = snapshot(two, private)
    cfg2 = write_cfg(tmp_path / "two.yaml", {a: [{"name": "pass", "object": "xdp_pass.o"}],
                                             b: [{"name": "reject", "object": "xdp_reject.o"}]})
    cp = run_cli("apply", cfg2)
    assert cp.returncode == 1
    one_error(cp, f"apply failed on {b}: ", "program xdp_reject",
              f"(restored {a} to its previous chain)")
    assert snapshot(two, private) == before
    assert run_cli("plan", cfg1).returncode == 0


def test_first_interface_fails_nothing_to_restore(two, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  private: str) -> None:
    a, b = two
    before = snapshot(two, private)
    cfg = write_cfg(tmp_path / "c.yaml", {a: [{"name": "reject", "object": "xdp_reject.o"}],
                                          b: [{"name": "count", "object": "xdp_counter.o"}]})
    cp = run_cli("apply", cfg)
    assert_one_line_error(cp, f"apply failed on {a}: ", "(no interface was changed)")
    assert snapshot(two, private) == before


@pytest.mark.parametrize("existing", ["", "mine"])
def test_failed_apply_removes_the_pin_directories_it_made(two, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          private: str, existing: str) -> None:
    """``pin_maps`` directories created by an apply that then fails go with it; a directory
    that was there before stays (``existing``: made by the user beforehand)."""
    a, b = two
    # The protocol's lock directory (bpffs/xdp) is shared with libxdp and never removed
    # (another process may hold its flock); on a used system it is there already.
    os.makedirs(os.path.join(private, "xdp"), exist_ok=True)
    if existing:
        os.mkdir(os.path.join(private, existing))
    pin = os.path.join(private, existing or "maps", "counter")
    before = snapshot(two, private)
    cfg = write_cfg(tmp_path / "c.yaml", {
        a: [{"name": "count", "object": "xdp_counter.o", "pin_maps": pin}],
        b: [{"name": "reject", "object": "xdp_reject.o"}]})
    cp = run_cli("apply", cfg)
    assert cp.returncode == 1
    one_error(cp, f"apply failed on {b}: ", "program xdp_reject")
    assert snapshot(two, private) == before          # the bpffs tree exactly as it was
    assert os.path.isdir(os.path.join(private, existing)) if existing else \
        not os.path.exists(os.path.join(private, "maps"))


# --- (b) an interface named in the file is missing -----------------------------------------

def test_missing_interface_is_a_config_error(two, tmp_path: Path,  # type: ignore[no-untyped-def]
                                             private: str) -> None:
    a, b = two
    before = snapshot(two, private)
    cfg = write_cfg(tmp_path / "c.yaml", {a: [{"name": "count", "object": "xdp_counter.o"}],
                                          "xdpd-gone0": [{"name": "pass", "object": "xdp_pass.o"}]})
    lines = Path(cfg).read_text().splitlines()
    (line,) = [n for n, text in enumerate(lines, 1) if text.endswith("name: xdpd-gone0")]
    col = lines[line - 1].index("xdpd-gone0") + 1
    cp = run_cli("apply", cfg)
    assert cp.returncode == 2
    assert_one_line_error(cp, f"{cfg}:{line}:{col}: interfaces[1].name: "
                              'no interface named "xdpd-gone0"')
    assert snapshot(two, private) == before


def test_pattern_naming_an_interface_twice_is_a_config_error(two, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                            private: str) -> None:
    a, _b = two
    before = snapshot(two, private)
    pattern = a[:-1] + "?"
    cfg = write_cfg(tmp_path / "c.yaml", {a: [{"name": "count", "object": "xdp_counter.o"}],
                                          pattern: [{"name": "pass", "object": "xdp_pass.o"}]})
    lines = Path(cfg).read_text().splitlines()
    (line,) = [n for n, text in enumerate(lines, 1) if text.endswith(f"name: '{pattern}'")
               or text.endswith(f"name: {pattern}")]
    cp = run_cli("apply", cfg)
    assert cp.returncode == 2
    assert_one_line_error(cp, f"{cfg}:{line}:", f'interfaces[1].name: interface "{a}" already '
                              "has a chain at interfaces[0] (after expanding patterns)")
    assert snapshot(two, private) == before


@pytest.mark.freplace
def test_interface_vanishes_mid_apply(two, tmp_path: Path, private: str) -> None:  # type: ignore[no-untyped-def]
    """B is deleted while its change is half done: A (already swapped) is put back."""
    a, b = two
    cfg1 = write_cfg(tmp_path / "one.yaml", {a: [{"name": "count", "object": "xdp_counter.o"}]})
    run_cli("apply", cfg1, check=True)
    before = snapshot((a,), private)
    cfg2 = write_cfg(tmp_path / "two.yaml", {
        a: [{"name": "count", "object": "xdp_counter.o"},
            {"name": "icmp", "object": "xdp_drop_icmp.o", "priority": 60}],
        b: [{"name": "count", "object": "xdp_counter.o"},
            {"name": "pass", "object": "xdp_pass.o"}]})
    run = Paused(tmp_path, f"components_linked@{b}:pause120", "apply", cfg2)
    run.wait()
    assert len(ids(a)) == 2                   # A runs the new chain (pending) meanwhile
    nettools.ip("link", "del", b)
    run.go()
    cp = run.finish()
    assert cp.returncode != 0
    assert_one_line_error(cp, f"apply failed on {b}: ", f"(restored {a} to its previous chain)")
    assert snapshot((a,), private) == before


# --- (c) a concurrent xdp-loader change races the swap --------------------------------------

@pytest.mark.freplace
@needs_xdp_loader
def test_xdp_loader_races_the_swap_we_retry(two, tmp_path: Path, private: str) -> None:  # type: ignore[no-untyped-def]
    """xdp-loader adds a program to B between our pinning and our swap: our swap (REPLACE,
    expecting the dispatcher we observed) fails, we observe again and build on its chain;
    its program stays, nothing stale stays pinned."""
    a, b = two
    cfg1 = write_cfg(tmp_path / "one.yaml", {i: [{"name": "count", "object": "xdp_counter.o",
                                                  "priority": 10}] for i in two})
    run_cli("apply", cfg1, check=True)
    ours_b = ids(b)
    cfg2 = write_cfg(tmp_path / "two.yaml", {i: [
        {"name": "count", "object": "xdp_counter.o", "priority": 10},
        {"name": "icmp", "object": "xdp_drop_icmp.o", "priority": 20}] for i in two})
    run = Paused(tmp_path, f"components_linked@{b}:pause120", "apply", cfg2)
    run.wait()
    xdp_loader("load", "-m", "skb", "-p", "40", b, os.path.join(EXAMPLES_DIR, "xdp_pass.o"))
    theirs = [i for i in ids(b) if i not in ours_b]
    assert len(theirs) == 1
    run.go()
    cp = run.finish()
    assert cp.returncode == 0, cp.stderr
    assert run.pauses >= 2                        # the swap was retried
    assert names(a) == ["xdp_counter", "xdp_drop_icmp"]
    assert names(b) == ["xdp_counter", "xdp_drop_icmp", "xdp_pass"]
    assert theirs[0] in ids(b) and ours_b[0] in ids(b)      # nobody's program was lost
    assert dispatcher_dirs(private) == attached_dispatcher_dirs(a, b)
    assert run_cli("plan", cfg2).returncode == 0            # xdp_pass is foreign: kept


@pytest.mark.freplace
@needs_xdp_loader
def test_xdp_loader_unload_races_the_swap(two, tmp_path: Path, private: str) -> None:  # type: ignore[no-untyped-def]
    a, _b = two
    cfg1 = write_cfg(tmp_path / "one.yaml", {a: [{"name": "count", "object": "xdp_counter.o",
                                                  "priority": 10}]})
    run_cli("apply", cfg1, check=True)
    xdp_loader("load", "-m", "skb", "-p", "40", a, os.path.join(EXAMPLES_DIR, "xdp_pass.o"))
    (theirs,) = [pid for pid, name in zip(ids(a), names(a), strict=True) if name == "xdp_pass"]
    cfg2 = write_cfg(tmp_path / "two.yaml", {a: [
        {"name": "count", "object": "xdp_counter.o", "priority": 10},
        {"name": "icmp", "object": "xdp_drop_icmp.o", "priority": 20}]})
    run = Paused(tmp_path, f"components_linked@{a}:pause120", "apply", cfg2)
    run.wait()
    xdp_loader("unload", a, "-i", str(theirs))
    run.go()
    cp = run.finish()
    assert cp.returncode == 0, cp.stderr
    assert names(a) == ["xdp_counter", "xdp_drop_icmp"]     # their removal was not undone
    assert theirs not in ids(a)
    assert dispatcher_dirs(private) == attached_dispatcher_dirs(a)


@pytest.mark.freplace
@needs_xdp_loader
def test_xdp_loader_changes_a_pending_interface_then_apply_fails(  # type: ignore[no-untyped-def]
        two, tmp_path: Path, private: str) -> None:
    """A is swapped (pending); xdp-loader builds on A's new chain; then B fails. A cannot be
    put back without losing xdp-loader's change: the error says so, A keeps theirs, B is as
    before, and no dispatcher pins are left that nothing runs."""
    a, b = two
    cfg1 = write_cfg(tmp_path / "one.yaml", {i: [{"name": "count", "object": "xdp_counter.o",
                                                  "priority": 10}] for i in two})
    run_cli("apply", cfg1, check=True)
    before_b = snapshot((b,), private)[0]
    cfg2 = write_cfg(tmp_path / "two.yaml", {
        a: [{"name": "count", "object": "xdp_counter.o", "priority": 10},
            {"name": "icmp", "object": "xdp_drop_icmp.o", "priority": 20}],
        b: [{"name": "count", "object": "xdp_counter.o", "priority": 10},
            {"name": "reject", "object": "xdp_reject.o", "priority": 20}]})
    run = Paused(tmp_path, f"dispatcher_loaded@{b}:pause120", "apply", cfg2)
    run.wait()
    xdp_loader("load", "-m", "skb", "-p", "40", a, os.path.join(EXAMPLES_DIR, "xdp_pass.o"))
    run.go()
    cp = run.finish()
    assert cp.returncode == 1
    assert_one_line_error(cp, f"apply failed on {b}: ", "program xdp_reject",
                          f"could not restore {a}: ")
    assert names(a) == ["xdp_counter", "xdp_drop_icmp", "xdp_pass"]
    assert snapshot((b,), private)[0] == before_b
    assert dispatcher_dirs(private) == attached_dispatcher_dirs(a, b)
