"""Mutated plan files: each one is either a valid plan or a clean refusal naming the file.

Seeded mutations of valid plans (deleted and duplicated keys, swapped types, huge,
negative and non-finite numbers, deep nesting, surrogates, NUL and control characters,
long strings, cycles, unknown needs, random bytes, truncation) go through
:func:`load_plan`, the entry point ``trestle run`` uses; a sample goes through the real
CLI. Anything but a :class:`PlanError` (or a plan that survives a JSON round trip, as
it must to be recorded) fails, and so does a case that runs past its time limit.

``TRESTLE_FUZZ_CASES=5000 pytest tests/test_fuzz_planfile.py`` (or
``scripts/fuzz-planfile.sh``) runs a longer campaign.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trestle.core.errors import PlanError
from trestle.core.plan import Plan, critical_path, topological_order, waves
from trestle.formats.planfile import load_plan

CASES = int(os.environ.get("TRESTLE_FUZZ_CASES", "300"))
CLI_SAMPLE = 12
CASE_SECONDS = 10  # a guard against hangs, far above what one case takes

ROOT = Path(__file__).resolve().parent.parent

SHIP = """\
goal: build and ship
parallelism: 4
budget: {steps: {soft: 10, hard: 20}, cost: {hard: 5, top_up: 1}}
policy: {confirm_commands: ["re:git push"], audit_rate: 0.1}
steps:
  - id: deploy
    needs: [build, lint]
    run: echo deployed >> deploys.log
    irreversible: true
    confidence: 0.8
    cost: 0.5
  - id: build
    write: {path: out/app.txt, content: "app v1\\n"}
    verify: [{file_exists: out/app.txt}, {file_contains: out/app.txt, text: app}]
  - id: lint
    run: "true"
    optional: true
    retries: 2
    backoff: {initial: 0.1, factor: 2, max: 1}
    timeout: 5
    env: {LINT: strict}
    tags: [quick]
"""

CHECKS = """\
steps:
  - {id: a, run: echo a, verify: [{command: "test -n x", timeout: 3}]}
  - {id: b, needs: [a], run: echo b, verify: [{file_contains: f, regex: "^x+$"}]}
  - {id: c, needs: [a, b], python: "hooks:go", approval: confirm, uncertainties: [why]}
