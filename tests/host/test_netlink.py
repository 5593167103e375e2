"""dispatcher.kernel.netlink on veth pairs; `ip -j link` (iproute2) is the oracle."""

from __future__ import annotations

import errno
import os
import secrets
import struct

import pytest

from dispatcher import uapi
from dispatcher.errors import InterfaceError, NetlinkOpError
from dispatcher.kernel import bpf, netlink
from dispatcher.kernel.fd import OwnedFd
from tests.host import nettools
from tests.host.nettools import VethNs

pytestmark = pytest.mark.host_kernel

SKB = netlink.XDP_FLAGS_SKB_MODE
DRV = netlink.XDP_FLAGS_DRV_MODE


def load_xdp(verdict: int, name: str = "xdpd_nl") -> OwnedFd:
    insns = struct.pack("<BBhi", 0xB7, 0, 0, verdict) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    return bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, insns, "GPL", name=name)


def prog_id(fd: OwnedFd) -> int:
    return bpf.prog_info(fd.fd).id


def oracle(ifname: str, netns: str | None = None) -> tuple[int, int] | None:
    """(ip's xdp mode number, prog id) of ``ifname`` as iproute2 reports it."""
    xdp = nettools.xdp_attached(ifname, netns)
    if not xdp:
        return None
    return int(xdp["mode"]), int(xdp["prog"]["id"])


def test_ifindex_of_and_unknown_names(netns_veth: VethNs) -> None:
    assert netlink.ifindex_of("lo") == 1
    assert netlink.ifindex_of(netns_veth.host_if) == netns_veth.host_ifindex
    assert netlink.ifindex_of(netns_veth.peer_if, netns=netns_veth.netns) == \
        netns_veth.peer_ifindex
    with pytest.raises(InterfaceError, match="unknown interface 'xdpd-nope0'"):
        netlink.ifindex_of("xdpd-nope0")
    # the peer lives only inside the netns
    with pytest.raises(InterfaceError, match=f"in network namespace '{netns_veth.netns}'"):
        netlink.ifindex_of(netns_veth.host_if, netns=netns_veth.netns)
    for bad in ("", "x" * 16, "a/b", "a b"):
        with pytest.raises(InterfaceError, match="invalid interface name"):
            netlink.ifindex_of(bad)


def test_unknown_netns_is_an_error_and_not_created() -> None:
    name = f"xdpd-missing-{secrets.token_hex(3)}"
    for call in (lambda: netlink.ifindex_of("lo", netns=name),
                 lambda: netlink.list_links(netns=name),
                 lambda: netlink.read_xdp(1, netns=name)):
        with pytest.raises(InterfaceError, match=f"unknown network namespace '{name}'"):
            call()
    assert not nettools.netns_exists(name)


def test_read_xdp_unknown_ifindex() -> None:
    with pytest.raises(InterfaceError, match="no interface with index"):
        netlink.read_xdp(0x7FFFFFF0)


def test_list_links_is_one_dump(netns_veth: VethNs) -> None:
    links = netlink.list_links()
    by_name = {s.ifname: s for s in links}
    assert by_name["lo"].ifindex == 1
    host = by_name[netns_veth.host_if]
    assert host.ifindex == netns_veth.host_ifindex and host.attached == 0
    assert host.mode_name is None and host.prog_id == 0
    inside = netlink.list_links(netns=netns_veth.netns)
    assert {s.ifname for s in inside} == {"lo", netns_veth.peer_if}


