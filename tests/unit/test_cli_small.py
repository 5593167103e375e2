"""Small CLI surfaces: --version, and the text of `features IFACE`'s interface probe."""

from __future__ import annotations

import tomllib

from dispatcher.render import interface_modes_text
from tests.cli import run_cli
from tests.objects import REPO


def test_version_is_the_package_version() -> None:
    with open(f"{REPO}/pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    cp = run_cli("--version", check=True)
    assert cp.stdout == f"xdp-dispatch {version}\n"


def test_interface_probe_is_one_readable_line() -> None:
    probed = {"name": "eth0", "ifindex": 3, "skb": True, "attached_mode": None,
              "native": True, "hw": False}
    assert interface_modes_text(probed) == ("eth0 (ifindex 3): skb yes, native yes, hw no; "
                                            "attached: none")
    busy = {"name": "eth0", "ifindex": 3, "skb": True, "attached_mode": "skb", "native": None,
            "hw": None, "detail": "a program is attached: native/hw not probed (unknown)"}
    assert interface_modes_text(busy) == (
        "eth0 (ifindex 3): skb yes, native unknown, hw unknown; attached: skb "
        "(a program is attached: native/hw not probed (unknown))")


def test_a_dispatcher_version_we_do_not_write_is_one_line_before_any_kernel_call() -> None:
    from tests.cli import assert_one_line_error

    cp = run_cli("upgrade", "no-such-if0", "--dispatcher-version", "1")
    assert_one_line_error(cp, "dispatcher version 1 cannot be written: this tool writes 2 and 3")
    assert "hint: pass --dispatcher-version 2" in cp.stderr
    cp = run_cli("upgrade", "no-such-if0")
    assert cp.returncode == 2 and "--dispatcher-version" in cp.stderr     # argparse: required
