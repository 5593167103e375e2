"""dispatcher.kernel (fd, bpf, bpffs) against the running kernel; bpftool is the oracle."""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings

import pytest

from dispatcher import uapi
from dispatcher.errors import ConflictError, KernelError, PrivilegeError, VerifierError
from dispatcher.kernel import bpf, bpffs, netlink
from dispatcher.kernel.fd import OwnedFd
from tests.host.nettools import VethNs

pytestmark = pytest.mark.host_kernel

HAVE_BPFTOOL = shutil.which("bpftool") is not None

# --------------------------------------------------------------------------
# a tiny assembler and BTF builder
# --------------------------------------------------------------------------


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def ret(verdict: int) -> bytes:
    """r0 = verdict; exit"""
    return insn(0xB7, 0, imm=verdict) + insn(0x95)


XDP_PASS_PROG = b"\xb7\x00\x00\x00\x02\x00\x00\x00\x95\x00\x00\x00\x00\x00\x00\x00"
assert ret(uapi.XDP_PASS) == XDP_PASS_PROG


def count_into(map_fd: int) -> bytes:
    """++*(u64 *)map_lookup_elem(map, &(u32){0}); return XDP_PASS"""
    return b"".join([
        insn(0x62, 10, off=-4, imm=0),            # *(u32 *)(r10 - 4) = 0
        insn(0xBF, 2, 10),                        # r2 = r10
        insn(0x07, 2, imm=-4),                    # r2 += -4
        insn(0x18, 1, 1, imm=map_fd), insn(0),    # r1 = map (ld_imm64, BPF_PSEUDO_MAP_FD)
        insn(0x85, imm=1),                        # call bpf_map_lookup_elem
        insn(0x15, 0, off=3, imm=0),              # if r0 == 0 goto +3
        insn(0x79, 1, 0),                         # r1 = *(u64 *)(r0 + 0)
        insn(0x07, 1, imm=1),                     # r1 += 1
        insn(0x7B, 0, 1),                         # *(u64 *)(r0 + 0) = r1
        ret(uapi.XDP_PASS),
    ])


def btf_blob(types: bytes, strings: bytes) -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


# [1] INT 'int' size 4 signed; [2] FUNC_PROTO int(void); [3] FUNC 'xdp_fn' global
BTF_STRINGS = b"\0int\0xdp_fn\0"
BTF_TYPES = (
    struct.pack("<IIII", 1, 1 << 24, 4, (1 << 24) | 32)
    + struct.pack("<III", 0, 13 << 24, 1)
    + struct.pack("<III", 5, (12 << 24) | 1, 2)
)
BTF = btf_blob(BTF_TYPES, BTF_STRINGS)
FUNC_ID = 3


def load_xdp(verdict: int = uapi.XDP_PASS, name: str = "xdpd_test", **kw: object) -> OwnedFd:
    return bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, ret(verdict), "GPL", name=name, **kw)  # type: ignore[arg-type]


def bpftool_json(*args: str) -> object:
    out = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


PKT = bytes(range(64))

# --------------------------------------------------------------------------
# OwnedFd
# --------------------------------------------------------------------------


def test_owned_fd_close_is_idempotent_and_fd_raises_after() -> None:
    o = OwnedFd(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), "test")
    raw = o.fd
    assert raw >= 3 and not o.closed
    o.close()
    o.close()
    assert o.closed
    with pytest.raises(ValueError):
        _ = o.fd
    with pytest.raises(OSError):
        os.fstat(raw)


def test_owned_fd_context_manager_detach_and_dup() -> None:
    with OwnedFd(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)) as o:
        d = o.dup()
        assert d.fd != o.fd and d.fd >= 3
        assert os.get_inheritable(d.fd) is False
        raw = d.detach()
        assert d.closed
        os.fstat(raw)                       # still open: we own it now
        os.close(raw)
        inner = o.fd
    with pytest.raises(OSError):
        os.fstat(inner)


