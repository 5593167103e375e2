"""Host tier: real kernel, root, bpf(2), bpffs.

The whole tier is skipped (with the reason) when it cannot run here. Fixtures:

* ``bpffs_dir``: a fresh private directory on the bpffs, removed afterwards.
* ``no_fd_leak`` (autouse): fails a test that leaves new fds open.
* ``netns_veth``: a netns + veth pair (see ``nettools.py``), deleted afterwards;
  fails if an XDP program was left attached.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from functools import cache

import pytest

from tests.host import nettools

BPFFS = "/sys/fs/bpf"


@cache
def host_tier_unavailable() -> str | None:
    """Why the host tier cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "host-tier tests need root (bpf(2), bpffs, netns); run them with sudo"
    try:
        from dispatcher import uapi
        from dispatcher.errors import KernelError
        from dispatcher.kernel import bpf
    except ImportError as exc:  # pragma: no cover - broken checkout
        return f"cannot import the syscall layer: {exc}"
    try:
        with bpf.map_create(uapi.BPF_MAP_TYPE_ARRAY, 4, 4, 1, name="probe"):
            pass
        insns = bytes.fromhex("b700000002000000" "9500000000000000")
        with bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, insns, "GPL", name="probe"):
            pass
    except KernelError as exc:
        reason = f"bpf(2) unusable on this machine: {exc}"
        if exc.errno == errno.ENOSYS:
            reason += " (kernel without CONFIG_BPF_SYSCALL)"
        elif exc.hint:
            reason += f" -- {exc.hint}"
        return reason
    return None


@pytest.fixture(scope="session", autouse=True)
def _host_tier_available() -> None:
    reason = host_tier_unavailable()
    if reason:
        pytest.skip(reason)


def _open_fds() -> dict[int, str]:
    dfd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fds = [int(n) for n in os.listdir(dfd) if int(n) != dfd]
    finally:
        os.close(dfd)
    out = {}
    for fd in fds:
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue          # closed in between
    return out


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    before = _open_fds()
    yield
    after = _open_fds()
    leaked = {fd: t for fd, t in after.items() if before.get(fd) != t}
    if leaked:
        pytest.fail("test leaked file descriptors: "
                    + ", ".join(f"{fd} -> {t}" for fd, t in sorted(leaked.items())))


@pytest.fixture
def bpffs_dir() -> Iterator[str]:
    """A fresh private directory on the bpffs (mounted if needed); removed after."""
    from dispatcher.kernel import bpffs

    bpffs.ensure_bpffs(BPFFS)
    path = os.path.join(BPFFS, f"xdpd-test-{secrets.token_hex(4)}")
    os.mkdir(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        assert not os.path.exists(path), f"could not remove {path}"


@pytest.fixture
def netns_veth() -> Iterator[nettools.VethNs]:
    """A netns with a veth pair to the root netns, both ends up and addressed."""
    if nettools.IP_TOOL is None:
        pytest.skip("iproute2 `ip` is not installed: cannot build a veth/netns fixture")
    v = nettools.create_veth_ns()
    try:
        yield v
    finally:
        left = nettools.destroy_veth_ns(v)
    assert not left, f"test left XDP programs attached: {left}"
    assert not nettools.netns_exists(v.netns), f"netns {v.netns} still exists"


@pytest.fixture
def private(tmp_path, bpffs_dir: str, monkeypatch: pytest.MonkeyPatch) -> str:  # type: ignore[no-untyped-def]
    """Private bpffs root and ownership directory for this test (and its subprocesses)."""
    monkeypatch.setenv("LIBXDP_BPFFS", bpffs_dir)
    monkeypatch.setenv("XDP_DISPATCH_STATE_DIR", str(tmp_path / "state"))
    return bpffs_dir


@pytest.fixture
def env(tmp_path, bpffs_dir: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Private bpffs root and state directory, set for this test and returned (to pass to
    subprocesses explicitly)."""
    e = {"XDP_DISPATCH_STATE_DIR": str(tmp_path / "state"), "LIBXDP_BPFFS": bpffs_dir}
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    return e


@pytest.fixture
def veth(netns_veth: nettools.VethNs, env: dict[str, str]) -> Iterator[nettools.VethNs]:
    """``netns_veth`` with everything unloaded from its host end afterwards."""
    from tests.cli import run_cli

    yield netns_veth
    run_cli("unload", netns_veth.host_if, "--all", env=env)


@pytest.fixture
def two(netns_veth: nettools.VethNs, private: str) -> Iterator[tuple[str, str]]:
    """Two veth interfaces in the root netns (A pings its peer), cleaned up afterwards."""
    from tests.cli import run_cli

    b = nettools.create_veth_ns()
    try:
        yield netns_veth.host_if, b.host_if
    finally:
        for i in (netns_veth.host_if, b.host_if):
            run_cli("unload", i, "--all")
        nettools.destroy_veth_ns(b)
