"""Config layer: YAML -> models, exact file:line:col messages, semantic checks, schema."""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.config.model import (
    ChainConfig,
    check_config,
    expand_names,
    json_schema,
    load_and_check,
    load_config,
    normalize_action,
)
from dispatcher.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
BAD = Path(__file__).resolve().parent / "bad_configs"

ISSUE_EXAMPLE = """\
version: 1
interfaces:
  - name: eth0
    mode: skb
    programs:
      - name: firewall
        object: objs/firewall.o      # relative to this file
        program: xdp_firewall        # function name; or `section: xdp`
        priority: 10
        chain_call_actions: [XDP_PASS]
      - name: counter
        object: objs/counter.o
        priority: 20                 # actions default to the object's run config
"""


def test_issue_example_accepted_as_written(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ISSUE_EXAMPLE)
    cfg = load_config(str(path))
    iface = cfg.interfaces[0]
    assert cfg.version == 1 and iface.name == "eth0" and iface.mode == "skb"
    fw, counter = iface.programs
    assert fw.object == str(tmp_path / "objs" / "firewall.o")
    assert (fw.program, fw.section, fw.priority, fw.chain_call_actions) == \
        ("xdp_firewall", None, 10, ["XDP_PASS"])
    assert (counter.program, counter.priority, counter.chain_call_actions, counter.enabled) == \
        (None, 20, None, True)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_example_configs_pass_load_and_check(name: str) -> None:
    cfg = load_and_check(str(CONFIGS / name))
    assert cfg.interfaces
    for iface in cfg.interfaces:
        for prog in iface.programs:
            assert os.path.isabs(prog.object) and os.path.isfile(prog.object)


def test_examples_exist() -> None:
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {"lo-pass-counter.yaml", "firewall-counter.yaml", "several-interfaces.yaml",
            "frags.yaml", "netns.yaml", "pinned-maps.yaml"} <= names


def _bad_cases() -> list[str]:
    return sorted(p.stem for p in BAD.glob("*.yaml"))


def _run_bad(name: str) -> list[str]:
    first = (BAD / f"{name}.yaml").read_text().splitlines()[:1]
    interfaces = None
    if first and first[0].startswith("# interfaces:"):
        interfaces = [s.strip() for s in first[0].split(":", 1)[1].split(",")]
    with pytest.raises(ConfigError) as exc:
        load_and_check(f"{name}.yaml", interfaces=interfaces)
    return exc.value.message.splitlines()


def test_bad_table_is_large_enough() -> None:
    assert len(_bad_cases()) >= 20
    for name in _bad_cases():
        assert (BAD / f"{name}.expected").is_file(), name


@pytest.mark.parametrize("name", _bad_cases())
def test_bad_config_exact_messages(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD)
    expected = (BAD / f"{name}.expected").read_text().splitlines()
    assert _run_bad(name) == expected


def test_three_problems_three_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD)
    assert len(_run_bad("three_problems")) == 3


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load_config("/nonexistent/nope.yaml")