def test_owned_fd_never_holds_fd_0_to_2() -> None:
    saved = os.dup(0)
    try:
        os.close(0)
        low = os.open("/dev/null", os.O_RDONLY)
        assert low == 0
        o = OwnedFd(low)
        try:
            assert o.fd >= 3
            with pytest.raises(OSError):
                os.fstat(0)                 # the original low fd was closed
        finally:
            o.close()
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_owned_fd_forgotten_is_closed_with_resource_warning() -> None:
    o = OwnedFd(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), "forgotten")
    raw = o.fd
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del o
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and "forgotten" in str(w.message)
               for w in caught)
    with pytest.raises(OSError):
        os.fstat(raw)


def test_owned_fd_rejects_negative() -> None:
    with pytest.raises(ValueError):
        OwnedFd(-1)


# --------------------------------------------------------------------------
# maps
# --------------------------------------------------------------------------


def test_hash_map_roundtrip_iteration_and_info() -> None:
    with bpf.map_create(uapi.BPF_MAP_TYPE_HASH, 4, 8, 16, name="xdpd_hash") as m:
        keys = [struct.pack("<I", i) for i in (3, 1, 2)]
        for i, key in enumerate(keys):
            bpf.map_update(m.fd, key, struct.pack("<Q", 100 + i))
        assert bpf.map_lookup(m.fd, keys[1], 8) == struct.pack("<Q", 101)
        assert bpf.map_lookup(m.fd, struct.pack("<I", 99), 8) is None

        seen: list[bytes] = []
        k: bytes | None = None
        while (k := bpf.map_next_key(m.fd, k, 4)) is not None:
            seen.append(k)
        assert sorted(seen) == sorted(keys)

        with pytest.raises(KernelError) as ei:
            bpf.map_update(m.fd, keys[0], bytes(8), uapi.BPF_NOEXIST)
        assert ei.value.errno == errno.EEXIST and ei.value.op == "BPF_MAP_UPDATE_ELEM"
        with pytest.raises(KernelError) as ei:
            bpf.map_update(m.fd, struct.pack("<I", 77), bytes(8), uapi.BPF_EXIST)
        assert ei.value.errno == errno.ENOENT

        assert bpf.map_delete(m.fd, keys[0]) is True
        assert bpf.map_delete(m.fd, keys[0]) is False
        assert bpf.map_lookup(m.fd, keys[0], 8) is None

        info = bpf.map_info(m.fd)
        assert (info.type, info.key_size, info.value_size, info.max_entries, info.name) == \
            (uapi.BPF_MAP_TYPE_HASH, 4, 8, 16, "xdpd_hash")
        assert info.id > 0 and info.btf_id == 0


def test_freeze_blocks_user_writes_but_not_reads() -> None:
    with bpf.map_create(uapi.BPF_MAP_TYPE_ARRAY, 4, 4, 1, name="xdpd_rodata",
                        flags=uapi.BPF_F_RDONLY_PROG) as m:
        key = struct.pack("<I", 0)
        bpf.map_update(m.fd, key, b"abcd")
        bpf.map_freeze(m.fd)
        with pytest.raises(KernelError) as ei:
            bpf.map_update(m.fd, key, b"efgh")
        assert ei.value.errno == errno.EPERM
        assert bpf.map_lookup(m.fd, key, 4) == b"abcd"
        assert bpf.map_info(m.fd).map_flags & uapi.BPF_F_RDONLY_PROG


def test_array_delete_is_einval() -> None:
    with bpf.map_create(uapi.BPF_MAP_TYPE_ARRAY, 4, 4, 2) as m:
        with pytest.raises(KernelError) as ei:
            bpf.map_delete(m.fd, struct.pack("<I", 0))
        assert ei.value.errno == errno.EINVAL and ei.value.op == "BPF_MAP_DELETE_ELEM"


def test_possible_cpus_and_percpu_sizing() -> None:
    n = bpf.possible_cpus()
    assert n >= (os.cpu_count() or 1)
    assert bpf.percpu_value_size(4) == 8 * n
    assert bpf.percpu_value_size(8) == 8 * n
    assert bpf.percpu_value_size(12) == 16 * n


