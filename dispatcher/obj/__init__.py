"""obj: BPF object files, pure.

Rule: bytes in, frozen values out. Imports only the base (errors, record, uapi) and its
own modules; never ``dispatcher.kernel`` or anything that makes a system call. ELF and
BTF reading, instruction decoding, relocation and linking of one program, global
variables, run-config metadata.
"""
