"""Exception hierarchy of xdp-dispatch.

Only ``cli.py`` turns these into messages and exit codes. Every error carries a
one-line ``message`` and an optional ``hint``; kernel errors keep the errno and
the operation that failed.
"""

from __future__ import annotations

import errno as _errno
import os


class XdpDispatchError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(XdpDispatchError):
    """Bad command-line usage or a request that makes no sense."""

    exit_code = 2


class ConfigError(XdpDispatchError):
    """YAML / schema / semantic problems of a config file."""

    exit_code = 2


class ObjectFileError(XdpDispatchError):
    """A BPF object file that cannot be read: names the file (and section/symbol)."""

    exit_code = 2


def errno_name(code: int) -> str:
    return _errno.errorcode.get(code, f"E{code}")


class KernelError(XdpDispatchError):
    """A bpf(2) or netlink request the kernel refused."""

    exit_code = 1

    def __init__(self, op: str, err: int, subject: str = "", detail: str = "",
                 hint: str | None = None) -> None:
        self.op = op
        self.errno = err
        self.subject = subject
        self.detail = detail
        parts = [p for p in (subject, op) if p]
        msg = ": ".join(parts) + f": {os.strerror(err)} ({errno_name(err)})" if parts else \
            f"{os.strerror(err)} ({errno_name(err)})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg, hint)


class VerifierError(KernelError):
    """The verifier rejected a program. ``log`` holds the whole verifier log."""

    def __init__(self, op: str, err: int, subject: str, log: str,
                 hint: str | None = None) -> None:
        self.log = log
        self.log_lines = [ln for ln in log.splitlines() if ln.strip()]
        super().__init__(op, err, subject, summarize_log(self.log_lines), hint)


def summarize_log(lines: list[str], keep: int = 3) -> str:
    """Last meaningful verifier lines (statistics lines dropped)."""
    meaningful = [ln for ln in lines
                  if not ln.startswith(("processed ", "verification time", "stack depth"))]
    if not meaningful:
        meaningful = lines
    tail = meaningful[-keep:]
    omitted = len(meaningful) - len(tail)
    text = " | ".join(s.strip() for s in tail)
    if omitted > 0:
        text += f" ({omitted} earlier log line(s) omitted; -v or --verifier-log FILE shows all)"
    return text


class NotSupportedError(KernelError):
    """A conclusive probe said the kernel lacks a feature."""

    exit_code = 3


class PrivilegeError(XdpDispatchError):
    """Not root / missing capabilities / bpffs unavailable to us."""

    exit_code = 1


class NetlinkOpError(KernelError):
    """RTM_SETLINK/GETLINK failure; ``detail`` carries the kernel's extack text."""


class ConflictError(XdpDispatchError):
    """The interface or its pins changed under us (retryable)."""

    exit_code = 4


class ForeignStateError(XdpDispatchError):
    """Something that is not ours is in the way; refuse unless forced."""

    exit_code = 5


class InterfaceError(XdpDispatchError):
    """Unknown interface or network namespace."""

    exit_code = 2
