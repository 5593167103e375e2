"""Who may change XDP state: root, or CAP_SYS_ADMIN, or CAP_BPF + CAP_NET_ADMIN."""

from __future__ import annotations

import os

from dispatcher.errors import PrivilegeError

_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21
_CAP_BPF = 39


def require_root(action: str) -> None:
    """Raise PrivilegeError naming ``action`` unless this process may load and attach."""
    if os.geteuid() == 0:
        return
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    if caps & (1 << _CAP_SYS_ADMIN) or (
                            caps & (1 << _CAP_BPF) and caps & (1 << _CAP_NET_ADMIN)):
                        return
    except OSError:
        pass
    raise PrivilegeError(f"{action} needs root (or CAP_BPF + CAP_NET_ADMIN); run it with sudo")
