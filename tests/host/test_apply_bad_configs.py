"""``xdp-dispatch apply`` of every bad config file in tests/unit/bad_configs (the unit tier
checks the parser's messages; this checks what users see): the exact stderr lines, the
exit code, and that nothing changed on the system.

Each case runs the CLI as a subprocess inside a private network namespace holding exactly
the interfaces the file's ``# interfaces:`` header names (default: ``lo``), created as
dummy links, so the outcome does not depend on the machine; the bpffs root
(``LIBXDP_BPFFS``) and the ownership directory are private too. "Unchanged" means: XDP
state of every interface in that netns and in the root netns (those present before and
after: other tests add their own), every pin under the
private bpffs root, and the ownership records, identical before and after.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host import nettools
from tests.objects import REPO

pytestmark = [pytest.mark.host_kernel, pytest.mark.once]

BAD = Path(REPO) / "tests" / "unit" / "bad_configs"
NSENTER = shutil.which("nsenter")


def _cases() -> list[str]:
    return sorted(p.stem for p in BAD.glob("*.yaml"))


def _header_interfaces(name: str) -> list[str]:
    first = (BAD / f"{name}.yaml").read_text().splitlines()[:1]
    if first and first[0].startswith("# interfaces:"):
        return [s.strip() for s in first[0].split(":", 1)[1].split(",")]
    return ["lo"]


def _xdp_links(netns: str | None) -> dict[str, object]:
    return {link["ifname"]: link.get("xdp") for link in nettools.ip_json("link", "show", netns=netns)}


def _pins(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, dirs, files in os.walk(root) for n in dirs + files)


def _owned(state: Path) -> str | None:
    f = state / "owned.json"
    return f.read_text() if f.exists() else None


@pytest.fixture
def private_ns() -> Iterator[str]:
    if nettools.IP_TOOL is None:
        pytest.skip("iproute2 `ip` is not installed: cannot build a network namespace")
    if NSENTER is None:
        pytest.skip("nsenter (util-linux) is not installed: cannot run the CLI in a netns")
    ns = f"xdpd-bad-{secrets.token_hex(3)}"
    nettools.ip("netns", "add", ns)
    try:
        nettools.ip("link", "set", "lo", "up", netns=ns)
        yield ns
    finally:
        nettools.ip("netns", "del", ns, check=False)


def test_table_is_large_enough() -> None:
    assert len(_cases()) >= 20


# Inside the test VM each case is a Python start-up under emulation (~10-20 s) and nothing
# here depends on the kernel: the VM runs a sample (syntax, schema, semantic), the host all.
OTHER_TESTS = re.compile(r"xd[0-9a-f]{6}[ab]")      # nettools.create_veth_ns' names
IN_VM = bool(os.environ.get("XDP_DISPATCH_VM_KERNEL"))
VM_SAMPLE = {"syntax_tab", "three_problems", "sem_unknown_interface"}


@pytest.mark.parametrize("name", _cases())
def test_apply_bad_config(name: str, private_ns: str, bpffs_dir: str, tmp_path: Path) -> None:
    if IN_VM and name not in VM_SAMPLE:
        pytest.skip("kernel-independent: the whole table runs on the host tier; the VM runs "
                    f"{', '.join(sorted(VM_SAMPLE))} (each case is a slow CLI start-up there)")
    for ifname in _header_interfaces(name):
        if ifname != "lo":
            nettools.ip("link", "add", ifname, "type", "veth", "peer", "name", f"{ifname}-p",
                        netns=private_ns)
    state = tmp_path / "state"
    expected = (BAD / f"{name}.expected").read_text().splitlines()
    before = (_xdp_links(private_ns), _xdp_links(None), _pins(bpffs_dir), _owned(state))

    env = dict(os.environ, PYTHONPATH=REPO, LIBXDP_BPFFS=bpffs_dir,
               XDP_DISPATCH_STATE_DIR=str(state))
    assert NSENTER is not None
    cp = subprocess.run([NSENTER, f"--net=/var/run/netns/{private_ns}", sys.executable, "-m",
                         "dispatcher", "apply", f"{name}.yaml"], capture_output=True, text=True,
                        env=env, cwd=BAD, timeout=120)

    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert cp.stdout == ""
    assert cp.stderr.splitlines() == ["xdp-dispatch: error: " + expected[0], *expected[1:]]
    after = (_xdp_links(private_ns), _xdp_links(None), _pins(bpffs_dir), _owned(state))
    assert (after[0], after[2], after[3]) == (before[0], before[2], before[3])
    # Other tests (in parallel, pytest -n) add, change and remove their own veths
    # (nettools' xd<tag>a) in the root netns meanwhile: compare the rest.
    common = {k for k in before[1].keys() & after[1].keys() if not OTHER_TESTS.match(k)}
    assert {k: after[1][k] for k in common} == {k: before[1][k] for k in common}
