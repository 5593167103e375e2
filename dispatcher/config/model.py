"""Declarative chain config: YAML file -> validated pydantic models, with exact error marks.

Pure: reading the file is the only I/O of ``load_config``; ``check_config`` reads object
files only through the callable it is given. Every error line has the form
``FILE:LINE:COL: KEY.PATH: message`` (1-based line and column of the YAML node at fault).
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dispatcher import safeio
from dispatcher.errors import ConfigError, ObjectFileError
from dispatcher.obj.actions import XDP_ACTIONS
from dispatcher.obj.elf import read_object as _default_read_object
from dispatcher.obj.link import extern_problem
from dispatcher.obj.spec import ObjectSpec, ProgramSpec, bad_pin_names
from dispatcher.obj.variables import OverrideError, check_override
from dispatcher.uapi import IFNAMSIZ

MAX_ENABLED_PROGRAMS = 10
PRIORITY_MAX = 1000
_GLOB_CHARS = "*?["
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

Loc = tuple[int | str, ...]
GlobalValue = bool | int | str | list[int]


@dataclass(frozen=True, slots=True)
class _Mark:
    line: int               # 1-based, of the value node
    col: int
    key_line: int           # of the key node (== value node for sequence items / root)
    key_col: int
    text: str | None = None  # raw scalar text


def _fail(msg: str, sub: Loc = (), at: str = "value") -> PydanticCustomError:
    """A validation error with a human message; ``sub`` extends the loc, ``at`` picks the mark."""
    return PydanticCustomError("cfg", "{msg}", {"msg": msg, "sub": list(sub), "at": at})


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _is_glob(name: str) -> bool:
    return any(c in name for c in _GLOB_CHARS)


def _ifname_problem(name: Any, exact: bool = False) -> str | None:
    if not isinstance(name, str):
        return f"must be an interface name (a string), got {_show(name)}"
    if not name:
        return "must not be empty"
    if "/" in name or any(c.isspace() for c in name) or name in (".", ".."):
        return f"not a valid interface name: {_show(name)}"
    if (exact or not _is_glob(name)) and len(name) >= IFNAMSIZ:
        return f"interface names have at most {IFNAMSIZ - 1} characters, got {_show(name)}"
    return None


def normalize_action(value: str) -> str:
    """``pass`` / ``xdp_pass`` / ``XDP_PASS`` -> ``XDP_PASS``; ValueError if unknown."""
    up = value.strip().upper()
    if not up.startswith("XDP_"):
        up = "XDP_" + up
    if up not in XDP_ACTIONS:
        raise ValueError(up)
    return up


class ProgramConfig(BaseModel):
    """One program of a chain."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, description="Name for humans, unique per interface")
    object: str = Field(min_length=1, description="BPF object file, relative to the config file")
    program: str | None = Field(None, min_length=1, description="Function name in the object")
    section: str | None = Field(None, min_length=1, description="ELF section (instead of program)")
    prog_type: Literal["xdp"] | None = Field(
        None, description="Program type for a program whose ELF section names none "
                          "(as bpftool's `prog load ... type xdp`)")
    priority: int | None = Field(None, ge=0, le=PRIORITY_MAX,
                                 description="0..1000, lower runs first; default: object's run config")
    chain_call_actions: list[str] | None = Field(
        None, description="XDP actions that continue the chain; default: object's run config")
    frags: bool | None = Field(None, description="Multi-buffer support; default: from the object")
    enabled: bool = Field(True, description="False keeps the entry in the file but out of the chain")
    pin_maps: str | None = Field(None, description="bpffs directory for maps pinned by name")
    globals: dict[str, GlobalValue] | None = Field(
        None, description=".rodata/.data variable overrides, by variable name")

    @field_validator("object", mode="after")
    @classmethod
    def _resolve_object(cls, value: str, info: ValidationInfo) -> str:
        ctx = info.context if isinstance(info.context, dict) else {}
        base = ctx.get("base_dir") or os.getcwd()
        return os.path.normpath(os.path.join(str(base), value))

    @field_validator("chain_call_actions", mode="before")
    @classmethod
    def _actions(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # the list type check reports it
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise _fail(f"must be an XDP action name, got {_show(item)}", (i,))
            try:
                act = normalize_action(item)
            except ValueError:
                raise _fail(f"unknown XDP action {_show(item)} (expected one of "
                            f"{', '.join(XDP_ACTIONS)})", (i,)) from None
            if act not in out:
                out.append(act)
        return out

    @field_validator("pin_maps", mode="after")
    @classmethod
    def _pin_dir(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isabs(value):
            raise _fail(f"must be an absolute directory (on bpffs), got {_show(value)}")
        return value

    @field_validator("globals", mode="before")
    @classmethod
    def _globals(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for key, val in value.items():
            if not isinstance(key, str) or not _IDENT.match(key):
                raise _fail(f"not a C variable name: {_show(key)}", (key,), at="key")
            ok = (isinstance(val, bool | int | str)
                  or (isinstance(val, list)
                      and all(isinstance(v, int) and not isinstance(v, bool) for v in val)))
            if not ok:
                raise _fail("must be an integer, a boolean, a string or a list of integers, "
                            f"got {_show(val)}", (key,))
        return value

    @model_validator(mode="after")
    def _program_or_section(self) -> ProgramConfig:
        if self.program is not None and self.section is not None:
            raise _fail(_BOTH_MSG, ("section",), at="key")
        return self


_BOTH_MSG = 'give either "program" or "section", not both'


class ExactName(BaseModel):
    """An interface name matched literally: ``{exact: "eth[0]"}`` names the interface
    ``eth[0]`` (a plain string with ``*``, ``?`` or ``[`` is a glob pattern)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    exact: str = Field(description="Interface name, matched exactly (no glob)")


def _name_item(value: Any, sub: Loc = ()) -> Any:
    """A name item as the model holds it: a string, or an ExactName for ``{exact: NAME}``."""
    if isinstance(value, dict) and set(value) == {"exact"}:
        problem = _ifname_problem(value["exact"], exact=True)
        if problem:
            raise _fail(problem, (*sub, "exact"))
        return ExactName(exact=value["exact"])
    problem = _ifname_problem(value)
    if problem:
        raise _fail(problem, sub)
    return value


def _plain(item: str | ExactName) -> str:
    return item.exact if isinstance(item, ExactName) else item


class InterfaceConfig(BaseModel):
    """The chain of one interface (or of each interface a list / glob names)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | ExactName | list[str | ExactName] = Field(
        description='Interface name, a list of names, or a glob pattern such as "veth*"; '
                    '{exact: NAME} names an interface whose name has *, ? or [ in it')
    mode: Literal["native", "skb", "hw"] = Field("native", description="XDP attach mode")
    dispatch: Literal["auto", "freplace", "linked"] = Field(
        "auto", description="How several programs are chained: freplace (libxdp's dispatcher), "
                            "linked (one program linked from all; no freplace needed) or auto "
                            "(freplace where the kernel allows it, else linked)")
    netns: str | None = Field(None, min_length=1, description="Network namespace name")
    stats: Literal["off", "counts", "timing"] | None = Field(
        None, description="Per-component packet counters: counts, timing (counts and run "
                          "time per component) or off (default: keep the chain's setting; a "
                          "new linked chain counts, a new freplace chain does not)")
    inline: bool | None = Field(
        None, description="A linked chain inlines each component's entry function into its "
                          "main program, saving a call per slot: true or false (default: keep "
                          "the chain's setting; a new linked chain inlines)")
    dispatcher_version: Literal[2, 3] | None = Field(
        None, description="libxdp dispatcher version of a freplace chain: 2 (read by libxdp "
                          ">= 1.3) or 3 (libxdp >= 1.6). Default: an attached chain keeps its "
                          "version, a new one gets the installed libxdp's, else 2; a different "
                          "version on an attached chain is an upgrade in the same swap")
    programs: list[ProgramConfig] = Field(description="Programs of the chain")

    @field_validator("name", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise _fail("must not be empty")
            seen: set[str] = set()
            out = []
            for i, item in enumerate(value):
                item = _name_item(item, (i,))
                if _plain(item) in seen:
                    raise _fail(f"interface {_show(_plain(item))} is listed twice", (i,))
                seen.add(_plain(item))
                out.append(item)
            return out
        if isinstance(value, str) or (isinstance(value, dict) and set(value) == {"exact"}):
            return _name_item(value)
        raise _fail("must be an interface name, a list of names or a glob pattern, "
                    f"got {_show(value)}")

    def names(self) -> list[str]:
        """The names and patterns as written (an exact name as its plain string)."""
        items = self.name if isinstance(self.name, list) else [self.name]
        return [_plain(i) for i in items]

    def exact_names(self) -> frozenset[str]:
        """The names given as ``{exact: NAME}``: never globs."""
        items = self.name if isinstance(self.name, list) else [self.name]
        return frozenset(i.exact for i in items if isinstance(i, ExactName))

    def is_glob(self, name: str) -> bool:
        """Whether ``name`` (one of ``names()``) is a pattern."""
        return _is_glob(name) and name not in self.exact_names()


class ChainConfig(BaseModel):
    """A whole config file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: Literal[1] = Field(description="Config format version (1)")
    interfaces: list[InterfaceConfig] = Field(description="Chains, one entry per interface")
    strict: bool = Field(False, description="Refuse (instead of warning about) this file and "
                                            "object files that others can change, as --strict")
    on_drift: Literal["repair", "report"] = Field(
        "repair", description="What `xdp-dispatch agent` does when another tool replaces or "
                              "removes a chain: repair it (default) or only report it")

    _source: str = PrivateAttr("<config>")
    _marks: dict[Loc, _Mark] = PrivateAttr(default_factory=dict)
    _raw: Any = PrivateAttr(None)

    @property
    def source(self) -> str:
        return self._source


# -- YAML with marks ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Err:
    line: int
    col: int
    path: str
    msg: str

    def fmt(self, source: str) -> str:
        where = f"{source}:{self.line}:{self.col}" if self.line else source
        return f"{where}: {self.path}: {self.msg}" if self.path else f"{where}: {self.msg}"


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _fmt_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


#: Deepest nesting of mappings and lists a config may have (real ones need 4).
MAX_DEPTH = 32


class _Unbounded(Exception):
    """The composed YAML reuses a node (an alias) or nests too deep."""


def _scan_events(text: str, source: str, loader: Any) -> None:
    """Raise ConfigError at the first YAML alias or anchor, or nesting deeper than
    ``MAX_DEPTH``: configs need neither, and aliases make a few hundred bytes expand to
    gigabytes (or refer to themselves). Reads events only, never builds anything; a
    syntax error ends the scan silently (the composer reports it)."""
    depth = 0
    try:
        for ev in yaml.parse(text, Loader=loader):
            mark = ev.start_mark
            where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else f"{source}:1:1"
            if isinstance(ev, yaml.AliasEvent):
                raise ConfigError(f"{where}: YAML alias *{ev.anchor}: configs do not allow "
                                  "anchors and aliases; write the value out")
            anchor = getattr(ev, "anchor", None)
            if anchor:
                raise ConfigError(f"{where}: YAML anchor &{anchor}: configs do not allow "
                                  "anchors and aliases; write the value out")
            if isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels "
                                      "(a config needs 4)")
            elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return


class _Converter:
    def __init__(self) -> None:
        self.marks: dict[Loc, _Mark] = {}
        self.errors: list[_Err] = []
        self.unreadable: set[Loc] = set()
        self._scalars = yaml.SafeLoader("")
        self._seen: set[int] = set()

    def convert(self, node: yaml.Node, loc: Loc, key: yaml.Node | None = None) -> Any:
        if id(node) in self._seen or (len(loc) >= MAX_DEPTH and
                                      isinstance(node, yaml.CollectionNode)):
            raise _Unbounded
        self._seen.add(id(node))
        line, col = _pos(node)
        kl, kc = _pos(key) if key is not None else (line, col)
        text = node.value if isinstance(node, yaml.ScalarNode) else None
        self.marks[loc] = _Mark(line, col, kl, kc, text)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            first: dict[str, int] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    ln, cl = _pos(knode)
                    self.errors.append(_Err(ln, cl, _fmt_path(loc), "keys must be plain strings"))
                    continue
                name = str(knode.value)
                if name in first:
                    ln, cl = _pos(knode)
                    self.errors.append(_Err(ln, cl, _fmt_path(loc + (name,)),
                                            f"duplicate key {_show(name)} (first given on line "
                                            f"{first[name]})"))
                    continue
                first[name] = knode.start_mark.line + 1
                out[name] = self.convert(vnode, loc + (name,), knode)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, loc + (i,)) for i, item in enumerate(node.value)]
        try:
            return self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError):  # e.g. `!!int x`
            self.errors.append(_Err(line, col, _fmt_path(loc),
                                    f"cannot read {_show(text)} as {node.tag}"))
            self.unreadable.add(loc)
            return text


# -- pydantic error -> message -----------------------------------------------------------

_FIELD_MSG = {
    "version": "must be 1",
    "mode": "must be one of native, skb, hw",
    "priority": f"must be 0..{PRIORITY_MAX}",
}
_TYPE_MSG = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _model_fields_at(loc: Loc) -> list[str]:
    n = len(loc)
    if n == 0:
        return list(ChainConfig.model_fields)
    if n == 2 and loc[0] == "interfaces":
        return list(InterfaceConfig.model_fields)
    if n == 4 and loc[2] == "programs":
        return list(ProgramConfig.model_fields)
    return []




def _translate(err: Any, marks: dict[Loc, _Mark]) -> _Err:
    loc: Loc = tuple(err["loc"])
    etype: str = err["type"]
    ctx = err.get("ctx") or {}
    at = "value"
    if etype == "cfg":
        loc = loc + tuple(ctx.get("sub", ()))
        at = ctx.get("at", "value")
        if loc and loc[-1] == "section" and ctx["msg"] == _BOTH_MSG:
            at = "key"
        msg = str(ctx["msg"])
        return _at(loc, msg, marks, at)
    if etype == "missing":
        parent, key = loc[:-1], loc[-1]
        return _at(parent, f"missing required key {_show(key)}", marks, "value")
    if etype == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        fields = _model_fields_at(parent)
        msg = f"unknown key {_show(key)}"
        close = difflib.get_close_matches(key, fields, n=1)
        if close:
            msg += f" (did you mean {_show(close[0])}?)"
        elif fields:
            msg += f" (expected one of {', '.join(fields)})"
        return _at(loc, msg, marks, "key", path=parent)
    field = loc[-1] if loc else ""
    value = err.get("input")
    if isinstance(field, str) and field in _FIELD_MSG:
        base = _FIELD_MSG[field]
    elif etype in ("string_too_short", "too_short"):
        base = "must not be empty"
    elif etype in _TYPE_MSG:
        base = _TYPE_MSG[etype]
    else:
        text = str(err.get("msg", "invalid value"))
        base = text[:1].lower() + text[1:]
    return _at(loc, f"{base}, got {_show(value)}", marks, at)


def _nearest(loc: Loc, marks: dict[Loc, _Mark]) -> tuple[Loc, _Mark | None]:
    probe = loc
    while probe not in marks and probe:
        probe = probe[:-1]
    return probe, marks.get(probe)


_YAML_BOOLS = {"yes", "no", "on", "off", "y", "n"}


def _at(loc: Loc, msg: str, marks: dict[Loc, _Mark], at: str, path: Loc | None = None) -> _Err:
    found, mark = _nearest(loc, marks)
    if (mark is not None and found == loc and mark.text is not None
            and mark.text.lower() in _YAML_BOOLS and msg.endswith(("got true", "got false"))):
        msg += f' (YAML reads {mark.text} as a boolean; quote it: "{mark.text}")'
    if mark is None:
        line, col = 0, 0
    elif at == "key" and found == loc:
        line, col = mark.key_line, mark.key_col
    else:
        line, col = mark.line, mark.col
    return _Err(line, col, _fmt_path(loc if path is None else path), msg)


def _raw_both(raw: Any) -> Iterator[Loc]:
    """Programs naming both ``program`` and ``section`` (reported even if other fields fail)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("interfaces"), list):
        return
    for i, iface in enumerate(raw["interfaces"]):
        progs = iface.get("programs") if isinstance(iface, dict) else None
        if not isinstance(progs, list):
            continue
        for j, prog in enumerate(progs):
            if isinstance(prog, dict) and "program" in prog and "section" in prog:
                yield ("interfaces", i, "programs", j, "section")


# -- public API --------------------------------------------------------------------------


def _raise(errors: list[_Err], source: str) -> None:
    if errors:
        ordered = sorted(set(errors), key=lambda e: (e.line, e.col, e.path, e.msg))
        raise ConfigError("\n".join(e.fmt(source) for e in ordered))


_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config(path: str, text: bytes | None = None) -> ChainConfig:
    """Read, parse and validate a config file; ConfigError lists every problem, one per line.
    ``text``: the file's bytes as already read and checked (e.g. the agent's last good
    copy), parsed as ``path`` (objects relative to its directory) without reading it."""
    if text is not None:
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: cannot read: {e}") from None
        return parse_config(decoded, path, os.path.dirname(os.path.abspath(path)))
    try:
        data, st = safeio.read_regular(path, safeio.MAX_CONFIG_BYTES)
        decoded = data.decode("utf-8")
    except safeio.NotRegularError as e:
        raise ConfigError(f"{path}: {e.reason}") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    cfg = parse_config(decoded, path, os.path.dirname(os.path.abspath(path)))
    with safeio.strict_mode(cfg.strict):
        safeio.check_input(path, st, ConfigError)
    return cfg


def parse_config(text: str, source: str, base_dir: str) -> ChainConfig:
    """Validate config ``text``; ``source`` names it in messages, objects resolve in ``base_dir``."""
    if len(text) > safeio.MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than the {safeio.MAX_CONFIG_BYTES >> 20} MiB "
                          "limit of a config")
    if "&" in text:      # an anchor, or just text with '&': only then read the events
        _scan_events(text, source, _FAST_LOADER)
    try:
        try:
            # libyaml when PyYAML has it: same nodes and marks, several times faster
            root = yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            _scan_events(text, source, yaml.SafeLoader)     # libyaml stops at 1000 levels
            try:
                root = yaml.compose(text, Loader=yaml.SafeLoader)    # its messages, as tested
            except RecursionError:
                raise ConfigError(f"{source}:1:1: nested too deep") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigError(f"{source}:{line}:{col}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}:1:1: YAML syntax error: {e}") from None
    if root is None:
        raise ConfigError(f'{source}:1:1: empty config (expected a mapping with "version" '
                          'and "interfaces")')
    conv = _Converter()
    try:
        raw = conv.convert(root, ())
    except _Unbounded:
        _scan_events(text, source, _FAST_LOADER)      # raises, at the alias or the depth
        raise ConfigError(f"{source}:1:1: YAML aliases and nesting deeper than {MAX_DEPTH} "
                          "levels are not allowed in configs") from None
    errors = list(conv.errors)
    errors += [_at(loc, _BOTH_MSG, conv.marks, "key") for loc in _raw_both(raw)]
    cfg: ChainConfig | None = None
    try:
        cfg = ChainConfig.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as e:
        errors += [_translate(err, conv.marks) for err in e.errors()
                   if tuple(err["loc"]) not in conv.unreadable]
    _raise(errors, source)
    assert cfg is not None
    cfg._source = source
    cfg._marks = conv.marks
    cfg._raw = raw
    return cfg


def expand_names(pattern_or_list: str | list[str], available: list[str],
                 exact: frozenset[str] = frozenset()) -> list[str]:
    """Interface names an entry means: literals (and the names in ``exact``) as given,
    globs matched against ``available``."""
    items = [pattern_or_list] if isinstance(pattern_or_list, str) else pattern_or_list
    out: list[str] = []
    for item in items:
        matches = [a for a in available if fnmatch.fnmatchcase(a, item)] \
            if _is_glob(item) and item not in exact else [item]
        out += [m for m in matches if m not in out]
    return out


ReadObject = Callable[[str], ObjectSpec]


def check_config(cfg: ChainConfig, *, read_object: ReadObject = _default_read_object,
                 interfaces: list[str] | None = None) -> list[str]:
    """Semantic checks (objects, programs, names, limits); one formatted line per problem."""
    marks = cfg._marks
    raw = cfg._raw
    errors: list[_Err] = []
    cache: dict[str, ObjectSpec | str] = {}

    def add(loc: Loc, msg: str, at: str = "value") -> None:
        errors.append(_at(loc, msg, marks, at))

    owners: dict[str, Loc] = {}
    for i, iface in enumerate(cfg.interfaces):
        iloc: Loc = ("interfaces", i)
        names = iface.names()
        for k, name in enumerate(names):
            nloc = iloc + ("name",) + ((k,) if isinstance(iface.name, list) else ())
            if interfaces is not None:
                if iface.is_glob(name):
                    if not expand_names(name, interfaces):
                        add(nloc, f"pattern {_show(name)} matches no interface")
                elif name not in interfaces:
                    add(nloc, f"no interface named {_show(name)}")
            elif not iface.is_glob(name):
                key = f"{iface.netns or ''}/{name}"
                if key in owners:
                    add(nloc, f"interface {_show(name)} already has a chain at "
                              f"{_fmt_path(owners[key])}")
                else:
                    owners[key] = iloc
        if interfaces is not None:
            for name in expand_names(names, interfaces, iface.exact_names()):
                key = f"{iface.netns or ''}/{name}"
                if key in owners:
                    add(iloc + ("name",), f"interface {_show(name)} already has a chain at "
                                          f"{_fmt_path(owners[key])}")
                else:
                    owners[key] = iloc

        seen: dict[str, int] = {}
        enabled = 0
        for j, prog in enumerate(iface.programs):
            ploc: Loc = iloc + ("programs", j)
            if prog.name in seen:
                add(ploc + ("name",), f"duplicate program name {_show(prog.name)} "
                                      f"(also programs[{seen[prog.name]}])")
            else:
                seen[prog.name] = j
            if prog.enabled:
                enabled += 1
                if enabled == MAX_ENABLED_PROGRAMS + 1:
                    add(ploc, f"more than {MAX_ENABLED_PROGRAMS} enabled programs on one "
                              "interface (a dispatcher has 10 slots)")
            shown = _raw_at(raw, ploc + ("object",), prog.object)
            if prog.object not in cache:
                try:
                    cache[prog.object] = read_object(prog.object)
                except ObjectFileError as e:
                    msg = e.message
                    if msg.startswith(prog.object + ": "):
                        msg = msg[len(prog.object) + 2:]
                    cache[prog.object] = msg
                except OSError as e:
                    cache[prog.object] = e.strerror or str(e)
            spec = cache[prog.object]
            if isinstance(spec, str):
                add(ploc + ("object",), f"cannot use {_show(shown)}: {spec}")
                continue
            have = ", ".join(p.name for p in spec.programs) or "none"
            if prog.program is not None:
                if not any(p.name == prog.program for p in spec.programs):
                    add(ploc + ("program",), f"no program {_show(prog.program)} in "
                                             f"{_show(shown)} (programs: {have})")
            elif prog.section is not None:
                hits = [p for p in spec.programs if p.section == prog.section]
                if not hits:
                    secs = ", ".join(sorted({p.section for p in spec.programs})) or "none"
                    add(ploc + ("section",), f"no section {_show(prog.section)} in "
                                             f"{_show(shown)} (sections: {secs})")
                elif len(hits) > 1:
                    add(ploc + ("section",), f"section {_show(prog.section)} of {_show(shown)} "
                                             f"holds {len(hits)} programs ({', '.join(p.name for p in hits)}); "
                                             'name one with "program"')
            elif len(spec.programs) != 1:
                add(ploc, f"{_show(shown)} holds {len(spec.programs)} programs ({have}); "
                          'name one with "program"')
            problem = _attach_problem(spec, prog, _show(shown))
            if problem:
                add(ploc + (("program",) if prog.program else ("section",) if prog.section
                            else ()), problem)
            for why in bad_pin_names(spec.maps, pin_all=prog.pin_maps is not None):
                add(ploc + ("object",), f"cannot use {_show(shown)}: {why}")
            for var, value in (prog.globals or {}).items():
                try:
                    check_override(spec, var, value)
                except OverrideError as e:
                    unknown = str(e).startswith("no global variable")
                    sub = (var,) if e.index is None else (var, e.index)
                    add(ploc + ("globals", *sub), e.message.replace("the object", _show(shown)),
                        "key" if unknown else "value")
    ordered = sorted(set(errors), key=lambda e: (e.line, e.col, e.path, e.msg))
    return [e.fmt(cfg.source) for e in ordered]


def config_program(spec: ObjectSpec, prog: ProgramConfig) -> ProgramSpec | None:
    """The program an entry names (by ``program``, by ``section``, or the object's only
    program), with its ``prog_type`` chosen; None if that is not one program (the checks
    above say why)."""
    if prog.program is not None:
        hits = [p for p in spec.programs if p.name == prog.program]
    elif prog.section is not None:
        hits = [p for p in spec.programs if p.section == prog.section]
    else:
        hits = list(spec.programs)
    if len(hits) != 1:
        return None
    return hits[0].as_type(prog.prog_type) if prog.prog_type else hits[0]


def _attach_problem(spec: ObjectSpec, prog: ProgramConfig, shown: str) -> str | None:
    """Why the entry's program cannot be attached to an interface or linked (the rules of
    ``load``: ``ProgramSpec.interface_problem``, ``extern_problem``), or None."""
    try:
        p = config_program(spec, prog)
    except ObjectFileError as e:
        return f"{shown}: {e.message}"
    if p is None:
        return None
    if p.interface_problem is None:
        problem = extern_problem(spec, p)
        return f"{shown}: program {p.name}: {problem}" if problem else None
    msg = f"{shown}: program {p.name} (section {p.section}) {p.interface_problem}"
    if p.prog_type == 0:
        msg += ' (add "prog_type: xdp" to load it as an XDP program)'
    return msg


def _raw_at(raw: Any, loc: Loc, default: str) -> Any:
    cur = raw
    for part in loc:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return default
    return cur


def error_at(cfg: ChainConfig, loc: Loc, msg: str) -> str:
    """``FILE:LINE:COL: KEY.PATH: msg`` for a problem found after checking (e.g. at apply)."""
    return _at(loc, msg, cfg._marks, "value").fmt(cfg.source)


def load_and_check(path: str, interfaces: list[str] | None = None,
                   read_object: ReadObject = _default_read_object,
                   text: bytes | None = None) -> ChainConfig:
    """``load_config`` + ``check_config``; one ConfigError carrying every message."""
    cfg = load_config(path, text)
    with safeio.strict_mode(cfg.strict):
        problems = check_config(cfg, read_object=read_object, interfaces=interfaces)
    if problems:
        raise ConfigError("\n".join(problems))
    return cfg


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file, for editors."""
    return ChainConfig.model_json_schema()
