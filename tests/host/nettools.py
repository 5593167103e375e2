"""Network fixtures for host-tier tests: a netns + veth pair, ping, XDP checks.

Deliberately built on the iproute2 ``ip`` command, not on pyroute2 or the
project's own netlink module, so it also serves as an independent oracle.
Addresses come from TEST-NET-1 (192.0.2.0/24, RFC 5737), one /30 per pair;
traffic only ever flows between our own namespaces.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

__all__ = ["VethNs", "create_veth_ns", "destroy_veth_ns", "ip", "ip_json", "netns_exists",
           "ping", "xdp_attached", "IP_TOOL"]

IP_TOOL = shutil.which("ip")
NETNS_DIR = "/var/run/netns"
_TEST_NET = "192.0.2"


class NetToolError(RuntimeError):
    pass


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run ``ip ARGS`` (inside ``netns`` if given); return stdout."""
    if IP_TOOL is None:
        raise NetToolError("iproute2 `ip` is not installed")
    cmd = [IP_TOOL] + (["-n", netns] if netns else []) + list(args)
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise NetToolError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def ip_json(*args: str, netns: str | None = None) -> Any:
    out = ip("-j", *args, netns=netns)
    return json.loads(out) if out.strip() else []


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def xdp_attached(ifname: str, netns: str | None = None) -> dict[str, Any] | None:
    """The ``xdp`` object `ip -j link` shows for ``ifname`` (None if nothing attached)."""
    links = ip_json("link", "show", "dev", ifname, netns=netns)
    if not links:
        return None
    xdp = links[0].get("xdp")
    return xdp if xdp else None


def ping(dst: str, *, netns: str | None = None, count: int = 1, timeout: float = 1.0) -> bool:
    """True if ``dst`` answers (``ping`` run inside ``netns`` if given)."""
    ping_tool = shutil.which("ping")
    if ping_tool is None:
        raise NetToolError("`ping` is not installed (iputils-ping)")
    wait = str(max(1, int(timeout + 0.999)))
    cmd = [ping_tool, "-n", "-q", "-c", str(count), "-W", wait, dst]
    if netns:
        assert IP_TOOL is not None
        cmd = [IP_TOOL, "netns", "exec", netns] + cmd
    res = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         timeout=count * (timeout + 1) + 10)
    return res.returncode == 0


@dataclass
class VethNs:
    """A veth pair: ``host_if`` in the root netns, ``peer_if`` inside ``netns``."""

    netns: str
    host_if: str
    peer_if: str
    host_ifindex: int
    peer_ifindex: int          # index inside ``netns``
    host_ip: str
    peer_ip: str
    prefix: int = 30
    extra: dict[str, Any] = field(default_factory=dict)

    def leftover_xdp(self) -> list[str]:
        """Descriptions of XDP programs still attached to either end."""
        left = []
        for name, ns in ((self.host_if, None), (self.peer_if, self.netns)):
            try:
                xdp = xdp_attached(name, ns)
            except NetToolError:
                continue
            if xdp:
                left.append(f"{name}{' in ' + ns if ns else ''}: {xdp}")
        return left


def _free_subnet() -> int:
    """A /30 of 192.0.2.0/24 not already configured in the root netns."""
    used = set()
    for link in ip_json("-4", "addr", "show"):
        for a in link.get("addr_info", []):
            local = str(a.get("local", ""))
            if local.startswith(_TEST_NET + "."):
                used.add(int(local.rsplit(".", 1)[1]) // 4)
    free = [n for n in range(1, 63) if n not in used]
    if not free:
        raise NetToolError("no free /30 left in 192.0.2.0/24")
    return secrets.choice(free)


def create_veth_ns(tag: str | None = None) -> VethNs:
    """Create netns ``xdpd-<tag>`` and veth ``xd<tag>a`` (root) / ``xd<tag>b`` (netns),
    both up with 192.0.2.x/30 addresses. Cleans up after itself if a step fails."""
    tag = tag or secrets.token_hex(3)
    netns, host_if, peer_if = f"xdpd-{tag}", f"xd{tag}a", f"xd{tag}b"
    n = _free_subnet()
    host_ip, peer_ip = f"{_TEST_NET}.{4 * n + 1}", f"{_TEST_NET}.{4 * n + 2}"
    ip("netns", "add", netns)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", netns)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("link", "set", "lo", "up", netns=netns)
        ip("addr", "add", f"{peer_ip}/30", "dev", peer_if, netns=netns)
        ip("link", "set", peer_if, "up", netns=netns)
        host_ifindex = int(ip_json("link", "show", "dev", host_if)[0]["ifindex"])
        peer_ifindex = int(ip_json("link", "show", "dev", peer_if, netns=netns)[0]["ifindex"])
    except BaseException:
        ip("link", "del", host_if, check=False)
        ip("netns", "del", netns, check=False)
        raise
    return VethNs(netns=netns, host_if=host_if, peer_if=peer_if, host_ifindex=host_ifindex,
                  peer_ifindex=peer_ifindex, host_ip=host_ip, peer_ip=peer_ip)


def destroy_veth_ns(v: VethNs) -> list[str]:
    """Delete the pair and the netns; returns the XDP programs that were still attached."""
    left = v.leftover_xdp()
    ip("link", "del", v.host_if, check=False)     # removes both ends
    ip("netns", "del", v.netns, check=False)
    return left