def test_percpu_array_user_values_and_program_counter() -> None:
    n = bpf.possible_cpus()
    size = bpf.percpu_value_size(8)
    with bpf.map_create(uapi.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1, name="xdpd_pcpu") as m:
        key = struct.pack("<I", 0)
        values = b"".join(struct.pack("<Q", 1000 + c) for c in range(n))
        bpf.map_update(m.fd, key, values)
        assert bpf.map_lookup(m.fd, key, size) == values
        bpf.map_update(m.fd, key, bytes(size))

        with bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, count_into(m.fd), "GPL",
                           name="xdpd_count") as p:
            res = bpf.prog_test_run(p.fd, PKT, repeat=5)
            assert res.retval == uapi.XDP_PASS
            raw = bpf.map_lookup(m.fd, key, size)
            assert raw is not None
            assert sum(struct.unpack(f"<{n}Q", raw)) == 5

            info = bpf.prog_info(p.fd)
            assert info.map_ids == (bpf.map_info(m.fd).id,)


def test_map_bad_name_is_einval_with_hint() -> None:
    with pytest.raises(KernelError) as ei:
        bpf.map_create(uapi.BPF_MAP_TYPE_ARRAY, 4, 4, 1, name="bad-name")
    assert ei.value.errno == errno.EINVAL and ei.value.op == "BPF_MAP_CREATE"
    assert ei.value.hint and "A-Za-z0-9_." in ei.value.hint


# --------------------------------------------------------------------------
# BTF
# --------------------------------------------------------------------------


def test_btf_load_info_data_and_ids() -> None:
    with bpf.btf_load(BTF) as b:
        info = bpf.btf_info(b.fd)
        assert info.id > 0 and info.size == len(BTF)
        assert info.name == "" and info.kernel_btf is False
        assert bpf.btf_data(b.fd) == BTF

        ids, i = [], 0
        while (i := bpf.btf_get_next_id(i)) is not None:     # type: ignore[assignment]
            ids.append(i)
        assert info.id in ids
        with bpf.btf_get_fd_by_id(info.id) as again:
            assert bpf.btf_info(again.fd).id == info.id

        # a map with BTF key/value types
        with bpf.map_create(uapi.BPF_MAP_TYPE_ARRAY, 4, 4, 1, name="xdpd_btfmap",
                            btf_fd=b.fd, btf_key_type_id=1, btf_value_type_id=1) as m:
            mi = bpf.map_info(m.fd)
            assert (mi.btf_id, mi.btf_key_type_id, mi.btf_value_type_id) == (info.id, 1, 1)


def test_vmlinux_btf_info() -> None:
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("kernel without CONFIG_DEBUG_INFO_BTF")
    i = 0
    while (i := bpf.btf_get_next_id(i)) is not None:         # type: ignore[assignment]
        with bpf.btf_get_fd_by_id(i) as b:
            info = bpf.btf_info(b.fd)
        if info.name == "vmlinux":
            assert info.kernel_btf is True
            with open("/sys/kernel/btf/vmlinux", "rb") as f:
                assert info.size == len(f.read())
            return
    pytest.fail("vmlinux BTF object not found by BTF_GET_NEXT_ID")


def test_btf_load_failure_carries_log_lines() -> None:
    bad = btf_blob(struct.pack("<IIII", 1, 1 << 24, 4, (1 << 24) | 64), b"\0int\0")
    log: list[str] = []
    with pytest.raises(KernelError) as ei:
        bpf.btf_load(bad, verifier_log=log)
    e = ei.value
    assert e.errno == errno.EINVAL and e.op == "BPF_BTF_LOAD"
    assert "nr_bits exceeds type_size" in str(e)
    assert log and "nr_bits exceeds type_size" in log[0]


# --------------------------------------------------------------------------
# programs
# --------------------------------------------------------------------------


