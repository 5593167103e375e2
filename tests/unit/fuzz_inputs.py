"""Seeded fuzz loops over everything a user or another process can hand us (issue 11):
object files (parse + inspect + link), config files (parse + semantic checks), and the
state files (ownership records, applied records). The only exceptions allowed out are
XdpDispatchError subclasses. Run as a script so the caller can bound its time and
measure its peak memory:

    python -m tests.unit.fuzz_inputs CASES SEED
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from collections.abc import Callable
from functools import partial

from dispatcher.errors import XdpDispatchError
from tests.objects import REPO, example

OBJECTS = [example(n) for n in ("xdp_counter", "xdp_globals", "xdp_subprogs", "xdp_blocklist",
                                "xdp_runcfg")]
CONFIGS = sorted(os.path.join(REPO, "configs", n) for n in os.listdir(os.path.join(REPO, "configs"))
                 if n.endswith(".yaml"))
_TOKENS = [b"&a ", b"*a", b"[", b"]", b"{", b"}", b"!!int ", b"!x ", b": ", b"- ", b"\t", b"\n",
           b"'", b'"', b"? ", b"|", b">", b"#", b"---\n", b"...\n", b"%YAML 1.1\n", b"\xff",
           b"name: {exact: 'e[0]'}", b"strict: true", b"pin_maps: /sys/fs/bpf/../x",
           b"1e309", b"0x" + b"f" * 40, b"null", b"~", b"\x00", "\u202e".encode(), b"x" * 300]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def mutate(rng: random.Random, data: bytes, tokens: list[bytes] | None = None) -> bytes:
    """A few random edits: flips, 32-bit extremes, truncation, splices, inserted tokens."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        if not buf:
            buf += b"\0"
        # mostly local edits: a truncated file tells the parser little after its first check
        op = rng.choices(range(6), weights=[40, 25, 3, 12, 10, 30 if tokens else 0])[0]
        pos = rng.randrange(len(buf))
        if op == 0:
            buf[pos] = rng.randrange(256)
        elif op == 1:
            val = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(buf), len(buf) * 8])
            buf[pos:pos + 4] = val.to_bytes(4, "little")
        elif op == 2:
            del buf[rng.randrange(len(buf)):]
        elif op == 3:
            a = rng.randrange(len(buf))
            n = rng.randrange(1, 64)
            buf[pos:pos] = buf[a:a + n]
        elif op == 4:
            del buf[pos:pos + rng.randrange(1, 32)]
        else:
            assert tokens is not None
            buf[pos:pos] = rng.choice(tokens)
    return bytes(buf)


#: (what, outcome) -> count, outcome "ok" or "refused": a fuzz run that never gets past
#: the first check would prove nothing, so the caller looks at these.
OUTCOMES: dict[tuple[str, str], int] = {}


def _only_ours(fn: Callable[[], object], what: str, data: bytes) -> None:
    try:
        fn()
        outcome = "ok"
    except XdpDispatchError:
        outcome = "refused"
    except Exception as e:           # a defect: show the input that found it
        raise AssertionError(f"{what}: {type(e).__name__}: {e} on input {data[:200]!r}") from e
    OUTCOMES[(what, outcome)] = OUTCOMES.get((what, outcome), 0) + 1


def fuzz_objects(rng: random.Random, n: int) -> None:
    from dispatcher.obj.elf import parse_object
    from dispatcher.obj.link import link_program
    from dispatcher.render import disasm_text, inspect_dict, inspect_text

    seeds = [_read(p) for p in OBJECTS]
    for _ in range(n):
        data = mutate(rng, rng.choice(seeds))

        def run(data: bytes = data) -> None:
            spec = parse_object(data, "fuzz.o")
            json.dumps(inspect_dict(spec))
            inspect_text(spec)
            fds = {m.name: 3 for m in spec.maps}
            for prog in spec.programs:
                _only_ours(partial(disasm_text, spec, prog), "disasm", data)
                _only_ours(partial(link_program, spec, prog, fds), "link", data)
        _only_ours(run, "object", data)


def fuzz_configs(rng: random.Random, n: int, tmp: str) -> None:
    from dispatcher.config.model import check_config, parse_config
    from dispatcher.obj.elf import read_object

    specs = {p: read_object(p) for p in OBJECTS}

    def fake_read(path: str) -> object:
        if path in specs:
            return specs[path]
        return read_object(path)     # mutated paths: ObjectFileError (missing) or a real file

    seeds = [_read(p) for p in CONFIGS]
    for _ in range(n):
        data = mutate(rng, rng.choice(seeds), _TOKENS)

        def run(data: bytes = data) -> None:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                return                       # load_config reports it; parse needs text
            cfg = parse_config(text, "fuzz.yaml", os.path.join(REPO, "configs"))
            check_config(cfg, read_object=fake_read, interfaces=["eth0", "lo", "e[0]"])  # type: ignore[arg-type]
        _only_ours(run, "config", data)


def fuzz_state(rng: random.Random, n: int, tmp: str) -> None:
    from dispatcher.config import applied, ownership

    state = os.path.join(tmp, "state")
    os.environ["XDP_DISPATCH_STATE_DIR"] = state
    os.makedirs(state, 0o700, exist_ok=True)
    owned_seed = json.dumps({"version": 1, "programs": [
        {"prog_id": 7, "iface": "eth0", "netns": None, "name": "p", "object": "/x.o",
         "sha256": "00", "program": "p", "priority": 1, "actions": 2, "config": "/c.yaml",
         "settings": ""}]}).encode()
    cfg = os.path.join(tmp, "c.yaml")
    with open(cfg, "w") as f:
        f.write("version: 1\ninterfaces: []\n")
    rec_seed = json.dumps({"version": 1, "inputs": {
        "config": cfg, "config_sha256": "0", "objects": {}, "pin_maps": {}, "exclusive": False,
        "root": "/sys/fs/bpf", "code": "0"}, "system": {}, "plans": [
        {"iface": "eth0", "netns": None, "mode": "skb", "error": None, "observed_mode": None,
         "linked": False, "dispatch": "auto", "items": [
             {"action": "keep", "name": "p", "prog_id": 7, "priority": 1, "actions": ["XDP_PASS"],
              "detail": "", "desired": ["p", "/x.o", "00", "p", 1, 2, ""],
              "kernel": [1, ["XDP_PASS"]]}]}]}).encode()
    tokens = [b"[", b"{", b"]", b"}", b'"', b"null", b"true", b"-1", b"1e999", b"[" * 5000,
              b'"programs"', b":", b","]
    owned = ownership.records_path()
    record = applied._record_path(cfg)
    os.makedirs(os.path.dirname(record), 0o700, exist_ok=True)
    for _ in range(n):
        data = mutate(rng, owned_seed, tokens)
        with open(owned, "wb") as f:
            f.write(data)
        _only_ours(ownership.read, "owned.json", data)
        _only_ours(ownership.managed_labels, "owned.json", data)
        data = mutate(rng, rec_seed, tokens)
        with open(record, "wb") as f:
            f.write(data)
        os.unlink(owned)
        _only_ours(lambda: applied.reuse(cfg), "applied record", data)


def main(n: int, seed: int) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        fuzz_objects(rng, n)
        fuzz_configs(rng, n, tmp)
        fuzz_state(rng, n, tmp)
    print(json.dumps({f"{w} {o}": c for (w, o), c in sorted(OUTCOMES.items())}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
