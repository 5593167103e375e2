"""Linked chains through the API and CLI: load (auto/linked), status, rebuilds that keep
state, unload by name or by the chain's id, refusals that change nothing, and what
libxdp's xdp-loader makes of a linked chain. Runs on the host kernel (no freplace).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

import dispatcher
from dispatcher.errors import ObjectFileError, UsageError, XdpDispatchError
from dispatcher.kernel import bpf, netlink
from tests import packets
from tests.cli import assert_one_line_error, run_cli
from tests.host import chain_oracle, nettools
from tests.objects import example

pytestmark = pytest.mark.host_kernel


@pytest.fixture
def private_bpffs(bpffs_dir: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LIBXDP_BPFFS", bpffs_dir)
    return bpffs_dir


def _state(v: nettools.VethNs) -> dict:  # type: ignore[type-arg]
    """status --json of the chain, less the packet counts (the veth's own traffic, such as
    IPv6 neighbour discovery, may arrive at any time)."""
    (st,) = dispatcher.status(v.peer_if, netns=v.netns)
    out = st.to_json()
    for p in out["programs"]:
        p.pop("packets", None)
    return out


def _attached_id(v: nettools.VethNs) -> int:
    return netlink.read_xdp(v.peer_ifindex, netns=v.netns).prog_id


def _counter(map_id: int) -> int:
    return sum(v[0] for (_m, k), v in chain_oracle.snapshot([map_id]).items()
               if k == b"\0\0\0\0")


def _desc(v: nettools.VethNs) -> dict:  # type: ignore[type-arg]
    st = dispatcher.status(v.peer_if, netns=v.netns)[0]
    assert st.description is not None
    return st.description.to_json()


def _load(v: nettools.VethNs, *objs: str, **kw: object) -> dispatcher.ChangeResult:
    return dispatcher.load(v.peer_if, [example(o) for o in objs], mode="skb", netns=v.netns,
                           **kw)  # type: ignore[arg-type]


def test_load_status_rebuild_unload(private_bpffs: str, netns_veth: nettools.VethNs) -> None:
    v = netns_veth
    res = _load(v, "xdp_counter", "xdp_drop_icmp", dispatch="linked", priority=None)
    try:
        assert res.kind == "linked" and [n for _s, n, _i in res.programs] == [
            "xdp_counter", "xdp_drop_icmp"]
        st = _state(v)
        assert st["kind"] == "linked" and st["mode"] == "skb"
        assert st["dispatcher"]["id"] == res.dispatcher_id == _attached_id(v)
        assert st["dispatcher"]["name"] == "xdp_chain" and st["dispatcher"]["version"] == 1
        assert [(p["name"], p["id"], p["tag"], p["chain_call_actions"]) for p in st["programs"]] \
            == [("xdp_counter", None, None, ["XDP_PASS"]),
                ("xdp_drop_icmp", None, None, ["XDP_PASS"])]
        assert st["programs"][0]["object"] == example("xdp_counter")
        text = run_cli("status", v.peer_if, "--netns", v.netns, check=True,
                       env={"LIBXDP_BPFFS": private_bpffs}).stdout
        assert "xdp_chain" in text and "(linked chain)" in text
        # (columns grow with the widest id: match the row, not its exact padding)
        assert re.search(r"^ =>\s+50\s+xdp_counter\s+-\s+-\s", text, re.M), text

        # real packets: pings are counted by slot 0, dropped by slot 1
        assert not nettools.ping(v.peer_ip, count=2, timeout=1)
        cnt_id = _desc(v)["slots"][0]["maps"]["counters"]
        seen = _counter(cnt_id)
        assert seen >= 2

        # add a program: the whole chain is rebuilt, the unpinned counter carried over by id
        res2 = _load(v, "xdp_pass", priority=10, dispatch="auto")
        assert res2.kind == "linked" and res2.dispatcher_id != res.dispatcher_id
        d = _desc(v)
        assert [s["label"] for s in d["slots"]] == ["xdp_pass", "xdp_counter", "xdp_drop_icmp"]
        assert d["slots"][1]["maps"]["counters"] == cnt_id and _counter(cnt_id) >= seen
        with bpf.prog_get_fd_by_id(_attached_id(v)) as fd:
            bpf.prog_test_run(fd.fd, packets.udp_packet())
        assert _counter(cnt_id) >= seen + 1

        # remove by name (components have no program id)
        with pytest.raises(UsageError, match="no program ids of their own"):
            dispatcher.unload(v.peer_if, ids=[123456], netns=v.netns)
        with pytest.raises(UsageError, match="no component named 'nope'"):
            dispatcher.unload(v.peer_if, names=["nope"], netns=v.netns)
        res3 = dispatcher.unload(v.peer_if, names=["xdp_drop_icmp"], netns=v.netns)
        assert res3 is not None and [n for _s, n, _i in res3.programs] == ["xdp_pass",
                                                                            "xdp_counter"]
        assert nettools.ping(v.peer_ip, count=1)           # no longer dropped
        assert _desc(v)["slots"][1]["maps"]["counters"] == cnt_id
        # the chain's own id removes the whole chain
        dispatcher.unload(v.peer_if, ids=[_attached_id(v)], netns=v.netns)
        assert _state(v)["kind"] == "none"
    finally:
        dispatcher.unload(v.peer_if, all=True, netns=v.netns)


def test_failing_component_changes_nothing(private_bpffs: str,
                                           netns_veth: nettools.VethNs) -> None:
    v = netns_veth
    _load(v, "xdp_counter", "xdp_blocklist", dispatch="linked")
    try:
        before_id, before = _attached_id(v), _state(v)
        pins = sorted(os.listdir(private_bpffs))
        with pytest.raises(XdpDispatchError, match="in component xdp_reject") as ei:
            _load(v, "xdp_reject")
        assert "xdp_reject" in str(ei.value)
        assert _attached_id(v) == before_id and _state(v) == before
        assert sorted(os.listdir(private_bpffs)) == pins
    finally:
        dispatcher.unload(v.peer_if, all=True, netns=v.netns)


def test_pinned_map_contents_survive_rebuild(private_bpffs: str,
                                             netns_veth: nettools.VethNs) -> None:
    v = netns_veth
    _load(v, "xdp_blocklist", "xdp_pass", dispatch="linked")
    try:
        path = os.path.join(private_bpffs, "blocklist")
        assert os.path.exists(path)
        key = (32).to_bytes(4, "little") + bytes([192, 0, 2, 1])
        with bpf.obj_get(path) as fd:
            bpf.map_update(fd.fd, key, b"\1" + bytes(bpf.map_info(fd.fd).value_size - 1))
        _load(v, "xdp_counter")
        with bpf.prog_get_fd_by_id(_attached_id(v)) as fd:
            assert bpf.prog_test_run(fd.fd, packets.udp_packet(src="192.0.2.1")).retval == 1
            assert bpf.prog_test_run(fd.fd, packets.udp_packet(src="192.0.2.9")).retval == 2
    finally:
        dispatcher.unload(v.peer_if, all=True, netns=v.netns)


def test_vanished_or_changed_object_is_a_clear_error(private_bpffs: str, tmp_path: object,
                                                     netns_veth: nettools.VethNs) -> None:
    v = netns_veth
    obj = os.path.join(str(tmp_path), "mine.o")
    shutil.copy(example("xdp_counter"), obj)
    dispatcher.load(v.peer_if, [obj, example("xdp_pass")], mode="skb", netns=v.netns,
                    dispatch="linked")
    try:
        before = _attached_id(v)
        with open(obj, "ab") as f:
            f.write(b"\0")
        with pytest.raises(ObjectFileError, match=r"slot \d \(xdp_counter\).*changed since"):
            _load(v, "xdp_drop_icmp")
        os.unlink(obj)
        with pytest.raises(ObjectFileError, match="cannot be read"):
            _load(v, "xdp_drop_icmp")
        assert _attached_id(v) == before
        # removing the component whose object vanished works: it is not relinked
        res = dispatcher.unload(v.peer_if, names=["xdp_counter"], netns=v.netns)
        assert res is not None and [n for _s, n, _i in res.programs] == ["xdp_pass"]
    finally:
        dispatcher.unload(v.peer_if, all=True, netns=v.netns)


def test_cli_dispatch_flag_and_unload_by_name(private_bpffs: str,
                                              netns_veth: nettools.VethNs) -> None:
    v = netns_veth
    env = {"LIBXDP_BPFFS": private_bpffs}
    ns = ("--netns", v.netns)
    cp = run_cli("load", v.peer_if, example("xdp_pass"), "-m", "skb", "--dispatch", "linked",
                 *ns, env=env)
    assert cp.returncode == 0, cp.stderr
    assert "linked chain" in cp.stdout
    try:
        cp = run_cli("load", v.peer_if, example("xdp_counter"), "-m", "skb", *ns, env=env,
                     check=True)
        st = json.loads(run_cli("status", v.peer_if, "--json", *ns, env=env,
                                check=True).stdout)["interfaces"][0]
        assert st["kind"] == "linked" and len(st["programs"]) == 2
        cp = run_cli("unload", v.peer_if, "-n", "nope", *ns, env=env)
        assert_one_line_error(cp, "no component named 'nope'")
        cp = run_cli("load", v.peer_if, example("xdp_pass"), "-m", "native", *ns, env=env)
        assert_one_line_error(cp, "attached in skb mode")
        run_cli("unload", v.peer_if, "-n", "xdp_pass", *ns, env=env, check=True)
        st = json.loads(run_cli("status", v.peer_if, "--json", *ns, env=env,
                                check=True).stdout)["interfaces"][0]
        assert [p["name"] for p in st["programs"]] == ["xdp_counter"]
    finally:
        run_cli("unload", v.peer_if, "--all", *ns, env=env, check=True)


@pytest.mark.skipif(shutil.which("xdp-loader") is None, reason="xdp-loader (xdp-tools) not installed")
def test_xdp_loader_sees_one_foreign_program(private_bpffs: str,
                                            netns_veth: nettools.VethNs) -> None:
    """libxdp must never take a linked chain for its dispatcher: one plain program, and
    ``xdp-loader load`` refuses to add to it instead of clobbering it."""
    v = netns_veth
    res = dispatcher.load(v.host_if, [example("xdp_counter"), example("xdp_pass")], mode="skb",
                          dispatch="linked")
    env = dict(os.environ, LIBXDP_BPFFS=private_bpffs)
    try:
        cp = subprocess.run(["xdp-loader", "status", v.host_if], capture_output=True, text=True,
                            env=env, timeout=60)
        assert cp.returncode == 0, cp.stderr
        rows = [ln.split() for ln in cp.stdout.splitlines() if ln.startswith(v.host_if)]
        assert rows == [[v.host_if, "xdp_chain", "skb", str(res.dispatcher_id),
                         rows[0][4]]], cp.stdout
        assert " => " not in cp.stdout
        cp = subprocess.run(["xdp-loader", "load", "-m", "skb", v.host_if, example("xdp_pass")],
                            capture_output=True, text=True, env=env, timeout=60)
        assert cp.returncode != 0
        assert "not using a dispatcher" in cp.stderr + cp.stdout
        assert netlink.read_xdp(v.host_ifindex).prog_id == res.dispatcher_id
    finally:
        dispatcher.unload(v.host_if, all=True)


def _deep_source(depth: int, stack: int) -> str:
    """An XDP entry calling a chain of depth-1 noinline functions (``depth`` frames)."""
    out = ["#include <linux/bpf.h>", "#include <bpf/bpf_helpers.h>", ""]
    for i in range(depth - 1, 0, -1):
        call = f"f{i + 1}(ctx)" if i < depth - 1 else "XDP_PASS"
        out.append(f"static __attribute__((noinline)) int f{i}(struct xdp_md *ctx)\n{{\n"
                   f"\tvolatile char buf[{stack}];\n"
                   f"#pragma unroll\n\tfor (int k = 0; k < {stack}; k++)\n"
                   f"\t\tbuf[k] = (char)ctx->rx_queue_index;\n"
                   f"\treturn {call} + (buf[{stack} - 1] & 0);\n}}\n")
    first = "f1(ctx)" if depth > 1 else "XDP_PASS"
    out.append(f'SEC("xdp")\nint deep{depth}(struct xdp_md *ctx)\n{{\n\treturn {first};\n}}\n')
    out.append('char _license[] SEC("license") = "GPL";\n')
    return "\n".join(out)


def _compile(tmp: str, name: str, src: str) -> str:
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed: cannot build the deep-call test objects")
    from tests.objects import REPO

    c, o = os.path.join(tmp, name + ".c"), os.path.join(tmp, name + ".o")
    with open(c, "w") as f:
        f.write(src)
    subprocess.run(["bash", os.path.join(REPO, "scripts", "bpf-cc.sh"), c, o], check=True,
                   capture_output=True, timeout=120)
    return o


def test_call_depth_limit_matches_the_kernel(private_bpffs: str, tmp_path: object,
                                             netns_veth: nettools.VethNs) -> None:
    """7 frames link and load; 8 frames load alone but are refused for linking, with the
    component's name, before anything is created."""
    from dispatcher.kernel import loader
    from dispatcher.obj.elf import read_object

    v = netns_veth
    d7 = _compile(str(tmp_path), "deep7", _deep_source(7, 16))
    d8 = _compile(str(tmp_path), "deep8", _deep_source(8, 16))
    spec8 = read_object(d8)
    lo, p = loader.load_object_program(spec8, spec8.programs[0], pin_root=private_bpffs)
    p.close()
    lo.close()
    dispatcher.load(v.peer_if, [d7, example("xdp_counter")], mode="skb", netns=v.netns,
                    dispatch="linked")
    try:
        before = _attached_id(v)
        with bpf.prog_get_fd_by_id(before) as fd:
            assert bpf.prog_test_run(fd.fd, packets.udp_packet()).retval == 2
        with pytest.raises(XdpDispatchError, match=r"deep8 \(.*deep8.o\).*8 frames deep"):
            dispatcher.load(v.peer_if, [d8], mode="skb", netns=v.netns)
        assert _attached_id(v) == before
        cp = run_cli("load", v.peer_if, d8, "-m", "skb", "--netns", v.netns,
                     env={"LIBXDP_BPFFS": private_bpffs})
        assert_one_line_error(cp, "deep8", "at most 7")
        assert _attached_id(v) == before
    finally:
        dispatcher.unload(v.peer_if, all=True, netns=v.netns)