@pytest.mark.parametrize("verdict", [uapi.XDP_ABORTED, uapi.XDP_DROP, uapi.XDP_PASS, uapi.XDP_TX])
def test_test_run_verdicts(verdict: int) -> None:
    with load_xdp(verdict) as p:
        res = bpf.prog_test_run(p.fd, PKT, repeat=3)
        assert res.retval == verdict
        assert res.data_out == PKT
        assert res.duration_ns >= 0


def test_test_run_with_ctx_and_errors() -> None:
    with load_xdp() as p:
        ctx = struct.pack("<6I", 0, len(PKT), 0, 0, 0, 0)     # struct xdp_md
        res = bpf.prog_test_run(p.fd, PKT, ctx=ctx)
        assert res.retval == uapi.XDP_PASS and len(res.ctx_out) == len(ctx)
        with pytest.raises(KernelError) as ei:
            bpf.prog_test_run(p.fd, b"short")                # < ETH_HLEN
        assert ei.value.errno == errno.EINVAL and ei.value.op == "BPF_PROG_TEST_RUN"
        with pytest.raises(KernelError) as ei:
            bpf.prog_test_run(p.fd, PKT, data_out_size=8)
        assert ei.value.errno == errno.ENOSPC


def test_prog_info_matches_bpftool() -> None:
    if not HAVE_BPFTOOL:
        pytest.skip("bpftool not installed: no oracle")
    with bpf.map_create(uapi.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1, name="xdpd_m") as m, \
            bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, count_into(m.fd), "GPL",
                          name="xdpd_info") as p:
        info = bpf.prog_info(p.fd)
        tool = bpftool_json("prog", "show", "id", str(info.id))
        assert isinstance(tool, dict)
        assert tool["name"] == info.name == "xdpd_info"
        assert tool["tag"] == info.tag_hex and len(info.tag) == 8
        assert tool["bytes_xlated"] == info.xlated_prog_len
        assert info.xlated_insn_cnt == info.xlated_prog_len // 8
        assert tuple(tool["map_ids"]) == info.map_ids
        assert tool["gpl_compatible"] is info.gpl_compatible is True
        assert tool["type"] == "xdp" and info.type == uapi.BPF_PROG_TYPE_XDP
        assert info.created_by_uid == os.geteuid()
        assert info.verified_insns > 0
        assert len(bpf.prog_xlated_insns(p.fd)) == info.xlated_prog_len


def test_long_name_is_truncated_to_15() -> None:
    with load_xdp(name="a_rather_long_program_name") as p:
        assert bpf.prog_info(p.fd).name == "a_rather_long_p"


def test_prog_with_btf_and_func_info() -> None:
    with bpf.btf_load(BTF) as b, \
            load_xdp(name="xdp_fn", btf_fd=b.fd, func_info=struct.pack("<II", 0, FUNC_ID)) as p:
        info = bpf.prog_info(p.fd)
        assert info.btf_id == bpf.btf_info(b.fd).id
        assert info.nr_func_info == 1
        assert bpf.prog_func_info(p.fd) == [(0, FUNC_ID)]


def test_verifier_rejection_raises_verifier_error() -> None:
    log: list[str] = []
    with pytest.raises(VerifierError) as ei:
        bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, insn(0x95), "GPL", name="xdpd_bad",
                      verifier_log=log)
    e = ei.value
    assert e.errno == errno.EACCES and e.op == "BPF_PROG_LOAD" and e.subject == "xdpd_bad"
    meaningful = [ln for ln in e.log_lines if not ln.startswith("processed ")]
    assert meaningful[-1] == "R0 !read_ok"
    assert "R0 !read_ok" in str(e)
    assert log and "R0 !read_ok" in log[0]


def test_log_level_gives_log_on_success() -> None:
    log: list[str] = []
    with load_xdp(log_level=1, verifier_log=log):
        pass
    assert len(log) == 1 and "processed 2 insns" in log[0]