def test_check_config_uses_given_reader(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(ISSUE_EXAMPLE)
    cfg = load_config(str(tmp_path / "c.yaml"))
    seen: list[str] = []

    def reader(path: str) -> Any:
        seen.append(path)
        raise FileNotFoundError(2, "No such file or directory")

    problems = check_config(cfg, read_object=reader, interfaces=["eth0"])
    assert seen == [str(tmp_path / "objs/firewall.o"), str(tmp_path / "objs/counter.o")]
    assert problems == [
        f'{tmp_path}/c.yaml:7:17: interfaces[0].programs[0].object: cannot use '
        '"objs/firewall.o": No such file or directory',
        f'{tmp_path}/c.yaml:12:17: interfaces[0].programs[1].object: cannot use '
        '"objs/counter.o": No such file or directory',
    ]


def test_expand_names() -> None:
    avail = ["lo", "eth0", "veth1", "veth0", "vethx"]
    assert expand_names("eth0", avail) == ["eth0"]
    assert expand_names("missing", avail) == ["missing"]
    assert expand_names("veth*", avail) == ["veth1", "veth0", "vethx"]
    assert expand_names("veth[0-9]", avail) == ["veth1", "veth0"]
    assert expand_names(["lo", "veth?", "veth1"], avail) == ["lo", "veth1", "veth0", "vethx"]
    assert expand_names("nomatch*", avail) == []


@pytest.mark.parametrize("raw,norm", [("pass", "XDP_PASS"), ("XDP_DROP", "XDP_DROP"),
                                      ("xdp_tx", "XDP_TX"), ("Redirect", "XDP_REDIRECT"),
                                      ("aborted", "XDP_ABORTED")])
def test_normalize_action(raw: str, norm: str) -> None:
    assert normalize_action(raw) == norm


def test_json_schema() -> None:
    schema = json_schema()
    assert schema["required"] == ["version", "interfaces"]
    assert "ProgramConfig" in schema["$defs"]
    assert schema["$defs"]["ProgramConfig"]["additionalProperties"] is False
    assert set(schema["$defs"]["InterfaceConfig"]["properties"]) == \
        {"name", "mode", "netns", "programs", "dispatch", "stats", "inline",
         "dispatcher_version"}
    assert schema["$defs"]["InterfaceConfig"]["properties"]["dispatch"]["enum"] == [
        "auto", "freplace", "linked"]


# -- property: random valid configs survive YAML -----------------------------------------

_word = st.text(string.ascii_letters + string.digits + "_-. ", min_size=1, max_size=12)
_ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
_ifname = st.from_regex(r"[a-z][a-z0-9]{0,8}\*?", fullmatch=True)
_action = st.sampled_from(["pass", "XDP_PASS", "xdp_drop", "Tx", "XDP_REDIRECT", "aborted"])
_global = st.one_of(st.integers(-2**63, 2**64 - 1), st.booleans(), _word,
                    st.lists(st.integers(0, 255), max_size=4))


@st.composite
def _program(draw: st.DrawFn) -> dict[str, Any]:
    p: dict[str, Any] = {"name": draw(_word), "object": draw(st.sampled_from(
        ["a.o", "objs/b.o", "../c.o", "/abs/d.o"]))}
    which = draw(st.sampled_from(["program", "section", None]))
    if which:
        p[which] = draw(_ident)
    opt = {
        "priority": st.integers(0, 1000),
        "chain_call_actions": st.lists(_action, max_size=3),
        "frags": st.booleans(),
        "enabled": st.booleans(),
        "pin_maps": st.sampled_from(["/sys/fs/bpf/x", "/sys/fs/bpf/a b/c"]),
        "globals": st.dictionaries(_ident, _global, max_size=3),
    }
    for key, strat in opt.items():
        if draw(st.booleans()):
            p[key] = draw(st.one_of(st.none(), strat) if key != "enabled" else strat)
    return p


@st.composite
def _config(draw: st.DrawFn) -> dict[str, Any]:
    ifaces = []
    for _ in range(draw(st.integers(0, 3))):
        name: Any = draw(st.one_of(_ifname, st.lists(_ifname, min_size=1, max_size=3,
                                                      unique=True)))
        iface: dict[str, Any] = {"name": name, "programs": draw(st.lists(_program(),
                                                                         max_size=4))}
        if draw(st.booleans()):
            iface["mode"] = draw(st.sampled_from(["native", "skb", "hw"]))
        if draw(st.booleans()):
            iface["netns"] = draw(_word)
        ifaces.append(iface)
    return {"version": 1, "interfaces": ifaces}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_config())
def test_random_valid_configs_roundtrip(data: dict[str, Any], tmp_path_factory:
                                        pytest.TempPathFactory) -> None:
    d = tmp_path_factory.mktemp("cfg")
    path = d / "c.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_config(str(path))
    direct = ChainConfig.model_validate(data, context={"base_dir": str(d)})
    assert loaded.model_dump() == direct.model_dump()


def _nodes(n: yaml.Node, out: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    out.append((type(n).__name__, n.tag, None if isinstance(n.value, list) else n.value,
                n.start_mark.line, n.start_mark.column, n.end_mark.line, n.end_mark.column))
    if isinstance(n.value, list):
        for x in n.value:
            for y in (x if isinstance(x, tuple) else (x,)):
                _nodes(y, out)
    return out


def test_libyaml_and_python_loader_give_the_same_nodes_and_marks() -> None:
    """parse_config composes with libyaml (fast) and falls back to PyYAML's own loader for
    the error message; every node and line:column mark must be the same with both."""
    import glob

    from dispatcher.config import model as config_mod

    if config_mod._FAST_LOADER is yaml.SafeLoader:
        pytest.skip("PyYAML was built without libyaml: only the Python loader is used")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    files = sorted(glob.glob(os.path.join(repo, "configs", "*.yaml"))
                   + glob.glob(os.path.join(repo, "tests", "**", "*.yaml"), recursive=True))
    compared = 0
    for f in files:
        with open(f, encoding="utf-8") as fh:
            text = fh.read()
        try:
            slow = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            with pytest.raises(yaml.YAMLError):
                yaml.compose(text, Loader=config_mod._FAST_LOADER)
            continue
        fast = yaml.compose(text, Loader=config_mod._FAST_LOADER)
        if slow is None:
            assert fast is None
            continue
        assert _nodes(fast, []) == _nodes(slow, []), f
        compared += 1
    assert compared >= 30
