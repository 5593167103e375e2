"""Our v3 dispatcher object (dispatcher/bpf/dispatcher_v3.o) on this kernel.

Loading and attaching a dispatcher needs no freplace, so this runs on the host: a
device-bound v3 dispatcher (BPF_F_XDP_DEV_BOUND_ONLY + prog_ifindex, as libxdp >= 1.6
loads one), the kernel's rules for it, and how `status` reads it."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dispatcher.chain import protocol
from dispatcher.errors import KernelError
from dispatcher.kernel import bpf, loader, netlink
from dispatcher.obj.elf import read_object
from tests.host import nettools

V3_OBJECT = os.path.join(os.path.dirname(protocol.__file__), "..", "bpf", "dispatcher_v3.o")


# Device binding of XDP programs: Linux 6.3; with frags: 6.7.
pytestmark = pytest.mark.skipif(loader.kernel_version() < (6, 7),
                                reason="device-bound XDP with frags needs Linux >= 6.7")


@contextmanager
def v3_dispatcher(ifindex: int, devbound: bool, frags: bool = False) -> Iterator[loader.Program]:
    """A loaded one-slot v3 dispatcher (no component: its stub lets packets pass), loaded
    with BPF_F_XDP_DEV_BOUND_ONLY when ``devbound`` and prog_ifindex ``ifindex``."""
    spec = read_object(V3_OBJECT)
    assert spec.dispatcher_version == 3
    cfg = protocol.encode_config(3, [50], [1 << 2], [0], frags=frags, devbound=devbound)
    flags = (protocol.BPF_F_XDP_DEV_BOUND_ONLY if devbound else 0) | (
        protocol.BPF_F_XDP_HAS_FRAGS if frags else 0)
    with loader.open_object(spec, only_maps=[".rodata"], data_overrides={".rodata": cfg}) as lo:
        p = loader.load_program(lo, spec.program(name=protocol.DISPATCHER_NAME), prog_flags=flags,
                                prog_ifindex=ifindex)
        with p.fd:
            yield p


def test_devbound_v3_dispatcher_is_read_as_v3(netns_veth: nettools.VethNs, private: str) -> None:
    from tests.host.test_chain import status

    v = netns_veth
    with v3_dispatcher(v.host_ifindex, devbound=True, frags=True) as p:
        info = bpf.prog_info(p.fd.fd)
        netlink.attach_xdp(v.host_ifindex, p.fd.fd, netlink.XDP_FLAGS_DRV_MODE)
        try:
            st = status(v.host_if)
        finally:
            netlink.detach_xdp(v.host_ifindex, netlink.XDP_FLAGS_DRV_MODE)
    assert st["kind"] == "dispatcher" and st["dispatcher_version"] == 3
    assert st["dispatcher"] == {"id": info.id, "version": 3, "frags": True, "devbound": True}
    assert st["libxdp"]["reads"] == {"first": "1.6.0", "last": None}
    assert "XDP_ATTACH_DEVBIND" in st["libxdp"]["note"]


def test_kernel_rules_for_a_devbound_dispatcher(netns_veth: nettools.VethNs, private: str) -> None:
    v = netns_veth
    with v3_dispatcher(v.host_ifindex, devbound=True) as p:
        # generic (skb) mode refuses device-bound programs (Linux >= 6.14; older kernels
        # accept them there, so only the newer rule is asserted)
        try:
            netlink.attach_xdp(v.host_ifindex, p.fd.fd, netlink.XDP_FLAGS_SKB_MODE)
        except KernelError as e:
            assert e.errno == errno.EINVAL and "generic mode" in e.detail
        else:
            netlink.detach_xdp(v.host_ifindex, netlink.XDP_FLAGS_SKB_MODE)
            assert loader.kernel_version() < (6, 14), "skb mode accepted a device-bound program"
        # BPF_PROG_TEST_RUN refuses them: test device-bound chains with real packets
        with pytest.raises(KernelError) as e:
            bpf.prog_test_run(p.fd.fd, bytes(64))
        assert e.value.errno == errno.EINVAL
    # BPF_F_XDP_DEV_BOUND_ONLY without prog_ifindex binds nothing (the kernel keys the
    # binding on the ifindex): such a program attaches in skb mode like any other.
    with v3_dispatcher(0, devbound=True) as p:
        netlink.attach_xdp(v.host_ifindex, p.fd.fd, netlink.XDP_FLAGS_SKB_MODE)
        netlink.detach_xdp(v.host_ifindex, netlink.XDP_FLAGS_SKB_MODE)


def test_our_loader_binds_a_v3_dispatcher_to_an_interface_of_another_netns(
        netns_veth: nettools.VethNs, private: str) -> None:
    """What the freplace back-end does for a device-bound chain under --netns: the
    dispatcher is loaded inside the namespace, where prog_ifindex names the interface."""
    import dispatcher
    from dispatcher.chain.freplace import backend, program

    v = netns_veth
    with backend._in_netns(v.netns):
        disp = program.load_dispatcher([50], [1 << 2], [0], frags=False, version=3,
                                       devbound=True, ifindex=v.peer_ifindex)
    with disp:
        netlink.attach_xdp(v.peer_ifindex, disp.fd, netlink.XDP_FLAGS_DRV_MODE, netns=v.netns)
        try:
            (st,) = dispatcher.status(v.peer_if, netns=v.netns)
        finally:
            netlink.detach_xdp(v.peer_ifindex, netlink.XDP_FLAGS_DRV_MODE, netns=v.netns)
    assert st.kind == "dispatcher" and st.config is not None
    assert (st.config.version, st.config.is_xdp_devbound, st.config.size) == (3, True, 128)
    assert st.config.program_flags[0] == protocol.BPF_F_XDP_DEV_BOUND_ONLY