def test_invalid_instruction_bytes_are_a_value_error() -> None:
    with pytest.raises(ValueError):
        bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, b"\x95\x00", "GPL")


def test_stats_are_collected_while_enable_stats_fd_is_open() -> None:
    with load_xdp() as p, bpf.enable_stats() as _stats:
        bpf.prog_test_run(p.fd, PKT, repeat=10)
        info = bpf.prog_info(p.fd)
        assert info.run_cnt >= 10 and info.run_time_ns > 0


@pytest.mark.skipif(not os.uname().release.startswith("6.18"),
                    reason="EXT loads are refused with EPERM by this host's 6.18 kernel policy "
                           "only; other kernels run the freplace tests")
def test_ext_load_refused_on_this_host() -> None:
    with bpf.btf_load(BTF) as b, \
            load_xdp(name="xdp_fn", btf_fd=b.fd, func_info=struct.pack("<II", 0, FUNC_ID)) as t:
        with pytest.raises(KernelError) as ei:
            bpf.prog_load(uapi.BPF_PROG_TYPE_EXT, ret(uapi.XDP_PASS), "GPL", name="ext",
                          btf_fd=b.fd, func_info=struct.pack("<II", 0, FUNC_ID),
                          attach_prog_fd=t.fd, attach_btf_id=FUNC_ID)
    assert ei.value.errno == errno.EPERM
    assert not isinstance(ei.value, VerifierError)
    assert ei.value.hint and "CAP_BPF" in ei.value.hint


# --------------------------------------------------------------------------
# ids, pins
# --------------------------------------------------------------------------


def test_get_next_id_and_fd_by_id() -> None:
    with load_xdp() as p, bpf.map_create(uapi.BPF_MAP_TYPE_ARRAY, 4, 4, 1) as m:
        pid, mid = bpf.prog_info(p.fd).id, bpf.map_info(m.fd).id
        progs, i = set(), 0
        while (i := bpf.prog_get_next_id(i)) is not None:    # type: ignore[assignment]
            progs.add(i)
        maps, i = set(), 0
        while (i := bpf.map_get_next_id(i)) is not None:     # type: ignore[assignment]
            maps.add(i)
        assert pid in progs and mid in maps
        with bpf.prog_get_fd_by_id(pid) as p2:
            assert bpf.prog_info(p2.fd).id == pid
        with bpf.map_get_fd_by_id(mid, uapi.BPF_F_RDONLY) as m2:
            assert bpf.map_info(m2.fd).id == mid
            with pytest.raises(KernelError) as ei:
                bpf.map_update(m2.fd, bytes(4), bytes(4))
            assert ei.value.errno == errno.EPERM
    for getter in (bpf.prog_get_fd_by_id, bpf.map_get_fd_by_id, bpf.link_get_fd_by_id,
                   bpf.btf_get_fd_by_id):
        with pytest.raises(KernelError) as ei:
            getter(0x7FFFFFF0)
        assert ei.value.errno == errno.ENOENT


def test_pin_and_get(bpffs_dir: str) -> None:
    prog_pin = os.path.join(bpffs_dir, "prog")
    map_pin = os.path.join(bpffs_dir, "map")
    with load_xdp() as p, bpf.map_create(uapi.BPF_MAP_TYPE_ARRAY, 4, 4, 1) as m:
        bpf.obj_pin(p.fd, prog_pin)
        bpf.obj_pin(m.fd, map_pin)
        with pytest.raises(KernelError) as ei:
            bpf.obj_pin(p.fd, prog_pin)
        assert ei.value.errno == errno.EEXIST and ei.value.subject == prog_pin
        pid, mid = bpf.prog_info(p.fd).id, bpf.map_info(m.fd).id
    with bpf.obj_get(prog_pin) as p2:
        assert bpf.prog_info(p2.fd).id == pid          # the pin kept it alive
    with bpf.obj_get(map_pin, flags=uapi.BPF_F_RDONLY) as m2:
        assert bpf.map_info(m2.fd).id == mid
        with pytest.raises(KernelError):
            bpf.map_update(m2.fd, bytes(4), bytes(4))
    with pytest.raises(KernelError) as ei:
        bpf.obj_get(os.path.join(bpffs_dir, "missing"))
    assert ei.value.errno == errno.ENOENT


