"""Our loader against the kernel, with bpftool/libbpf as the oracle."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess

import pytest

from dispatcher.errors import ObjectFileError, VerifierError
from dispatcher.kernel import bpf, loader
from dispatcher.obj.elf import read_object
from dispatcher.obj.link import extern_problem
from dispatcher.uapi import BPF_PROG_TYPE_XDP
from tests.objects import all_objects, example, ids
from tests.packets import icmp_echo, udp_packet

pytestmark = pytest.mark.host_kernel

# Not loadable as XDP on their own: xdp_reject.o (refused by the verifier, on purpose),
# Debian's xdpdump_bpf.o, which holds only fentry/fexit programs (xdpdump attaches them
# to a running XDP program; it used to be a parameter here that skipped on every kernel),
# xdp_devmap_legacy.o, whose section name libbpf 1.x (bpftool) no longer knows (no
# oracle), and xdp_tx_section.o, whose section names no type (loaded as XDP only when told:
# tests/host/test_program_sections.py, against bpftool's `type xdp` and iproute2).
NO_XDP = ("xdp_reject.o", "xdpdump_bpf.o", "xdp_devmap_legacy.o", "xdp_tx_section.o")
LOADABLE = [p for p in all_objects() if not p.endswith(NO_XDP)]


def _bpftool_xlated(path: str) -> dict[str, int]:
    """xlated size (bytes) of every program of ``path`` as loaded by bpftool (libbpf).

    Runs in a private mount namespace with its own bpffs, so by-name map pins and program
    pins vanish with it.
    """
    script = (
        "mount -t bpf bpf /sys/fs/bpf && mkdir /sys/fs/bpf/p && "
        f"bpftool prog loadall {path} /sys/fs/bpf/p >/dev/null 2>&1 && "
        "for f in /sys/fs/bpf/p/*; do bpftool prog show pinned $f -j; echo; done"
    )
    out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        if line.strip():
            d = json.loads(line)
            res[d["name"]] = d["bytes_xlated"]
    return res


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed: no oracle")
@pytest.mark.parametrize("path", LOADABLE, ids=ids(LOADABLE))
def test_loads_like_bpftool(path: str, bpffs_dir: str) -> None:
    if path.endswith("xdp_kfunc_mixed.o") and loader.kernel_version() < (6, 5):
        # bpftool loads every program of the object, and the second one's kfunc
        # (bpf_dynptr_from_xdp) arrived in Linux 6.5: no oracle for the first one here
        pytest.skip("bpftool's oracle needs bpf_dynptr_from_xdp (Linux >= 6.5)")
    spec = read_object(path)
    # programs that call kfuncs are refused by our linker (bpftool loads them)
    progs = [p for p in spec.programs
             if p.prog_type == BPF_PROG_TYPE_XDP and extern_problem(spec, p) is None]
    assert progs, f"{os.path.basename(path)}: no XDP program we load (list it in NO_XDP?)"
    oracle = _bpftool_xlated(path)
    with loader.open_object(spec, pin_root=bpffs_dir) as lo:
        for prog in progs:
            p = loader.load_program(lo, prog)
            with p.fd:
                info = p.info()
                assert info.type == BPF_PROG_TYPE_XDP
                assert info.xlated_prog_len == oracle[prog.name[:15]], prog.name
                # the program references exactly the maps we created for it
                assert set(info.map_ids) <= {bpf.map_info(fd.fd).id for fd in lo.maps.values()}


def _load(name: str, bpffs_dir: str, prog_name: str | None = None):  # type: ignore[no-untyped-def]
    spec = read_object(example(name))
    prog = spec.program(name=prog_name) if prog_name else spec.programs[0]
    return loader.load_object_program(spec, prog, pin_root=bpffs_dir)


def _run(p: loader.Program, pkt: bytes) -> int:
    return bpf.prog_test_run(p.fd.fd, pkt).retval


def _percpu_sum(fd: int, key: bytes, value_size: int) -> list[int]:
    raw = bpf.map_lookup(fd, key, bpf.percpu_value_size(value_size))
    assert raw is not None
    stride = (value_size + 7) // 8 * 8
    n = value_size // 8
    tot = [0] * n
    for c in range(len(raw) // stride):
        for i, v in enumerate(struct.unpack_from(f"<{n}Q", raw, c * stride)):
            tot[i] += v
    return tot


def test_verdicts(bpffs_dir: str) -> None:
    lo, p = _load("xdp_pass", bpffs_dir)
    with lo, p.fd:
        assert _run(p, udp_packet()) == 2
    lo, p = _load("xdp_drop_icmp", bpffs_dir)
    with lo, p.fd:
        assert _run(p, icmp_echo()) == 1
        assert _run(p, udp_packet()) == 2
    lo, p = _load("xdp_subprogs", bpffs_dir, "xdp_sub_b")
    with lo, p.fd:
        assert _run(p, udp_packet(payload=b"x" * 20)) == 2
        assert _run(p, udp_packet(payload=b"x" * 200)) == 1


def test_counter_counts(bpffs_dir: str) -> None:
    lo, p = _load("xdp_counter", bpffs_dir)
    with lo, p.fd:
        for _ in range(3):
            assert _run(p, udp_packet(payload=b"y" * 10)) == 2
        m = lo.spec.map_by_name("counters")
        assert m is not None
        totals = _percpu_sum(lo.map_fd("counters"), b"\0\0\0\0", m.value_size)
        assert totals[0] == 3
        if len(totals) > 1:
            assert totals[1] == 3 * len(udp_packet(payload=b"y" * 10))


def test_rodata_is_frozen_and_data_initialised(bpffs_dir: str) -> None:
    lo, p = _load("xdp_globals", bpffs_dir)
    with lo, p.fd:
        ro = lo.spec.map_by_name(".rodata")
        assert ro is not None
        with pytest.raises(Exception) as ei:
            bpf.map_update(lo.map_fd(".rodata"), b"\0\0\0\0", bytes(ro.value_size))
        assert getattr(ei.value, "errno", None) == 1  # EPERM: frozen
        data = lo.spec.map_by_name(".data")
        assert data is not None and data.data is not None
        assert bpf.map_lookup(lo.map_fd(".data"), b"\0\0\0\0", data.value_size) == data.data


def test_pinned_map_keeps_contents_across_reload(bpffs_dir: str) -> None:
    key = struct.pack("<I4s", 32, bytes([192, 0, 2, 9]))
    lo, p = _load("xdp_blocklist", bpffs_dir)
    with lo, p.fd:
        assert lo.new_pins == {"blocklist": os.path.join(bpffs_dir, "blocklist")}
        m = lo.spec.map_by_name("blocklist")
        assert m is not None
        bpf.map_update(lo.map_fd("blocklist"), key, b"\x01" + bytes(m.value_size - 1))
        assert _run(p, udp_packet(src="192.0.2.9")) == 1
    lo, p = _load("xdp_blocklist", bpffs_dir)
    with lo, p.fd:
        assert lo.reused_pins == {"blocklist": os.path.join(bpffs_dir, "blocklist")}
        assert bpf.map_lookup(lo.map_fd("blocklist"), key, 1) == b"\x01"
        assert _run(p, udp_packet(src="192.0.2.9")) == 1
        assert _run(p, udp_packet(src="192.0.2.10")) == 2


def _bpftool_loads_twice(path: str) -> None:
    """libbpf's verdict: ``bpftool prog load`` of ``path`` twice in a private bpffs (the
    second load reuses the maps the first one pinned by name)."""
    script = ("mount -t bpf bpf /sys/fs/bpf && "
              f"bpftool prog load {path} /sys/fs/bpf/a type xdp && "
              f"bpftool prog load {path} /sys/fs/bpf/b type xdp")
    cp = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                        capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr


def test_pinned_devmap_is_reused(bpffs_dir: str) -> None:
    # The kernel adds BPF_F_RDONLY_PROG to a devmap's flags; the object never asks for it.
    # libbpf ignores that bit when it checks a pin; a second load must reuse the pin.
    path = example("xdp_redirect_devmap")
    if shutil.which("bpftool") is not None:
        _bpftool_loads_twice(path)
    pin = os.path.join(bpffs_dir, "tx_port")
    lo, p = _load("xdp_redirect_devmap", bpffs_dir)
    with lo, p.fd:
        assert lo.new_pins == {"tx_port": pin}
        assert bpf.map_info(lo.map_fd("tx_port")).map_flags & 0x80  # the premise
        first = bpf.map_info(lo.map_fd("tx_port")).id
    lo, p = _load("xdp_redirect_devmap", bpffs_dir)
    with lo, p.fd:
        assert lo.reused_pins == {"tx_port": pin}
        assert bpf.map_info(lo.map_fd("tx_port")).id == first
        assert _run(p, udp_packet()) == 2   # empty slot: bpf_redirect_map's fallback XDP_PASS


def test_incompatible_pinned_map_is_refused(bpffs_dir: str) -> None:
    fd = bpf.map_create(1, 4, 4, 8, name="blocklist")
    with fd:
        bpf.obj_pin(fd.fd, os.path.join(bpffs_dir, "blocklist"))
    spec = read_object(example("xdp_blocklist"))
    with pytest.raises(ObjectFileError) as ei:
        loader.load_object_program(spec, spec.programs[0], pin_root=bpffs_dir)
    msg = str(ei.value)
    assert "incompatible" in msg and "type: object 11, pinned 1" in msg and "key_size" in msg


def test_kfunc_externs_do_not_block_the_other_programs(bpffs_dir: str) -> None:
    # The object's BTF declares an extern kfunc; as is, the kernel refuses that BTF
    # ("Invalid func linkage"). libbpf sanitizes it; the program that calls no kfunc loads.
    spec = read_object(example("xdp_kfunc_mixed"))
    lo, p = loader.load_object_program(spec, spec.program(name="xdp_plain"), pin_root=bpffs_dir)
    with lo, p.fd:
        assert p.info().btf_id and _run(p, udp_packet()) == 2
    with pytest.raises(ObjectFileError, match="references extern symbol 'bpf_dynptr_from_xdp'"):
        loader.load_object_program(spec, spec.program(name="xdp_uses_kfunc"), pin_root=bpffs_dir)


def test_verifier_rejection_names_reason(bpffs_dir: str) -> None:
    spec = read_object(example("xdp_reject"))
    with pytest.raises(VerifierError) as ei:
        loader.load_object_program(spec, spec.programs[0], pin_root=bpffs_dir)
    e = ei.value
    assert e.errno == 13
    assert "xdp_reject" in str(e)
    assert e.log_lines and any("invalid access to packet" in ln or "R" in ln for ln in e.log_lines)
    assert os.listdir(bpffs_dir) == []
