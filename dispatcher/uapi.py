"""Kernel numbers (placeholder until the full table lands)."""
BPF_F_RDONLY_PROG = 0x80
BPF_F_XDP_HAS_FRAGS = 0x20
BPF_F_XDP_DEV_BOUND_ONLY = 0x40