def test_pin_outside_bpffs_is_eperm_with_hint() -> None:
    with tempfile.TemporaryDirectory() as d, load_xdp() as p:
        with pytest.raises(KernelError) as ei:
            bpf.obj_pin(p.fd, os.path.join(d, "x"))
    assert ei.value.errno == errno.EPERM and ei.value.hint and "bpffs" in ei.value.hint


# --------------------------------------------------------------------------
# links
# --------------------------------------------------------------------------


def test_xdp_link_create_info_update_detach(netns_veth: VethNs, bpffs_dir: str) -> None:
    idx = netns_veth.host_ifindex
    with load_xdp(uapi.XDP_PASS) as p1, load_xdp(uapi.XDP_DROP, name="xdpd_drop") as p2:
        id1, id2 = bpf.prog_info(p1.fd).id, bpf.prog_info(p2.fd).id
        with bpf.link_create(p1.fd, idx, uapi.BPF_XDP,
                             flags=netlink.XDP_FLAGS_SKB_MODE) as link:
            li = bpf.link_info(link.fd)
            assert (li.type, li.prog_id, li.xdp_ifindex) == (uapi.BPF_LINK_TYPE_XDP, id1, idx)
            st = netlink.read_xdp(idx)
            assert st.mode_name == "skb" and st.skb_prog_id == id1

            ids, i = [], 0
            while (i := bpf.link_get_next_id(i)) is not None:    # type: ignore[assignment]
                ids.append(i)
            assert li.id in ids

            # netlink cannot touch a hook a bpf_link owns
            with pytest.raises(KernelError) as ei:
                netlink.attach_xdp(idx, p2.fd, netlink.XDP_FLAGS_SKB_MODE)
            assert ei.value.errno == errno.EBUSY

            bpf.link_update(link.fd, p2.fd, old_prog_fd=p1.fd)
            assert bpf.link_info(link.fd).prog_id == id2
            with pytest.raises(KernelError) as ei:
                bpf.link_update(link.fd, p1.fd, old_prog_fd=p1.fd)     # stale old prog
            assert ei.value.errno == errno.EPERM and ei.value.op == "BPF_LINK_UPDATE"
            bpf.link_update(link.fd, p1.fd)
            assert netlink.read_xdp(idx).prog_id == id1

            pin = os.path.join(bpffs_dir, "link")
            bpf.obj_pin(link.fd, pin)
            bpf.link_detach(link.fd)
            assert bpf.link_info(link.fd).xdp_ifindex == 0
            assert netlink.read_xdp(idx).attached == netlink.XDP_ATTACHED_NONE
            with pytest.raises(KernelError) as ei:
                bpf.link_update(link.fd, p2.fd)
            assert ei.value.errno == errno.ENOLINK


def test_closing_unpinned_xdp_link_detaches(netns_veth: VethNs) -> None:
    idx = netns_veth.host_ifindex
    with load_xdp() as p:
        link = bpf.link_create(p.fd, idx, uapi.BPF_XDP)
        assert netlink.read_xdp(idx).prog_id == bpf.prog_info(p.fd).id
        link.close()
    assert netlink.read_xdp(idx).attached == netlink.XDP_ATTACHED_NONE


# --------------------------------------------------------------------------
# bpffs
# --------------------------------------------------------------------------


def test_bpffs_detection(bpffs_dir: str) -> None:
    assert bpffs.is_bpffs(bpffs_dir)
    assert bpffs.ensure_bpffs("/sys/fs/bpf") == "/sys/fs/bpf"
    assert not bpffs.is_bpffs("/proc")
    assert not bpffs.is_bpffs("/no/such/dir")
    with tempfile.TemporaryDirectory() as d:
        with pytest.raises(PrivilegeError) as ei:
            bpffs.ensure_bpffs(d, mount=False)
        assert ei.value.hint and "mount -t bpf" in ei.value.hint