def test_stack_limit_refused_with_name(private_bpffs: str, tmp_path: object) -> None:
    """An entry (32 bytes as older kernels count it) plus a 480-byte frame fit a standalone
    program (512) but not below the chain's main frame (another 32 bytes)."""
    from dispatcher.chain.linked import build, combine
    from dispatcher.kernel import loader
    from dispatcher.obj.elf import read_object

    path = _compile(str(tmp_path), "deep2", _deep_source(2, 480))
    spec = read_object(path)
    lo, p = loader.load_object_program(spec, spec.programs[0], pin_root=private_bpffs)
    p.close()
    lo.close()
    c = combine.LinkComponent(spec, spec.programs[0], "deep2", 50, 4, build.file_sha256(path))
    with pytest.raises(combine.LinkError, match=r"deep2 \(.*\): its call chain uses 512 bytes"):
        build.build([c], pin_root=private_bpffs).close()


def test_lost_race_is_retried_from_observation(private_bpffs: str, tmp_path: object,
                                               netns_veth: nettools.VethNs) -> None:
    """Another linked chain is swapped in between our build and our swap: the swap fails
    (REPLACE with the expected old fd), and the retry builds on the chain now attached."""
    import sys
    import time

    from dispatcher.chain.linked import build, combine
    from dispatcher.obj.elf import read_object

    v = netns_veth
    _load(v, "xdp_counter", dispatch="linked")
    ready = os.path.join(str(tmp_path), "ready")
    env = {"LIBXDP_BPFFS": private_bpffs, "XDP_DISPATCH_FAULT": f"linked_built@{v.peer_if}:pause30",
           "XDP_DISPATCH_FAULT_READY": ready}
    from tests.objects import REPO

    proc = subprocess.Popen([sys.executable, "-m", "dispatcher", "load", v.peer_if,
                             example("xdp_pass"), "-m", "skb", "--netns", v.netns],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": REPO, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def wait_ready() -> None:
            end = time.monotonic() + 60
            while not os.path.exists(ready):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < end, "the load never reached the fault point"
                time.sleep(0.02)

        wait_ready()
        # meanwhile: someone else replaces the chain by one with xdp_drop_icmp in it
        obj = read_object(example("xdp_drop_icmp"))
        c = combine.LinkComponent(obj, obj.programs[0], "xdp_drop_icmp", 5, 4,
                                  build.file_sha256(obj.path))
        with build.build([c], pin_root=private_bpffs) as theirs, \
                bpf.prog_get_fd_by_id(_attached_id(v)) as old:
            netlink.attach_xdp(v.peer_ifindex, theirs.prog.fd, netlink.MODES["skb"],
                               expected_fd=old.fd, netns=v.netns)
        os.unlink(ready)
        wait_ready()                       # a second attempt, from a fresh observation
        os.unlink(ready)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert [s["label"] for s in _desc(v)["slots"]] == ["xdp_drop_icmp", "xdp_pass"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        dispatcher.unload(v.peer_if, all=True, netns=v.netns)


def test_a_bpffs_without_the_chains_pins_keeps_their_maps(private_bpffs: str, tmp_path,  # type: ignore[no-untyped-def]
                                                          netns_veth: nettools.VethNs) -> None:
    """Issue 13 (2): a command that sees another bpffs (``ip netns exec`` mounts a fresh
    one) relinks the chain; the unchanged components keep the maps they run with (a
    firewall's pinned rule map by id), and the missing pin is reported, not recreated."""
    import socket
    import subprocess

    from tests.cli import run_cli

    v = netns_veth
    _load(v, "xdp_blocklist", "xdp_counter", "xdp_pass", dispatch="linked")
    pin = os.path.join(private_bpffs, "blocklist")
    with bpf.obj_get(pin) as m:
        map_id = bpf.map_info(m.fd).id
        bpf.map_update(m.fd, (32).to_bytes(4, "little") + socket.inet_aton(v.host_ip), b"\x01")
    assert not nettools.ping(v.peer_ip, count=1)          # the rule drops the host's pings
    other = tmp_path / "other-bpffs"
    other.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(other)], check=True)
    try:
        cp = run_cli("unload", v.peer_if, "-n", "xdp_pass", "--netns", v.netns,
                     env={"LIBXDP_BPFFS": str(other)})
        assert cp.returncode == 0, cp.stderr
        assert f"map blocklist (id {map_id}) is not pinned at {other}/blocklist" in cp.stderr
        assert not os.path.exists(other / "blocklist")   # not recreated, empty, elsewhere
    finally:
        subprocess.run(["umount", str(other)], check=True)
    assert [s["label"] for s in _desc(v)["slots"]] == ["xdp_blocklist", "xdp_counter"]
    assert _desc(v)["slots"][0]["maps"]["blocklist"] == map_id
    assert not nettools.ping(v.peer_ip, count=1)          # the rule still holds
    with bpf.obj_get(pin) as m:                           # and the real pin is the same map
        assert bpf.map_info(m.fd).id == map_id
    dispatcher.unload(v.peer_if, all=True, netns=v.netns)
    assert nettools.ping(v.peer_ip, count=1)              # positive control: it was the rule


