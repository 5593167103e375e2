"""Config error marks, in process and word for word: where each message points (line and
column of the key or the value), the path, the YAML-boolean hint, the "did you mean" and
"expected one of" lists. The mutation run found these parts of model.py's mark logic
(_translate, _at, _Converter, _model_fields_at) unchecked by the bad_configs table."""

from __future__ import annotations

import pytest

from dispatcher.config.model import (
    _at,
    _Err,
    _fmt_path,
    _Mark,
    _model_fields_at,
    _nearest,
    _raise,
    parse_config,
)
from dispatcher.errors import ConfigError

CASES = [
    ('globals_key',
     'version: 1\ninterfaces:\n  - name: lo\n    programs:\n      - name: a\n        object: a.o\n        globals: {"1x": 5}\n',
     'c.yaml:7:19: interfaces[0].programs[0].globals.1x: not a C variable name: "1x"'),
    ('bool_yes',
     'version: 1\ninterfaces:\n  - name: yes\n    programs: []\n',
     'c.yaml:3:11: interfaces[0].name: must be an interface name, a list of names or a glob pattern, got true (YAML reads yes as a boolean; quote it: "yes")'),
    ('bool_off',
     'version: 1\ninterfaces:\n  - name: lo\n    programs:\n      - name: off\n        object: a.o\n',
     'c.yaml:5:15: interfaces[0].programs[0].name: must be a string, got false (YAML reads off as a boolean; quote it: "off")'),
    ('close',
     'version: 1\ninterfaces:\n  - name: lo\n    programs:\n      - name: a\n        object: a.o\n        priorty: 3\n',
     'c.yaml:7:9: interfaces[0].programs[0]: unknown key "priorty" (did you mean "priority"?)'),
    ('far',
     'version: 1\nintrfaces: []\nzzz: 1\n',
     'c.yaml:1:1: missing required key "interfaces"\nc.yaml:2:1: unknown key "intrfaces" (did you mean "interfaces"?)\nc.yaml:3:1: unknown key "zzz" (expected one of version, interfaces, strict, on_drift)'),
    ('iface_far',
     'version: 1\ninterfaces:\n  - name: lo\n    qqq: 1\n    programs: []\n',
     'c.yaml:4:5: interfaces[0]: unknown key "qqq" (expected one of name, mode, dispatch, netns, stats, inline, dispatcher_version, programs)'),
    ('missing',
     'version: 1\ninterfaces:\n  - programs: []\n',
     'c.yaml:3:5: interfaces[0]: missing required key "name"'),
    ('missing_top',
     'interfaces: []\n',
     'c.yaml:1:1: missing required key "version"'),
    ('nonscalar',
     'version: 1\n? [a, b]\n: 1\ninterfaces: []\n',
     'c.yaml:2:3: keys must be plain strings'),
    ('badtag',
     'version: !!int x\ninterfaces: []\n',
     'c.yaml:1:10: version: cannot read "x" as tag:yaml.org,2002:int'),
    ('both',
     'version: 1\ninterfaces:\n  - name: lo\n    programs:\n      - name: a\n        object: a.o\n        program: f\n        section: xdp\n',
     'c.yaml:8:9: interfaces[0].programs[0].section: give either "program" or "section", not both'),
    ('type',
     'version: 1\ninterfaces:\n  - name: lo\n    programs:\n      - name: a\n        object: a.o\n        priority: high\n        enabled: 3\n',
     'c.yaml:7:19: interfaces[0].programs[0].priority: must be 0..1000, got "high"\nc.yaml:8:18: interfaces[0].programs[0].enabled: must be true or false, got 3'),
    ('deep',
     'version: 1\ninterfaces:\n  - name: lo\n    programs:\n      - name: a\n        object: a.o\n        chain_call_actions: [pass, bogus]\n',
     'c.yaml:7:36: interfaces[0].programs[0].chain_call_actions[1]: unknown XDP action "bogus" (expected one of XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT)'),
    ('listnotmap',
     'version: 1\ninterfaces: [3]\n',
     'c.yaml:2:14: interfaces[0]: must be a mapping, got 3'),
    ('notmap',
     '- 1\n',
     'c.yaml:1:1: must be a mapping, got a list'),
    ('globals_val',
     'version: 1\ninterfaces:\n  - name: lo\n    programs:\n      - name: a\n        object: a.o\n        globals: {x: {a: 1}}\n',
     'c.yaml:7:22: interfaces[0].programs[0].globals.x: must be an integer, a boolean, a string or a list of integers, got a mapping'),
    ('empty_name',
     "version: 1\ninterfaces:\n  - name: lo\n    programs:\n      - name: ''\n        object: a.o\n",
     'c.yaml:5:15: interfaces[0].programs[0].name: must not be empty, got ""'),
    ('dup',
     'version: 1\nversion: 1\ninterfaces: []\n',
     'c.yaml:2:1: version: duplicate key "version" (first given on line 1)'),
    ('pin',
     'version: 1\ninterfaces:\n  - name: lo\n    programs:\n      - name: a\n        object: a.o\n        pin_maps: rel/dir\n',
     'c.yaml:7:19: interfaces[0].programs[0].pin_maps: must be an absolute directory (on bpffs), got "rel/dir"'),
    ('dispatch',       # pydantic's own wording, first letter lowered
     'version: 1\ninterfaces:\n  - name: lo\n    dispatch: bogus\n    programs: []\n',
     'c.yaml:4:15: interfaces[0].dispatch: input should be \'auto\', \'freplace\' or '
     '\'linked\', got "bogus"'),
    ('nonscalar_nested',
     'version: 1\ninterfaces:\n  - name: lo\n    ? [a]\n    : 1\n    programs: []\n',
     'c.yaml:4:7: interfaces[0]: keys must be plain strings'),
    ('both_and_more',  # program+section is found even where validation stops earlier
     'version: 1\ninterfaces:\n  - name: lo\n    programs: null\n  - name: eth0\n'
     '    programs:\n      - name: a\n        object: a.o\n        program: f\n'
     '        section: xdp\n        priority: high\n',
     'c.yaml:4:15: interfaces[0].programs: must be a list, got null\n'
     'c.yaml:10:9: interfaces[1].programs[0].section: give either "program" or "section", '
     'not both\n'
     'c.yaml:11:19: interfaces[1].programs[0].priority: must be 0..1000, got "high"'),
]


