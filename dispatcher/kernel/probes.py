"""Kernel feature probes: tri-state, cached for the process only when conclusive.

Each probe answers ``Probe(supported=True|False, detail)`` when the kernel gave a
clear answer, or raises ``KernelError`` ("detect support for X") when it could
not tell (e.g. out of memory); such answers are never cached.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence

from dispatcher import caches, uapi
from dispatcher.errors import KernelError, XdpDispatchError
from dispatcher.kernel import bpf, packet_changes
from dispatcher.kernel import bpffs as kbpffs
from dispatcher.record import record

_CONCLUSIVE_NO = {errno.EPERM, errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP, 524, errno.EACCES}


@record
class Probe:
    name: str
    supported: bool
    detail: str = ""
    min_kernel: str = ""

    def to_json(self) -> dict[str, object]:
        return {"supported": self.supported, "detail": self.detail, "min_kernel": self.min_kernel}


_cache: dict[str, Probe] = {}
caches.register("kernel.probes.results", _cache.clear)


def cached(name: str, min_kernel: str, fn: Callable[[], str]) -> Probe:
    """The probe ``name``: ``fn()`` (its detail) or the kernel's conclusive refusal, cached."""
    if name in _cache:
        return _cache[name]
    try:
        detail = fn()
        p = Probe(name, True, detail, min_kernel)
    except KernelError as e:
        if e.errno not in _CONCLUSIVE_NO:
            raise KernelError(e.op, e.errno, subject=f"detect support for {name}",
                              detail=e.detail) from None
        p = Probe(name, False, f"{e.op}: {errno.errorcode.get(e.errno, e.errno)}"
                  + (f" ({e.detail})" if e.detail else ""), min_kernel)
    _cache[name] = p
    return p


# Trivial program bodies.
_XDP_PASS = bytes.fromhex("b700000002000000" "9500000000000000")


def frags() -> Probe:
    def run() -> str:
        with bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, _XDP_PASS, "GPL", name="probe_frags",
                           prog_flags=uapi.BPF_F_XDP_HAS_FRAGS):
            return "XDP program with BPF_F_XDP_HAS_FRAGS loads"
    return cached("frags", "5.18", run)


def xdp_link() -> Probe:
    def run() -> str:
        # An XDP_PASS link on the loopback in skb mode, closed at once (which detaches it).
        # EBUSY/EEXIST means the hook is taken, but the kernel knows XDP links.
        with bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, _XDP_PASS, "GPL", name="probe_link") as p:
            try:
                link = bpf.link_create(p.fd, 1, uapi.BPF_XDP, flags=uapi.XDP_FLAGS_SKB_MODE)
                link.close()
            except KernelError as e:
                if e.errno not in (errno.EBUSY, errno.EEXIST):
                    raise
        return "BPF_LINK_CREATE knows BPF_XDP"
    return cached("bpf_link_xdp", "5.9", run)


def pkt_changing_stubs() -> Probe:
    """Whether the kernel checks that an extension changing packet data replaces a function
    that does too (6.13, 6.12.26). Our stubs satisfy it either way."""
    rel = os.uname().release
    checks = ("checks it (by its release): libxdp before 1.5.5 cannot re-attach them here"
              if packet_changes.kernel_checks(rel) else "does not check it (by its release)")
    return Probe("packet_changing_stubs", True,
                 "not probed: our stubs call bpf_xdp_adjust_tail(ctx, 0), so extensions that "
                 f"change packet data are accepted; this kernel ({rel}) {checks}", "6.13")


def bpffs(root: str) -> Probe:
    ok = kbpffs.is_bpffs(root)
    return Probe("bpffs", ok, f"{root} {'is' if ok else 'is not'} a BPF filesystem")


def interface_modes(iface: str, netns: str | None = None) -> dict[str, object]:
    """Which XDP attach modes ``iface`` accepts. Probed by attaching an XDP_PASS program
    (native, then hw) and detaching it at once; only when nothing is attached."""
    from dispatcher.kernel import netlink  # pyroute2: only to probe an interface

    ifindex = netlink.ifindex_of(iface, netns=netns)
    xs = netlink.read_xdp(ifindex, netns=netns)
    out: dict[str, object] = {"name": iface, "ifindex": ifindex, "skb": True,
                              "attached_mode": xs.mode_name}
    if xs.prog_id or xs.hw_prog_id:
        out["native"] = None
        out["hw"] = None
        out["detail"] = "a program is attached: native/hw not probed (unknown)"
        return out
    with bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, _XDP_PASS, "GPL", name="probe_mode") as p:
        for mode, flag in (("native", uapi.XDP_FLAGS_DRV_MODE), ("hw", uapi.XDP_FLAGS_HW_MODE)):
            try:
                netlink.attach_xdp(ifindex, p.fd, flag, no_exist=True, netns=netns)
            except XdpDispatchError:
                out[mode] = False
                continue
            netlink.detach_xdp(ifindex, flag, netns=netns)
            out[mode] = True
    return out


def remember(p: Probe) -> None:
    """Cache a conclusive answer found by another probe."""
    _cache[p.name] = p


def known(name: str) -> Probe | None:
    return _cache.get(name)


def all_probes(root: str, first: Sequence[Callable[[], Probe]] = ()) -> dict[str, Probe]:
    """Every probe's answer (``first``: the chain layer's, listed before the kernel's)."""
    out = {}
    for fn in (*first, frags, xdp_link, pkt_changing_stubs):
        try:
            p = fn()
        except XdpDispatchError as e:
            p = Probe(fn.__name__, False, f"inconclusive: {e.message}")
        out[p.name] = p
    out["bpffs"] = bpffs(root)
    return out
