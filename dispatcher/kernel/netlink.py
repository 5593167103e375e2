"""XDP attach state over rtnetlink: the only module that imports pyroute2.

pyroute2 builds and parses the messages (its message classes and parser, imported
lazily: not its asyncio socket layer, see ``_Pyroute2``). Every socket has
NETLINK_EXT_ACK set so kernel refusals carry the kernel's own explanation, which
ends up in ``NetlinkOpError.detail``. A socket for another network namespace is
created inside it (setns on this thread only): a missing namespace is an error,
never silently created.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dispatcher import caches, uapi
from dispatcher.errors import InterfaceError, NetlinkOpError
from dispatcher.record import record

# Re-exported: the attach flags and states are part of this module's interface (__all__).
from dispatcher.uapi import XDP_ATTACHED_DRV as XDP_ATTACHED_DRV
from dispatcher.uapi import XDP_ATTACHED_HW as XDP_ATTACHED_HW
from dispatcher.uapi import XDP_ATTACHED_MULTI as XDP_ATTACHED_MULTI
from dispatcher.uapi import XDP_ATTACHED_NONE as XDP_ATTACHED_NONE
from dispatcher.uapi import XDP_ATTACHED_SKB as XDP_ATTACHED_SKB
from dispatcher.uapi import XDP_FLAGS_DRV_MODE as XDP_FLAGS_DRV_MODE
from dispatcher.uapi import XDP_FLAGS_HW_MODE as XDP_FLAGS_HW_MODE
from dispatcher.uapi import XDP_FLAGS_MASK as XDP_FLAGS_MASK
from dispatcher.uapi import XDP_FLAGS_MODES as XDP_FLAGS_MODES
from dispatcher.uapi import XDP_FLAGS_REPLACE as XDP_FLAGS_REPLACE
from dispatcher.uapi import XDP_FLAGS_SKB_MODE as XDP_FLAGS_SKB_MODE
from dispatcher.uapi import XDP_FLAGS_UPDATE_IF_NOEXIST as XDP_FLAGS_UPDATE_IF_NOEXIST

__all__ = [
    "MODES", "XDP_FLAGS_DRV_MODE", "XDP_FLAGS_HW_MODE", "XDP_FLAGS_MASK", "XDP_FLAGS_MODES",
    "XDP_FLAGS_REPLACE", "XDP_FLAGS_SKB_MODE", "XDP_FLAGS_UPDATE_IF_NOEXIST", "XdpState",
    "LinkEvent", "LinkMonitor", "MonitorOverrun", "attach_xdp", "detach_xdp", "ifindex_of", "list_links", "read_xdp", "read_xdp_by_name",
]

#: User-facing attach mode names -> XDP_FLAGS_* mode bit.
MODES: dict[str, int] = {
    "native": XDP_FLAGS_DRV_MODE,
    "skb": XDP_FLAGS_SKB_MODE,
    "hw": XDP_FLAGS_HW_MODE,
    "unspecified": 0,
}

# pyroute2 decodes IFLA_XDP_ATTACHED to these names
_ATTACHED_FROM_PYROUTE2: dict[object, int] = {
    None: XDP_ATTACHED_NONE, "xdp": XDP_ATTACHED_DRV, "xdpgeneric": XDP_ATTACHED_SKB,
    "xdpoffload": XDP_ATTACHED_HW, "xdpmulti": XDP_ATTACHED_MULTI,
}
_MODE_NAMES = {XDP_ATTACHED_DRV: "native", XDP_ATTACHED_SKB: "skb", XDP_ATTACHED_HW: "hw",
               XDP_ATTACHED_MULTI: "multi"}

NETNS_RUN_DIR = "/var/run/netns"

_IFNAME_RE = re.compile(rf"^[^/\s:]{{1,{uapi.IFNAMSIZ - 1}}}$")


@record
class XdpState:
    """What IFLA_XDP reports for one interface (ids are 0 when absent)."""

    ifindex: int
    ifname: str
    attached: int
    prog_id: int
    drv_prog_id: int
    skb_prog_id: int
    hw_prog_id: int

    @property
    def mode_name(self) -> str | None:
        """'native', 'skb', 'hw', 'multi' or None when nothing is attached."""
        return _MODE_NAMES.get(self.attached)


def _where(netns: str | None) -> str:
    return f" in network namespace '{netns}'" if netns else ""


def _light_pyroute2() -> None:
    """Make ``pyroute2`` importable without running its umbrella ``__init__``.

    ``import pyroute2`` imports every subsystem (NDB, IPDB, conntrack, ipset, …): about
    100 ms here and several seconds on slow filesystems (9p in our test VMs), while we
    need only its netlink message classes. We register the bare package so that submodules
    import on their own; any other top-level name asked of it later runs the real
    ``__init__`` at that moment, so other users of pyroute2 see the full package.
    """
    if "pyroute2" in sys.modules:
        return
    import importlib
    import importlib.util
    import types

    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    pkg = types.ModuleType("pyroute2")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    pkg.__file__ = spec.origin
    pkg.__package__ = "pyroute2"
    loader = spec.loader

    def full(name: str) -> Any:
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")
        del pkg.__dict__["__getattr__"]
        loader.exec_module(pkg)
        return getattr(pkg, name)

    setattr(pkg, "__getattr__", full)  # noqa: B010  (module-level __getattr__, PEP 562)
    sys.modules["pyroute2"] = pkg


# rtnetlink plumbing (linux/rtnetlink.h, linux/netlink.h; link attributes: dispatcher.uapi)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTMGRP_LINK = 1            # RTNLGRP_LINK (1) as a bit of the bind() group mask
RTEXT_FILTER_SKIP_STATS = 1 << 3
NETLINK_ROUTE, SOL_NETLINK, NETLINK_EXT_ACK = 0, 270, 11
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_DUMP = 1, 2, 4, 0x10, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
_RECV_BUF = 1 << 18
_DUMP_TRIES = 5


class _Pyroute2:
    """pyroute2's netlink message classes and parser, without its socket layer.

    pyroute2's sockets (``IPRoute`` and below) run on asyncio and open sockets in other
    namespaces from a forked child: importing them costs more than everything else a
    command does. Messages are still built, parsed and turned into ``NetlinkError``
    (with the kernel's extack text) by pyroute2; this module only moves the bytes.
    """

    def __init__(self) -> None:
        _light_pyroute2()
        from pyroute2.netlink import (  # type: ignore[import-untyped, unused-ignore]
            NLA_F_NESTED,
            nla,
            nlmsg,
        )
        from pyroute2.netlink.exceptions import (  # type: ignore[import-untyped, unused-ignore]
            NetlinkError,
        )
        from pyroute2.netlink.marshal import (  # type: ignore[import-untyped, unused-ignore]
            Marshal,
        )

        class xdp_nla(nla):  # type: ignore[misc]  # noqa: N801  (pyroute2's naming)
            nla_flags = NLA_F_NESTED
            prefix = "IFLA_XDP_"
            nla_map = ((uapi.IFLA_XDP_UNSPEC, "IFLA_XDP_UNSPEC", "none"),
                       (uapi.IFLA_XDP_FD, "IFLA_XDP_FD", "int32"),
                       (uapi.IFLA_XDP_ATTACHED, "IFLA_XDP_ATTACHED", "uint8"),
                       (uapi.IFLA_XDP_FLAGS, "IFLA_XDP_FLAGS", "uint32"),
                       (uapi.IFLA_XDP_PROG_ID, "IFLA_XDP_PROG_ID", "uint32"),
                       (uapi.IFLA_XDP_DRV_PROG_ID, "IFLA_XDP_DRV_PROG_ID", "uint32"),
                       (uapi.IFLA_XDP_SKB_PROG_ID, "IFLA_XDP_SKB_PROG_ID", "uint32"),
                       (uapi.IFLA_XDP_HW_PROG_ID, "IFLA_XDP_HW_PROG_ID", "uint32"),
                       (uapi.IFLA_XDP_EXPECTED_FD, "IFLA_XDP_EXPECTED_FD", "int32"))

        class ifinfmsg(nlmsg):  # type: ignore[misc]  # noqa: N801
            """struct ifinfomsg with only the attributes read or written here."""

            prefix = "IFLA_"
            fields = (("family", "B"), ("__align", "x"), ("ifi_type", "H"), ("index", "i"),
                      ("flags", "I"), ("change", "I"))
            nla_map = ((uapi.IFLA_IFNAME, "IFLA_IFNAME", "asciiz"),
                       (uapi.IFLA_EXT_MASK, "IFLA_EXT_MASK", "uint32"),
                       (uapi.IFLA_XDP, "IFLA_XDP", "xdp"))
            xdp = xdp_nla

        class RtMarshal(Marshal):  # type: ignore[misc]
            msg_map = {RTM_NEWLINK: ifinfmsg, RTM_DELLINK: ifinfmsg}

        self.ifinfmsg = ifinfmsg
        self.marshal_cls = RtMarshal
        self.NetlinkError: type[Exception] = NetlinkError


_P2: _Pyroute2 | None = None


def _pyroute2() -> _Pyroute2:
    global _P2
    if _P2 is None:
        _P2 = _Pyroute2()
    return _P2


def _forget_pyroute2() -> None:
    global _P2
    _P2 = None


caches.register("kernel.netlink.pyroute2_classes", _forget_pyroute2)


class _Rtnl:
    """One NETLINK_ROUTE socket (with extended ack), requests answered synchronously."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.p2 = _pyroute2()
        self.marshal = self.p2.marshal_cls()
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, msg_type: int, flags: int, fields: dict[str, int],
                attrs: list[tuple[str, Any]]) -> list[Any]:
        """Send one message; the replies (none for a plain ack). Errors raise NetlinkError."""
        self.seq += 1
        seq = self.seq
        msg = self.p2.ifinfmsg()
        for k, v in fields.items():
            msg[k] = v
        msg["attrs"] = attrs
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags | NLM_F_REQUEST
        msg["header"]["sequence_number"] = seq
        msg.encode()
        self.sock.send(msg.data)
        out: list[Any] = []
        while True:
            data, _anc, rflags, _addr = self.sock.recvmsg(_RECV_BUF)
            if rflags & socket.MSG_TRUNC:
                raise OSError(errno.EMSGSIZE, "netlink reply larger than the receive buffer")
            for m in self.marshal.parse(data, seq):
                hdr = m["header"]
                if hdr["sequence_number"] != seq:
                    continue
                if hdr["error"] is not None:
                    raise hdr["error"]
                if hdr["type"] in (NLMSG_DONE, NLMSG_ERROR):
                    return out
                out.append(m)
                if not hdr["flags"] & NLM_F_MULTI:
                    return out

    def link(self, *, index: int = 0, ifname: str | None = None) -> Any:
        attrs: list[tuple[str, Any]] = [("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
        if ifname is not None:
            attrs.append(("IFLA_IFNAME", ifname))
        return self.request(RTM_GETLINK, 0, {"index": index}, attrs)[0]

    def links(self) -> list[Any]:
        for _ in range(_DUMP_TRIES):
            msgs = self.request(RTM_GETLINK, NLM_F_DUMP, {},
                                [("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)])
            if not any(m["header"]["flags"] & NLM_F_DUMP_INTR for m in msgs):
                break
        return msgs

    def set_xdp(self, index: int, attrs: list[tuple[str, int]]) -> None:
        self.request(RTM_SETLINK, NLM_F_ACK, {"index": index}, [("IFLA_XDP", {"attrs": attrs})])


def netns_path(netns: str) -> str:
    """Where a namespace is: a path as is, a bare name in /var/run/netns (as `ip netns`)."""
    return netns if os.path.dirname(netns) else os.path.join(NETNS_RUN_DIR, netns)


def _open_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    except OSError:  # kernels before 4.12: no extack texts, errors still arrive
        pass
    return sock


def _socket_in(netns: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket of ``netns`` (None: this thread's namespace)."""
    try:
        if netns:
            from dispatcher.kernel import netns as ns  # setns: only for another namespace

            with ns.entered(netns_path(netns)):
                return _open_socket()
        return _open_socket()
    except FileNotFoundError as exc:
        raise InterfaceError(f"unknown network namespace '{netns}'",
                             hint="list them with `ip netns list`") from exc
    except OSError as exc:
        raise NetlinkOpError("open rtnetlink socket", exc.errno or errno.EIO,
                             subject=f"netns {netns}" if netns else "") from exc


@contextmanager
def _socket(netns: str | None) -> Iterator[_Rtnl]:
    ipr = _Rtnl(_socket_in(netns))
    try:
        yield ipr
    finally:
        ipr.close()


def _extack(exc: BaseException) -> tuple[int, str]:
    """(errno, kernel extack text or '') from a pyroute2 NetlinkError / OSError."""
    code = getattr(exc, "code", None)
    if code is None:
        code = getattr(exc, "errno", None) or errno.EIO
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    text = str(args[1]) if len(args) > 1 and args[1] is not None else ""
    if text == os.strerror(code):
        text = ""
    return int(code), text


def _attr(msg: Any, name: str, default: Any = None) -> Any:
    value = msg.get_attr(name)
    return default if value is None else value


def _state(msg: Any) -> XdpState:
    xdp = msg.get_attr("IFLA_XDP")
    attached, prog, drv, skb, hw = XDP_ATTACHED_NONE, 0, 0, 0, 0
    if xdp is not None:
        raw = xdp.get_attr("IFLA_XDP_ATTACHED")
        attached = raw if isinstance(raw, int) else _ATTACHED_FROM_PYROUTE2.get(raw, 0)
        prog = int(_attr(xdp, "IFLA_XDP_PROG_ID", 0))
        drv = int(_attr(xdp, "IFLA_XDP_DRV_PROG_ID", 0))
        skb = int(_attr(xdp, "IFLA_XDP_SKB_PROG_ID", 0))
        hw = int(_attr(xdp, "IFLA_XDP_HW_PROG_ID", 0))
        # Single-mode attachments report only IFLA_XDP_PROG_ID on some kernels.
        if attached == XDP_ATTACHED_DRV and not drv:
            drv = prog
        elif attached == XDP_ATTACHED_SKB and not skb:
            skb = prog
        elif attached == XDP_ATTACHED_HW and not hw:
            hw = prog
    return XdpState(ifindex=int(msg["index"]), ifname=str(_attr(msg, "IFLA_IFNAME", "")),
                    attached=attached, prog_id=prog, drv_prog_id=drv, skb_prog_id=skb,
                    hw_prog_id=hw)


def _check_ifname(name: str, netns: str | None) -> None:
    if not isinstance(name, str) or not _IFNAME_RE.match(name):
        raise InterfaceError(f"invalid interface name {name!r}{_where(netns)}",
                             hint="interface names have 1-15 characters, no '/', ':' or spaces")


def ifindex_of(name: str, netns: str | None = None) -> int:
    """The ifindex of interface ``name`` (in ``netns`` if given)."""
    return read_xdp_by_name(name, netns).ifindex


def read_xdp_by_name(name: str, netns: str | None = None) -> XdpState:
    """XDP state of interface ``name``: ``read_xdp(ifindex_of(name))`` in one request."""
    _check_ifname(name, netns)
    with _socket(netns) as ipr:
        NetlinkError = ipr.p2.NetlinkError
        try:
            msg = ipr.link(ifname=name)
        except NetlinkError as exc:
            code, text = _extack(exc)
            if code == errno.ENODEV:
                raise InterfaceError(f"unknown interface '{name}'{_where(netns)}") from exc
            raise NetlinkOpError("RTM_GETLINK", code, subject=name, detail=text) from exc
        except OSError as exc:
            raise NetlinkOpError("RTM_GETLINK", exc.errno or errno.EIO, subject=name) from exc
    return _state(msg)


class MonitorOverrun(Exception):
    """Notifications were lost (the socket's buffer overflowed): re-read everything."""


@record
class LinkEvent:
    """One RTM_NEWLINK (``gone`` False) or RTM_DELLINK notification."""

    netns: str | None
    gone: bool
    state: XdpState


class LinkMonitor:
    """The link notifications (RTNLGRP_LINK: RTM_NEWLINK, RTM_DELLINK) of one network
    namespace, on a non-blocking socket to poll: interfaces that appear, change (their
    XDP program included: IFLA_XDP is in every RTM_NEWLINK) or disappear."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.sock = _socket_in(netns)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.sock.bind((0, RTMGRP_LINK))
            self.sock.setblocking(False)
        except OSError as exc:
            self.sock.close()
            raise NetlinkOpError("subscribe to link notifications", exc.errno or errno.EIO,
                                 subject=f"netns {netns}" if netns else "") from exc
        self.marshal = _pyroute2().marshal_cls()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def read(self) -> list[LinkEvent]:
        """Every notification queued now (none: an empty list). MonitorOverrun if some
        were lost."""
        out: list[LinkEvent] = []
        while True:
            try:
                data = self.sock.recv(_RECV_BUF)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    raise MonitorOverrun(self.netns) from exc
                raise
            for m in self.marshal.parse(data):
                t = m["header"]["type"]
                if t in (RTM_NEWLINK, RTM_DELLINK):
                    out.append(LinkEvent(self.netns, t == RTM_DELLINK, _state(m)))


def list_links(netns: str | None = None) -> list[XdpState]:
    """XDP state of every interface (one RTM_GETLINK dump), sorted by ifindex."""
    with _socket(netns) as ipr:
        NetlinkError = ipr.p2.NetlinkError
        try:
            msgs = ipr.links()
        except (NetlinkError, OSError) as exc:
            code, text = _extack(exc)
            raise NetlinkOpError("RTM_GETLINK", code, subject=f"dump{_where(netns)}",
                                 detail=text) from exc
    return sorted((_state(m) for m in msgs), key=lambda s: s.ifindex)


def read_xdp(ifindex: int, netns: str | None = None) -> XdpState:
    """XDP state of one interface."""
    with _socket(netns) as ipr:
        NetlinkError = ipr.p2.NetlinkError
        try:
            msg = ipr.link(index=ifindex)
        except (NetlinkError, OSError) as exc:
            code, text = _extack(exc)
            if code == errno.ENODEV:
                raise InterfaceError(f"no interface with index {ifindex}{_where(netns)}") \
                    from exc
            raise NetlinkOpError("RTM_GETLINK", code, subject=f"ifindex {ifindex}",
                                 detail=text) from exc
    return _state(msg)


def _ifname(ipr: _Rtnl, ifindex: int) -> str:
    """Best-effort name for error messages."""
    try:
        name = ipr.link(index=ifindex).get_attr("IFLA_IFNAME")
        return str(name) if name else f"ifindex {ifindex}"
    except Exception:  # only for the message
        return f"ifindex {ifindex}"


def _hint(code: int, flags: int) -> str | None:
    if code == errno.EBUSY and flags & XDP_FLAGS_UPDATE_IF_NOEXIST:
        return "another XDP program is already attached in this mode"
    if code == errno.EBUSY:
        return "a bpf_link owns the XDP hook of this interface"
    if code == errno.EEXIST and flags & XDP_FLAGS_REPLACE:
        return "the attached program changed under us (expected fd does not match)"
    if code == errno.EEXIST:
        return "a program is attached in another mode; native and skb cannot be mixed"
    if code == errno.EOPNOTSUPP:
        return "the driver has no native XDP support; try skb mode"
    if code == errno.ERANGE:
        return "the MTU is too large for native XDP without multi-buffer (frags) support"
    return None


def _setlink(ifindex: int, attrs: list[tuple[str, int]], flags: int,
             netns: str | None) -> None:
    with _socket(netns) as ipr:
        NetlinkError = ipr.p2.NetlinkError
        try:
            ipr.set_xdp(ifindex, attrs)
        except (NetlinkError, OSError) as exc:
            code, text = _extack(exc)
            if code == errno.ENODEV:
                raise InterfaceError(f"no interface with index {ifindex}{_where(netns)}") \
                    from exc
            subject = _ifname(ipr, ifindex) + (f" (netns {netns})" if netns else "")
            raise NetlinkOpError("RTM_SETLINK", code, subject=subject, detail=text,
                                 hint=_hint(code, flags)) from exc


def attach_xdp(ifindex: int, prog_fd: int, mode_flags: int, *,
               expected_fd: int | None = None, no_exist: bool = False,
               netns: str | None = None) -> None:
    """Attach ``prog_fd`` to the XDP hook of ``ifindex`` through netlink.

    ``mode_flags`` is one of XDP_FLAGS_SKB_MODE / DRV_MODE / HW_MODE or 0.
    ``expected_fd``: atomic replace (XDP_FLAGS_REPLACE + IFLA_XDP_EXPECTED_FD);
    a different current program fails with NetlinkOpError errno EEXIST.
    ``no_exist``: fail with EBUSY if a program is already attached.
    The kernel keeps its own reference: ``prog_fd`` may be closed afterwards.
    """
    flags = mode_flags
    attrs: list[tuple[str, int]] = [("IFLA_XDP_FD", prog_fd)]
    if expected_fd is not None:
        flags |= XDP_FLAGS_REPLACE
        attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
    if no_exist:
        flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
    attrs.append(("IFLA_XDP_FLAGS", flags))
    _setlink(ifindex, attrs, flags, netns)


def detach_xdp(ifindex: int, mode_flags: int, *, expected_fd: int | None = None,
               netns: str | None = None) -> None:
    """Detach the XDP program of ``ifindex``.

    ``mode_flags`` must be the mode the program was attached in: the kernel
    silently does nothing for another mode. With ``expected_fd`` the detach only
    happens if that program is the attached one (EEXIST otherwise).
    """
    flags = mode_flags
    attrs: list[tuple[str, int]] = [("IFLA_XDP_FD", -1)]
    if expected_fd is not None:
        flags |= XDP_FLAGS_REPLACE
        attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
    attrs.append(("IFLA_XDP_FLAGS", flags))
    _setlink(ifindex, attrs, flags, netns)