@pytest.mark.parametrize("name,text,message", CASES, ids=[c[0] for c in CASES])
def test_marks_word_for_word(name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml", "/b")
    assert e.value.message == message


def test_error_format_and_order() -> None:
    assert _Err(0, 0, "a.b", "m").fmt("s") == "s: a.b: m"        # no mark: no line:col
    assert _Err(3, 4, "", "m").fmt("s") == "s:3:4: m"             # no path
    assert _Err(3, 4, "p", "m").fmt("s") == "s:3:4: p: m"
    assert _fmt_path(("interfaces", 0, "programs", 2, "x")) == "interfaces[0].programs[2].x"
    assert _fmt_path((0, "a")) == "[0].a" and _fmt_path(()) == ""
    with pytest.raises(ConfigError) as e:
        _raise([_Err(5, 1, "b", "z"), _Err(2, 9, "a", "y"), _Err(2, 3, "c", "x"),
                _Err(2, 3, "b", "x"), _Err(5, 1, "b", "z")], "s")
    assert e.value.message == "s:2:3: b: x\ns:2:3: c: x\ns:2:9: a: y\ns:5:1: b: z"
    _raise([], "s")                                                 # nothing: no error


def test_nearest_mark_and_no_mark() -> None:
    m = _Mark(3, 5, 2, 1, None)
    assert _nearest(("a", 0, "b"), {("a",): m}) == (("a",), m)
    assert _nearest(("a", 0, "b"), {("a", 0): m}) == (("a", 0), m)
    assert _nearest(("z",), {("a",): m}) == ((), None)
    assert _at(("a", 0, "b"), "msg", {("a",): m}, "key") == _Err(3, 5, "a[0].b", "msg")
    assert _at(("a",), "msg", {("a",): m}, "key") == _Err(2, 1, "a", "msg")
    assert _at(("a",), "msg", {}, "value") == _Err(0, 0, "a", "msg")


def test_model_fields_by_depth() -> None:
    assert _model_fields_at(())[:2] == ["version", "interfaces"]
    assert "programs" in _model_fields_at(("interfaces", 0))
    assert "priority" in _model_fields_at(("interfaces", 0, "programs", 1))
    assert _model_fields_at(("interfaces", 0, "programs")) == []
    assert _model_fields_at(("interfaces", 0, "x", 1)) == []
    assert _model_fields_at(("interfaces",)) == []