@pytest.mark.skipif(shutil.which("xdp-loader") is None, reason="xdp-loader (xdp-tools) not installed")
def test_xdp_loader_unload_all_removes_the_whole_chain(private_bpffs: str,
                                                       netns_veth: nettools.VethNs) -> None:
    """README: "`xdp-loader unload --all` removes the whole chain" (a linked chain)."""
    v = netns_veth
    res = dispatcher.load(v.host_if, [example("xdp_counter"), example("xdp_drop_icmp")],
                          mode="skb", dispatch="linked")
    env = dict(os.environ, LIBXDP_BPFFS=private_bpffs)
    try:
        assert netlink.read_xdp(v.host_ifindex).prog_id == res.dispatcher_id
        (st,) = dispatcher.status(v.host_if)
        assert st.kind == "linked" and st.description is not None
        cnt_id = st.description.to_json()["slots"][0]["maps"]["counters"]
        seen = _counter(cnt_id)
        assert not nettools.ping(v.peer_ip, count=2, timeout=1)   # the chain drops ICMP ...
        assert _counter(cnt_id) - seen >= 2                        # ... after counting it
        cp = subprocess.run(["xdp-loader", "unload", v.host_if, "--all"], capture_output=True,
                            text=True, env=env, timeout=60)
        assert cp.returncode == 0, cp.stderr
        assert netlink.read_xdp(v.host_ifindex).prog_id in (0, None)
        assert nettools.xdp_attached(v.host_if) is None               # iproute2 agrees
        assert dispatcher.status(v.host_if)[0].kind == "none"
        assert nettools.ping(v.peer_ip, count=1)                    # nothing drops any more
    finally:
        if dispatcher.status(v.host_if)[0].kind != "none":
            dispatcher.unload(v.host_if, all=True)
