"""kernel: thin I/O, one concern per module.

Rule: imports only ``obj`` and the base; knows nothing of chains or config files.
``bpf`` is the only caller of bpf(2) (ctypes), ``netlink`` the only importer of pyroute2,
``bpffs`` the only code that walks a BPF filesystem; every fd is an ``OwnedFd``.
``loader`` turns an object's specs into kernel maps and programs; ``probes`` caches
conclusive feature answers.
"""