def test_bpffs_root_honours_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBXDP_BPFFS", raising=False)
    assert bpffs.bpffs_root() == "/sys/fs/bpf"
    monkeypatch.setenv("LIBXDP_BPFFS", "/run/elsewhere")
    assert bpffs.bpffs_root() == "/run/elsewhere"


def test_ensure_bpffs_mounts_in_private_mount_namespace() -> None:
    """Mount a bpffs on a temp dir inside `unshare -m`, so nothing leaks to the host."""
    if shutil.which("unshare") is None:
        pytest.skip("util-linux `unshare` not installed")
    code = (
        "import sys, tempfile; sys.path.insert(0, sys.argv[1])\n"
        "from dispatcher.kernel import bpffs\n"
        "d = tempfile.mkdtemp(); msgs = []\n"
        "assert not bpffs.is_bpffs(d)\n"
        "assert bpffs.ensure_bpffs(d, notice=msgs.append) == d\n"
        "assert bpffs.is_bpffs(d) and len(msgs) == 1, msgs\n"
        "assert msgs[0].startswith(f'mounted bpffs at {d}: ') and 'vanish' in msgs[0], msgs\n"
        "print(d)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                          "-c", code, root], capture_output=True, text=True, check=False)
    made = res.stdout.strip()
    if made.startswith(tempfile.gettempdir()) and os.path.isdir(made):
        os.rmdir(made)
    assert res.returncode == 0 and made, res.stderr


def test_dir_lock_excludes_a_second_holder(bpffs_dir: str) -> None:
    path = os.path.join(bpffs_dir, "xdp")
    with bpffs.DirLock(path) as lock:
        assert lock.locked and os.path.isdir(path)
        assert (os.stat(path).st_mode & 0o777) == 0o700
        with pytest.raises(ConflictError):
            with bpffs.DirLock(path, timeout=0.1):
                pass
    with bpffs.DirLock(path, timeout=0.1) as again:       # released
        assert again.locked
    assert not again.locked


def test_verifier_log_grows_past_the_first_buffer() -> None:
    """A log larger than the initial 1 MiB buffer comes back whole (ENOSPC -> bigger buffer)."""
    n = 40000
    insns = insn(0xB7, 0, imm=uapi.XDP_PASS) * n + insn(0x95)
    log: list[str] = []
    with bpf.prog_load(uapi.BPF_PROG_TYPE_XDP, insns, "GPL", name="xdpd_biglog",
                       log_level=2, verifier_log=log):
        pass
    assert len(log) == 1 and len(log[0]) > bpf.LOG_SIZE_INITIAL
    assert log[0].startswith("func#0") or log[0].lstrip().startswith("0:")
    assert f"processed {n + 1} insns" in log[0]


def test_packet_changing_helper_calls_found_in_xlated_code(bpffs_dir: str) -> None:
    """The kernel spells a helper call in xlated code as the helper's address: the probe
    learns the three packet-changing XDP helpers' spelling, and a program calling
    bpf_xdp_adjust_head (xdp_rewrite) is told from one that does not (xdp_pass)."""
    from dispatcher.kernel import loader, packet_changes
    from dispatcher.obj.elf import read_object
    from tests.objects import example

    calls = packet_changes.calls()
    assert len(calls) == 3 and 0 not in calls
    found = {}
    for name in ("xdp_rewrite", "xdp_pass", "xdp_counter"):
        spec = read_object(example(name))
        lo, p = loader.load_object_program(spec, spec.programs[0], pin_root=bpffs_dir)
        with lo, p.fd:
            found[name] = not calls.isdisjoint(
                packet_changes.helper_calls(bpf.prog_xlated_insns(p.fd.fd)))
    assert found == {"xdp_rewrite": True, "xdp_pass": False, "xdp_counter": False}