"""


def seeds() -> list[str]:
    return [(ROOT / "examples/setup-project/plan.yaml").read_text("utf-8"), SHIP, CHECKS]


# --- writing a tree back as YAML text (so non-finite numbers, NUL and surrogates survive) --


class Raw(str):
    """Text written into the YAML as it is (a 5,000-digit number, say)."""


def emit(node: Any) -> str:
    if isinstance(node, Raw):
        return str(node)
    if isinstance(node, bool) or node is None:
        return {True: "true", False: "false", None: "null"}[node]
    if isinstance(node, int):
        return str(node)
    if isinstance(node, float):
        if math.isnan(node):
            return ".nan"
        if math.isinf(node):
            return ".inf" if node > 0 else "-.inf"
        return repr(node)
    if isinstance(node, str):
        return json.dumps(node)  # JSON's escapes (\\u0000, \\ud800) are YAML's too
    if isinstance(node, dict):
        return "{" + ", ".join(f"{emit(k)}: {emit(v)}" for k, v in node.items()) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(emit(v) for v in node) + "]"
    return json.dumps(str(node))


# --- mutations -------------------------------------------------------------------------

STRANGE_NUMBERS: list[Any] = [
    math.inf,
    -math.inf,
    math.nan,
    1e308,
    -1,
    -1e300,
    0,
    10**30,
    Raw("9" * 5000),
    Raw("0x" + "f" * 3000),
    1e200,
]
STRANGE_TEXT = [
    "",
    "\0",
    "a\0b",
    "\ud800",
    "x\udfffy",
    "\x1b[31mred",
    "\x07\x08\x7f",
    "a..b",
    "x.lock",
    "A=B",
    "x" * 100_000,
    "caf\u00e9",
    "hooks:go",
    "no_such_module:f",
    "re:(",
]


def paths(node: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*here, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*here, i))


def get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def put(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    get(tree, path[:-1])[path[-1]] = value
    return tree


def strange_value(rng: random.Random) -> Any:
    makers: list[Callable[[], Any]] = [
        lambda: rng.choice(STRANGE_NUMBERS),
        lambda: rng.choice(STRANGE_TEXT),
        lambda: [rng.choice(STRANGE_TEXT)],
        lambda: {rng.choice(STRANGE_TEXT): rng.choice(STRANGE_NUMBERS)},
        lambda: None,
        lambda: rng.choice([True, False]),
        lambda: rng.uniform(-1e6, 1e6),
        lambda: rng.randint(-(10**6), 10**6),
    ]
    return rng.choice(makers)()


def mutate_tree(tree: Any, rng: random.Random) -> Any:
    where = rng.choice(list(paths(tree)))
    target = get(tree, where)
    kind = rng.randrange(8)
    if kind == 0 and isinstance(target, dict) and target:
        del target[rng.choice(list(target))]
    elif kind == 1 and isinstance(target, list) and target:
        target.append(json.loads(json.dumps(rng.choice(target), allow_nan=True)))
    elif kind == 2:
        tree = put(tree, where, strange_value(rng))
    elif kind == 3:
        depth = rng.choice([10, 70, 1000])  # written as text: emit() itself recurses
        tree = put(tree, where, Raw("[" * depth + emit(target) + "]" * depth))
    elif kind == 4 and isinstance(tree, dict) and isinstance(tree.get("steps"), list):
        steps = [s for s in tree["steps"] if isinstance(s, dict)]
        if steps:
            first, last = steps[0], steps[-1]
            needs = first.get("needs")
            needs = needs if isinstance(needs, list) else []
            first["needs"] = [*needs, last.get("id", "x")]  # a cycle
            rng.choice(steps)["needs"] = ["biuld", *([] if rng.random() < 0.5 else ["a"])]
    elif kind == 5 and isinstance(target, str):
        cut = rng.randrange(len(target) + 1)
        tree = put(tree, where, target[:cut] + rng.choice(STRANGE_TEXT) + target[cut:])
    elif kind == 6 and isinstance(target, dict):
        target[rng.choice([*STRANGE_TEXT, "retries", "timeout", "needs", "id"])] = strange_value(
            rng
        )
    else:
        tree = put(tree, where, strange_value(rng))
    return tree


def mutate_text(text: str, rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return text[: rng.randrange(len(text) + 1)]  # truncated
    if kind == 1:
        at = rng.randrange(len(text) + 1)
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        return text[:at] + junk.decode("latin-1") + text[at:]
    if kind == 2:
        lines = text.splitlines()
        rng.shuffle(lines)
        return "\n".join(lines)
    return text.replace(": ", ":", 1).replace("- ", "-", 1)


def case(seed: int) -> bytes:
    """One mutated plan file, the same for the same seed."""
    rng = random.Random(seed)
    source = rng.choice(seeds())
    if rng.random() < 0.15:
        return mutate_text(source, rng).encode("utf-8", "surrogatepass")
    if rng.random() < 0.03:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
    tree = yaml.safe_load(source)
    for _ in range(rng.randint(1, 4)):
        tree = mutate_tree(tree, rng)
    return emit(tree).encode("utf-8", "surrogatepass")


# --- the property ------------------------------------------------------------------------


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def judge(path: Path) -> Plan | PlanError:
    """A valid plan (usable and recordable) or a refusal naming the file; else it raises."""
    with time_limit(CASE_SECONDS):
        try:
            plan = load_plan(path)
        except PlanError as exc:
            assert str(exc).startswith(f"{path}:"), str(exc)[:300]
            assert exc.problems and all(p.strip() for p in exc.problems)
            str(exc).encode("utf-8")  # printable: no surrogate in the message
            return exc
        assert Plan.model_validate_json(plan.model_dump_json()) == plan, "must be recordable"
        topological_order(plan)
        waves(plan)
        critical_path(plan)
        return plan


def write_case(directory: Path, seed: int) -> Path:
    path = directory / f"plan-{seed}.yaml"
    path.write_bytes(case(seed))
    return path


def test_mutated_plan_files_are_valid_or_cleanly_refused(tmp_path: Path) -> None:
    outcomes = [judge(write_case(tmp_path, seed)) for seed in range(CASES)]
    refused = sum(isinstance(o, PlanError) for o in outcomes)
    # the mutations must exercise both sides, or the suite proves nothing
    assert 0.5 * CASES < refused < CASES


def test_a_sample_through_the_real_cli_exits_cleanly(tmp_path: Path) -> None:
    """Refused cases through ``trestle run`` (exit 2, nothing recorded), valid ones
    through ``trestle plan`` (they are never run: their commands are arbitrary)."""
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    env.update(COLUMNS="120", NO_COLOR="1", TERM="dumb")
    picked = range(0, CASES, max(1, CASES // CLI_SAMPLE))
    for seed in list(picked)[:CLI_SAMPLE]:
        path = write_case(tmp_path, seed)
        valid = isinstance(judge(path), Plan)
        store = tmp_path / f"{seed}.db"
        command = ["plan", path] if valid else ["run", path, "--store", store]
        result = subprocess.run(
            [sys.executable, "-m", "trestle", *map(str, command)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
            check=False,
        )
        assert "Traceback" not in result.stderr, (seed, result.stderr[-2000:])
        assert result.returncode == (0 if valid else 2), (seed, result.stderr[-500:])
        if not valid:
            assert result.stderr.startswith(f"error: {path}:"), (seed, result.stderr[:300])
            assert not store.exists()


# --- the same property, with hypothesis choosing the edits ---------------------------------

values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None), max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(
    max_examples=max(50, CASES // 3),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(seed=st.integers(0, 2), where=st.integers(0, 10_000), value=values)
def test_any_value_anywhere_is_valid_or_cleanly_refused(
    tmp_path: Path, seed: int, where: int, value: Any
) -> None:
    tree = yaml.safe_load(seeds()[seed])
    spots = list(paths(tree))
    tree = put(tree, spots[where % len(spots)], value)
    path = tmp_path / "plan.yaml"
    path.write_bytes(emit(tree).encode("utf-8", "surrogatepass"))
    judge(path)
