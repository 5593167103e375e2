"""Objects unlike our usual examples, on the real kernel, with iproute2/bpftool as the
oracle: an XDP program in SEC("tx") loads with --prog-type xdp (config: prog_type: xdp),
also into a linked chain that is later rebuilt; a tc program, a devmap program (legacy
spelling too) or a kfunc caller is refused before any kernel call by load, plan and
apply, and nothing is attached; the other program of a kfunc object loads; a linked
chain with a component without license is refused naming that component."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from tests.cli import assert_one_line_error, run_cli
from tests.host import nettools
from tests.objects import example

pytestmark = [pytest.mark.host_kernel, pytest.mark.host_tier]   # files / ELF sections: no kernel or chain-kind dependence


def _status(iface: str) -> dict:  # type: ignore[type-arg]
    (st,) = json.loads(run_cli("status", iface, "--json", check=True).stdout)["interfaces"]
    return st  # type: ignore[no-any-return]


@pytest.mark.skipif(nettools.IP_TOOL is None, reason="iproute2 `ip` not installed: no oracle")
def test_iproute2_and_bpftool_load_the_tx_section(veth) -> None:  # type: ignore[no-untyped-def]
    obj = example("xdp_tx_section")
    nettools.ip("link", "set", "dev", veth.host_if, "xdpgeneric", "obj", obj, "sec", "tx")
    try:
        assert nettools.xdp_attached(veth.host_if)
    finally:
        nettools.ip("link", "set", "dev", veth.host_if, "xdpgeneric", "off")
    if shutil.which("bpftool") is not None:
        script = (f"mount -t bpf bpf /sys/fs/bpf && bpftool prog load {obj} /sys/fs/bpf/x type xdp"
                  f" && ! bpftool prog load {obj} /sys/fs/bpf/y")   # libbpf alone: no type
        cp = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True)
        assert cp.returncode == 0, cp.stderr


def test_load_untyped_section_needs_and_takes_prog_type(veth, env) -> None:  # type: ignore[no-untyped-def]
    obj = example("xdp_tx_section")
    cp = run_cli("load", veth.host_if, obj, "-m", "skb", "-n", "xdp_in_tx", env=env)
    assert_one_line_error(cp, "program xdp_in_tx (section tx) is in a section that names no "
                              "program type")
    assert cp.returncode == 2 and "hint: pass --prog-type xdp" in cp.stderr
    assert _status(veth.host_if)["kind"] == "none"
    cp = run_cli("load", veth.host_if, obj, "-m", "skb", env=env)     # no -n: the same hint
    assert_one_line_error(cp, "the object contains no XDP program")
    assert "hint: xdp_in_tx: in a section that names no type; pass --prog-type xdp" in cp.stderr
    # the command the hint suggests works
    run_cli("load", veth.host_if, obj, "-m", "skb", "-n", "xdp_in_tx", "--prog-type", "xdp",
            check=True, env=env)
    assert [p["name"] for p in _status(veth.host_if)["programs"] or [_status(veth.host_if)["main"]]
            ] == ["xdp_in_tx"]
    assert nettools.ping(veth.peer_ip, count=1)


def test_untyped_component_survives_a_linked_rebuild(veth, env) -> None:  # type: ignore[no-untyped-def]
    run_cli("load", veth.host_if, example("xdp_tx_section"), "-m", "skb", "--prog-type", "xdp",
            "-p", "10", "--dispatch", "linked", check=True, env=env)
    # adding another component rebuilds the chain from its description: the chosen type
    # must be redone, or the kept component is no longer XDP
    cp = run_cli("load", veth.host_if, example("xdp_pass"), "-m", "skb", "-p", "20",
                 "--dispatch", "linked", env=env)
    assert cp.returncode == 0, cp.stderr
    assert [p["name"] for p in _status(veth.host_if)["programs"]] == ["xdp_in_tx", "xdp_pass"]
    assert nettools.ping(veth.peer_ip, count=1)


@pytest.mark.parametrize("obj,prog,fragment", [
    ("xdp_not_attachable", "tc_pass", "program tc_pass (section tc) is not an XDP program"),
    ("xdp_not_attachable", "devmap_pass", "is a devmap program, not attachable to an interface"),
    ("xdp_devmap_legacy", "devmap_legacy", "program devmap_legacy (section xdp_devmap/egress) is "
                                           "a devmap program, not attachable to an interface"),
])
def test_load_refuses_before_the_kernel(veth, env, obj, prog, fragment) -> None:  # type: ignore[no-untyped-def]
    cp = run_cli("load", veth.host_if, example(obj), "-m", "skb", "-n", prog, env=env)
    assert_one_line_error(cp, fragment)
    assert cp.returncode == 2
    assert _status(veth.host_if)["kind"] == "none"


def test_load_of_the_program_next_to_a_kfunc_caller(veth, env) -> None:  # type: ignore[no-untyped-def]
    obj = example("xdp_kfunc_mixed")
    cp = run_cli("load", veth.host_if, obj, "-m", "skb", "-n", "xdp_uses_kfunc", env=env)
    assert_one_line_error(cp, "program xdp_uses_kfunc: references extern symbol "
                              "'bpf_dynptr_from_xdp'")
    assert cp.returncode == 2
    cp = run_cli("load", veth.host_if, obj, "-m", "skb", "-n", "xdp_plain", env=env)
    assert cp.returncode == 0, cp.stderr
    st = _status(veth.host_if)
    if st["kind"] == "legacy":      # attached directly (no freplace here): no slot to name
        assert cp.stdout == (f"{veth.host_if}: attached xdp_plain (id {st['main']['id']}) "
                             "directly in skb mode\n")
    assert nettools.ping(veth.peer_ip, count=1)


def test_linked_chain_names_the_component_without_license(veth, env) -> None:  # type: ignore[no-untyped-def]
    cp = run_cli("load", veth.host_if, example("xdp_counter"), example("xdp_no_license"),
                 "-m", "skb", "--dispatch", "linked", env=env)
    assert_one_line_error(cp, "xdp_no_license", "has no license", "GPL component xdp_counter")
    assert cp.returncode == 2
    assert _status(veth.host_if)["kind"] == "none"
    # alone it loads, as bpftool loads it
    run_cli("load", veth.host_if, example("xdp_no_license"), "-m", "skb", "--dispatch", "linked",
            check=True, env=env)


def test_pinned_objects_are_not_object_files(veth, env, bpffs_dir) -> None:  # type: ignore[no-untyped-def]
    from dispatcher.kernel import bpf, loader
    from dispatcher.obj.elf import read_object

    spec = read_object(example("xdp_blocklist"))
    lo, p = loader.load_object_program(spec, spec.programs[0], pin_root=bpffs_dir)
    with lo, p.fd:
        prog_pin = os.path.join(bpffs_dir, "prog")
        bpf.obj_pin(p.fd.fd, prog_pin)
    map_pin = os.path.join(bpffs_dir, "blocklist")       # pinned by name: reads as text
    for pin in (prog_pin, map_pin):
        for args in (("inspect", pin), ("load", veth.host_if, pin, "-m", "skb")):
            cp = run_cli(*args, env=env)
            assert_one_line_error(cp, f"{pin}: is a pinned BPF object", "not an object file")
            assert cp.returncode == 2
    assert _status(veth.host_if)["kind"] == "none"


def test_features_of_an_interface_in_a_netns(veth) -> None:  # type: ignore[no-untyped-def]
    cp = run_cli("features", "--netns", veth.netns, veth.peer_if)
    assert cp.returncode == 0, cp.stderr
    (line,) = [ln for ln in cp.stdout.splitlines() if ln.startswith("interface")]
    assert f"{veth.peer_if} (ifindex {veth.peer_ifindex}): skb yes, native yes" in line, line
    assert "{" not in line


def test_status_json_gives_each_linked_component_its_map_ids(veth, env) -> None:  # type: ignore[no-untyped-def]
    from dispatcher.kernel import bpf

    run_cli("load", veth.host_if, example("xdp_counter"), example("xdp_pass"), "-m", "skb",
            "--dispatch", "linked", check=True, env=env)
    progs = {p["name"]: p for p in _status(veth.host_if)["programs"]}
    assert progs["xdp_pass"]["maps"] == {}
    mid = progs["xdp_counter"]["maps"]["counters"]
    with bpf.map_get_fd_by_id(mid) as fd:      # a live map, and the one named so
        assert bpf.map_info(fd.fd).name == "counters"


def _cfg(path, iface: str, programs: list[dict], **extra: str) -> str:  # type: ignore[no-untyped-def,type-arg]
    path.write_text(yaml.safe_dump({"version": 1, "interfaces": [
        {"name": iface, "mode": "skb", **extra, "programs": programs}]}))
    return str(path)


@pytest.mark.parametrize("obj,prog", [("xdp_not_attachable", "tc_pass"),
                                      ("xdp_devmap_legacy", "devmap_legacy"),
                                      ("xdp_kfunc_mixed", "xdp_uses_kfunc")])
def test_plan_and_apply_refuse_before_the_kernel(veth, env, tmp_path, obj, prog) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg(tmp_path / "c.yaml", veth.host_if, [
        {"name": "x", "object": example(obj), "program": prog}])
    for cmd in ("check", "plan", "apply"):
        cp = run_cli(cmd, cfg, env=env)
        assert cp.returncode == 2, (cmd, cp.stdout, cp.stderr)
        assert "RTM_SETLINK" not in cp.stderr and "Traceback" not in cp.stderr
        assert {"tc_pass": "not an XDP program", "devmap_legacy": "devmap program",
                "xdp_uses_kfunc": "references extern symbol 'bpf_dynptr_from_xdp'"}[prog] \
            in cp.stderr
    assert _status(veth.host_if)["kind"] == "none"


def test_apply_with_prog_type_and_rebuild(veth, env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    progs = [{"name": "tx", "object": example("xdp_tx_section"), "prog_type": "xdp", "priority": 10},
             {"name": "pass", "object": example("xdp_pass"), "priority": 20}]
    # a linked chain on every kernel: its rebuild redoes the chosen type from the settings
    cfg = _cfg(tmp_path / "c.yaml", veth.host_if, progs, dispatch="linked")
    run_cli("apply", cfg, check=True, env=env)
    assert [p["name"] for p in _status(veth.host_if)["programs"]] == ["tx", "pass"]
    progs[1]["priority"] = 5            # rebuild: "tx" is kept and relinked
    _cfg(tmp_path / "c.yaml", veth.host_if, progs, dispatch="linked")
    cp = run_cli("apply", cfg, env=env)
    assert cp.returncode == 0, cp.stderr
    assert [p["name"] for p in _status(veth.host_if)["programs"]] == ["pass", "tx"]
    assert run_cli("plan", cfg, env=env).returncode == 0
