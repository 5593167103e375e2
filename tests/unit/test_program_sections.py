"""Programs in sections that name no type, or a type that cannot be attached to an
interface (tc, devmap programs in libbpf's and the legacy spelling): ``inspect`` lists
every one with the kernel's type name and says why it is skipped; ``check`` (and so
``plan``/``apply``, which start with the same checks) refuses them as ``load -n`` does,
before any kernel call; ``prog_type: xdp`` chooses the type of an untyped program."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.cli import assert_one_line_error, run_cli
from tests.objects import example


def _inspect(name: str) -> dict[str, dict]:  # type: ignore[type-arg]
    d = json.loads(run_cli("inspect", example(name), "--json", check=True).stdout)
    return {p["name"]: p for p in d["programs"]}


def test_program_in_an_untyped_section_is_listed() -> None:
    progs = _inspect("xdp_tx_section")
    p = progs["xdp_in_tx"]
    assert p["section"] == "tx" and p["type"] == "unknown"
    assert "--prog-type xdp" in p["skipped"] and "prog_type: xdp" in p["skipped"]
    text = run_cli("inspect", example("xdp_tx_section"), check=True).stdout
    assert "xdp_in_tx" in text and "(none)" not in text.split("Maps:")[0]


def test_non_xdp_types_have_kernel_names_and_no_run_config() -> None:
    progs = _inspect("xdp_not_attachable")
    assert progs["tc_pass"]["type"] == "sched_cls" and progs["tc_pass"]["run_config"] is None
    assert progs["tc_pass"]["skipped"] == "not an XDP program (sched_cls)"
    legacy = _inspect("xdp_devmap_legacy")["devmap_legacy"]
    for p in (progs["devmap_pass"], legacy):
        assert p["skipped"] == "devmap program, not attachable to an interface"
    assert "type3" not in run_cli("inspect", example("xdp_not_attachable"), check=True).stdout


def test_attachable_programs_are_not_marked() -> None:
    assert _inspect("xdp_runcfg")["xdp_runcfg"]["skipped"] is None


def test_inspect_refuses_an_unknown_program_name() -> None:
    cp = run_cli("inspect", example("xdp_pass"), "-n", "nope")
    assert_one_line_error(cp, "no program named 'nope'")
    assert cp.returncode == 2


def _cfg(tmp_path, **entry) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "interfaces": [
        {"name": "eth0", "programs": [{"name": "p", **entry}]}]}, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("entry,fragment", [
    ({"object": example("xdp_not_attachable"), "program": "tc_pass"},
     "program tc_pass (section tc) is not an XDP program"),
    ({"object": example("xdp_not_attachable"), "section": "tc"},
     "program tc_pass (section tc) is not an XDP program"),
    ({"object": example("xdp_devmap_legacy"), "program": "devmap_legacy"},
     "program devmap_legacy (section xdp_devmap/egress) is a devmap program, not attachable "
     "to an interface"),
    ({"object": example("xdp_not_attachable"), "program": "devmap_pass"},
     "is a devmap program, not attachable to an interface"),
    ({"object": example("xdp_tx_section")},
     'program xdp_in_tx (section tx) is in a section that names no program type (add '
     '"prog_type: xdp"'),
    ({"object": example("xdp_not_attachable"), "program": "tc_pass", "prog_type": "xdp"},
     "is a sched_cls program by its section"),
])
def test_check_refuses_what_load_refuses(tmp_path, entry, fragment) -> None:  # type: ignore[no-untyped-def]
    cp = run_cli("check", _cfg(tmp_path, **entry))
    assert cp.returncode == 2, cp.stdout
    assert "Traceback" not in cp.stderr
    assert "c.yaml:" in cp.stderr and fragment in cp.stderr, cp.stderr


def test_check_accepts_a_chosen_type(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cp = run_cli("check", _cfg(tmp_path, object=example("xdp_tx_section"), prog_type="xdp"))
    assert cp.returncode == 0, cp.stderr


def test_prog_type_takes_only_xdp(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cp = run_cli("check", _cfg(tmp_path, object=example("xdp_tx_section"), prog_type="tc"))
    assert cp.returncode == 2 and "prog_type" in cp.stderr and "Traceback" not in cp.stderr


def test_kfunc_caller_refused_by_check_the_other_program_accepted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    obj = example("xdp_kfunc_mixed")
    cp = run_cli("check", _cfg(tmp_path, object=obj, program="xdp_uses_kfunc"))
    assert cp.returncode == 2 and "Traceback" not in cp.stderr
    assert ("program xdp_uses_kfunc: references extern symbol 'bpf_dynptr_from_xdp'"
            in cp.stderr), cp.stderr
    assert run_cli("check", _cfg(tmp_path, object=obj, program="xdp_plain")).returncode == 0
    progs = _inspect("xdp_kfunc_mixed")
    assert progs["xdp_plain"]["skipped"] is None
    assert "bpf_dynptr_from_xdp" in progs["xdp_uses_kfunc"]["skipped"]


def test_object_btf_is_sanitized_like_libbpf() -> None:
    from dispatcher.obj.btf import FUNC_EXTERN, VAR_GLOBAL_EXTERN, BtfKind
    from dispatcher.obj.elf import read_object

    btf = read_object(example("xdp_kfunc_mixed")).btf
    assert btf is not None
    funcs = {t.name: t for t in btf.types if t.kind == BtfKind.FUNC}
    assert "bpf_dynptr_from_xdp" in funcs                      # kept (type ids unchanged)
    assert all(t.linkage != FUNC_EXTERN for t in funcs.values())
    assert all(t.linkage != VAR_GLOBAL_EXTERN for t in btf.types if t.kind == BtfKind.VAR)
    proto = btf.types[funcs["bpf_dynptr_from_xdp"].size_or_type]
    assert all(p.name_off for p in proto.params)                # the kernel wants names
    (ksyms,) = [t for t in btf.types if t.kind == BtfKind.DATASEC and t.name == ".ksyms"]
    assert ksyms.secinfos == () and ksyms.size_or_type > 0