@pytest.mark.parametrize("mode,attached,ip_mode", [
    (SKB, netlink.XDP_ATTACHED_SKB, 2),
    (DRV, netlink.XDP_ATTACHED_DRV, 1),
])
def test_attach_replace_detach(netns_veth: VethNs, mode: int, attached: int,
                               ip_mode: int) -> None:
    idx, name = netns_veth.host_ifindex, netns_veth.host_if
    with load_xdp(uapi.XDP_PASS) as a, load_xdp(uapi.XDP_PASS, "xdpd_nl_b") as b, \
            load_xdp(uapi.XDP_PASS, "xdpd_nl_c") as c:
        netlink.attach_xdp(idx, a.fd, mode, no_exist=True)
        st = netlink.read_xdp(idx)
        assert st.attached == attached and st.prog_id == prog_id(a)
        assert st.mode_name == {SKB: "skb", DRV: "native"}[mode]
        assert (st.skb_prog_id if mode == SKB else st.drv_prog_id) == prog_id(a)
        assert (st.drv_prog_id if mode == SKB else st.skb_prog_id) == 0
        assert oracle(name) == (ip_mode, prog_id(a))

        # replace with the right expected fd
        netlink.attach_xdp(idx, b.fd, mode, expected_fd=a.fd)
        assert netlink.read_xdp(idx).prog_id == prog_id(b)

        # stale expected fd: EEXIST, with the kernel's extack text
        with pytest.raises(NetlinkOpError) as ei:
            netlink.attach_xdp(idx, c.fd, mode, expected_fd=a.fd)
        e = ei.value
        assert e.errno == errno.EEXIST and e.op == "RTM_SETLINK"
        assert e.subject == name and e.detail
        assert netlink.read_xdp(idx).prog_id == prog_id(b)

        # UPDATE_IF_NOEXIST over an attached program: EBUSY
        with pytest.raises(NetlinkOpError) as ei:
            netlink.attach_xdp(idx, c.fd, mode, no_exist=True)
        assert ei.value.errno == errno.EBUSY and ei.value.detail

        # the other mode cannot be mixed in
        with pytest.raises(NetlinkOpError) as ei:
            netlink.attach_xdp(idx, c.fd, DRV if mode == SKB else SKB)
        assert ei.value.errno == errno.EEXIST and ei.value.hint

        # a conditional detach with a stale fd is refused, the right one works
        with pytest.raises(NetlinkOpError) as ei:
            netlink.detach_xdp(idx, mode, expected_fd=a.fd)
        assert ei.value.errno == errno.EEXIST
        netlink.detach_xdp(idx, mode, expected_fd=b.fd)
        assert netlink.read_xdp(idx).attached == netlink.XDP_ATTACHED_NONE
        assert oracle(name) is None

        # attach again; the kernel keeps its own reference after our fd closes
        netlink.attach_xdp(idx, c.fd, mode)
        cid = prog_id(c)
    assert netlink.read_xdp(idx).prog_id == cid
    netlink.detach_xdp(idx, mode)
    assert netlink.read_xdp(idx).attached == netlink.XDP_ATTACHED_NONE


def test_attach_inside_netns(netns_veth: VethNs) -> None:
    ns, idx = netns_veth.netns, netns_veth.peer_ifindex
    with load_xdp(uapi.XDP_PASS) as a, load_xdp(uapi.XDP_PASS, "xdpd_nl_b") as b:
        netlink.attach_xdp(idx, a.fd, SKB, netns=ns)
        st = netlink.read_xdp(idx, netns=ns)
        assert st.ifname == netns_veth.peer_if and st.skb_prog_id == prog_id(a)
        assert oracle(netns_veth.peer_if, ns) == (2, prog_id(a))
        # the root-ns end is untouched
        assert netlink.read_xdp(netns_veth.host_ifindex).attached == 0

        netlink.attach_xdp(idx, b.fd, SKB, expected_fd=a.fd, netns=ns)
        with pytest.raises(NetlinkOpError) as ei:
            netlink.attach_xdp(idx, a.fd, SKB, expected_fd=a.fd, netns=ns)
        assert ei.value.errno == errno.EEXIST
        assert ns in ei.value.subject and netns_veth.peer_if in ei.value.subject

        by_name = {s.ifname: s for s in netlink.list_links(netns=ns)}
        assert by_name[netns_veth.peer_if].prog_id == prog_id(b)
        netlink.detach_xdp(idx, SKB, netns=ns)
    assert netlink.read_xdp(idx, netns=ns).attached == 0
    assert oracle(netns_veth.peer_if, ns) is None


def test_attach_unknown_ifindex_is_interface_error() -> None:
    with load_xdp(uapi.XDP_PASS) as a, pytest.raises(InterfaceError):
        netlink.attach_xdp(0x7FFFFFF0, a.fd, SKB)


def test_attach_bad_fd_is_netlink_error(netns_veth: VethNs) -> None:
    fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(NetlinkOpError) as ei:
            netlink.attach_xdp(netns_veth.host_ifindex, fd, SKB)
    finally:
        os.close(fd)
    assert ei.value.errno == errno.EINVAL and ei.value.subject == netns_veth.host_if


@pytest.mark.parametrize("mode", [SKB, DRV], ids=["skb", "native"])
def test_drop_then_pass_real_packets(netns_veth: VethNs, mode: int) -> None:
    """XDP_DROP on the root-ns end blocks ping from inside the netns; XDP_PASS lets it by."""
    v = netns_veth
    assert nettools.ping(v.host_ip, netns=v.netns, count=1, timeout=2)
    with load_xdp(uapi.XDP_DROP, "xdpd_drop") as drop, load_xdp(uapi.XDP_PASS) as ok:
        netlink.attach_xdp(v.host_ifindex, drop.fd, mode)
        try:
            assert not nettools.ping(v.host_ip, netns=v.netns, count=2, timeout=1)
            netlink.attach_xdp(v.host_ifindex, ok.fd, mode, expected_fd=drop.fd)
            assert nettools.ping(v.host_ip, netns=v.netns, count=1, timeout=2)
        finally:
            netlink.detach_xdp(v.host_ifindex, mode)
