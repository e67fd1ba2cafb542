"""Hostile plan files through the real ``trestle run``: each is refused with exit 2 and
a message naming the file and where, before anything is recorded; none hangs or
leaves a traceback."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest

from forked_cli import run_trestle
from trestle.core.errors import PlanError
from trestle.core.plan import Backoff, Plan, critical_path, find_cycle, topological_order, waves
from trestle.formats.planfile import load_plan, parse_plan


def trestle(cwd: Path, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
    env.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return run_trestle(args, cwd=cwd, env=env, timeout=timeout)


def refused(tmp_path: Path, plan: str | Path, *expected: str) -> str:
    """Run the plan; it must be refused (exit 2, no traceback, no store) naming the file."""
    store = tmp_path / "t.db"
    result = trestle(tmp_path, "run", plan, "--store", store)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert f"{plan}:" in message
    for part in expected:
        assert part in message
    assert not store.exists()
    return message


def chain(n: int, *, reverse: bool = True, cycle: bool = False) -> str:
    lines = ["steps:"]
    order = range(n - 1, -1, -1) if reverse else range(n)
    for i in order:
        needs = f"[s{i - 1}]" if i else (f"[s{n - 1}]" if cycle else "[]")
        lines.append(f"  - {{id: s{i}, needs: {needs}, run: 'true'}}")
    return "\n".join(lines) + "\n"


BAD = [
    pytest.param("backoff: {max: .inf}", "step 'a', field 'backoff.max'", id="infinite-backoff"),
    pytest.param("backoff: {initial: .nan}", "step 'a', field 'backoff.initial'", id="nan-backoff"),
    pytest.param("backoff: {factor: 1e200}", "step 'a', field 'backoff.factor'", id="huge-factor"),
    pytest.param("timeout: 1e300", "step 'a', field 'timeout'", id="huge-timeout"),
    pytest.param("confidence: .nan", "step 'a', field 'confidence'", id="nan-confidence"),
    pytest.param("cost: -.inf", "step 'a', field 'cost'", id="negative-infinite-cost"),
    pytest.param("env: {'A=B': x}", "step 'a', field 'env", id="equals-in-env-key"),
    pytest.param("env: {'': x}", "step 'a', field 'env", id="empty-env-key"),
    pytest.param(
        'env: {A: "x\\0y"}',
        "'steps[0].env.A': contains control character U+0000",
        id="nul-in-env-value",
    ),
]


@pytest.mark.parametrize(("fields", "where"), BAD)
def test_bad_step_values_are_refused_before_anything_runs(
    tmp_path: Path, fields: str, where: str
) -> None:
    (tmp_path / "plan.yaml").write_text(
        f"steps:\n  - {{id: a, run: 'true', irreversible: true, {fields}}}\n"
    )
    refused(tmp_path, "plan.yaml", where)


@pytest.mark.parametrize("step_id", ["x.lock", "a..b", "end.", "x" * 129, "caf\u00e9", "a\\x07b"])
def test_step_ids_that_cannot_name_a_checkpoint_are_refused(tmp_path: Path, step_id: str) -> None:
    (tmp_path / "plan.yaml").write_text(
        f'steps:\n  - {{id: "{step_id}", run: "true", irreversible: true}}\n'
    )
    refused(tmp_path, "plan.yaml", "id'")


def test_a_nul_in_a_command_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text('steps:\n  - {id: a, run: "echo \\0 hi"}\n')
    refused(tmp_path, "plan.yaml", "value at 'steps[0].run': contains control character U+0000")
    with pytest.raises(ValueError, match="NUL"):  # the same through the Python API
        Plan.model_validate({"steps": [{"id": "a", "run": "echo \0"}]})


def test_non_finite_budgets_are_refused(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(
        "budget: {cost: {soft: .inf}}\nsteps:\n  - {id: a, run: 'true'}\n"
    )
    refused(tmp_path, "plan.yaml", "budget.cost.soft")


def test_a_long_reversed_chain_runs_and_a_long_cycle_is_named(tmp_path: Path) -> None:
    (tmp_path / "cycle.yaml").write_text(chain(1500, cycle=True))
    message = refused(tmp_path, "cycle.yaml", "dependency cycle of 1500 steps: s1499 -> s0 -> s1")
    assert len(message) < 300
    (tmp_path / "plan.yaml").write_text(chain(1200))
    result = trestle(tmp_path, "plan", "plan.yaml")
    assert result.returncode == 0, result.stderr


def test_deep_nesting_huge_integers_and_random_bytes_are_refused(tmp_path: Path) -> None:
    # the count's own refusal, and libyaml's at 1,000 levels (PyYAML 6.0.4 on) said alike
    (tmp_path / "deep.yaml").write_text("steps: " + "[" * 100 + "]" * 100 + "\n")
    refused(tmp_path, "deep.yaml", "nested more than 64 levels deep")
    (tmp_path / "deeper.yaml").write_text("steps: " + "[" * 1000 + "]" * 1000 + "\n")
    refused(tmp_path, "deeper.yaml", "nested more than 64 levels deep")
    block = "".join("  " * level + "-\n" for level in range(1200))
    (tmp_path / "block.yaml").write_text(f"steps:\n{block}")
    refused(tmp_path, "block.yaml", "nested more than 64 levels deep")
    (tmp_path / "int.yaml").write_text(f"parallelism: {'9' * 4400}\nsteps: []\n")
    refused(tmp_path, "int.yaml", "invalid value")
    (tmp_path / "bytes.yaml").write_bytes(bytes(range(256)))
    refused(tmp_path, "bytes.yaml", "not UTF-8")


def test_aliases_that_expand_exponentially_are_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    (tmp_path / "laughs.yaml").write_text("\n".join(lines) + "\nsteps: [*a7]\n")
    refused(tmp_path, "laughs.yaml", "once aliases are expanded")


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "socket"])
def test_a_plan_file_that_is_not_a_regular_file_is_refused_without_reading(
    tmp_path: Path, kind: str
) -> None:
    if kind == "fifo":
        path = tmp_path / "plan.yaml"
        os.mkfifo(path)  # nobody writes: opening it blocking would hang
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "directory":
        path = tmp_path / "plan.yaml"
        path.mkdir()
    else:
        import socket

        path = tmp_path / "s.sock"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
    message = refused(tmp_path, path, "not a regular file")
    assert kind.replace("device", "character device") in message.lower()


def test_an_oversized_plan_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (9 * 1024 * 1024) + "\nsteps: [{id: a, run: x}]\n")
    with pytest.raises(PlanError, match="larger than 8,388,608 bytes"):
        load_plan(path)


def test_a_python_callable_that_exits_fails_its_step_instead_of_the_process(
    tmp_path: Path,
) -> None:
    """Validation imports nothing; at run time ``SystemExit`` is a failed attempt."""
    (tmp_path / "hooks.py").write_text("import sys\ndef go(ctx):\n    sys.exit(0)\n")
    (tmp_path / "quits.py").write_text("raise SystemExit(0)\n")
    (tmp_path / "plan.yaml").write_text(
        textwrap.dedent(
            """\
            escalate: false
            steps:
              - {id: a, python: 'hooks:go'}
              - {id: b, run: 'true', verify: [{python: 'quits:check'}]}
            """
        )
    )
    result = trestle(tmp_path, "run", "plan.yaml", "--store", tmp_path / "t.db")
    assert "Traceback" not in result.stderr
    assert result.returncode not in (0, 2), result.stdout + result.stderr
    run_id = result.stdout.split()[1]
    shown = trestle(tmp_path, "show", run_id, "--store", tmp_path / "t.db", "--json")
    assert "SystemExit" in shown.stdout, shown.stdout + shown.stderr
    # an invalid plan whose module would exit 0 on import is still refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "quits.py").write_text("raise SystemExit(0)\n")
    (other / "bad.yaml").write_text(
        "steps:\n  - {id: a, python: 'quits:go'}\n  - {id: b, needs: [nope], run: x}\n"
    )
    refused(other, "bad.yaml", "unknown step 'nope'")


def test_unpaired_surrogates_are_refused_where_they_are(tmp_path: Path) -> None:
    """libyaml refuses the escape itself (with line and column); the pure-Python parser
    lets it through and the plan loader names the field."""
    (tmp_path / "plan.yaml").write_text(
        'goal: "a \\x1b[31m red goal"\n'
        'steps:\n  - {id: a, run: "echo ok", description: "half \\udc80 \\x07"}\n'
    )
    message = refused(tmp_path, "plan.yaml")
    assert (
        "plan.yaml:3: invalid YAML at column" in message
        and "invalid Unicode character escape" in message
    ) or "plan.yaml:3: value at 'steps[0].description': contains an unpaired surrogate" in message
    with pytest.raises(PlanError, match="surrogate"):  # a str given to parse_plan directly
        parse_plan("goal: x\nsteps: [{id: a, run: x}]\n".replace("x", "\ud800", 1))


def test_control_characters_are_refused_in_plan_text_but_kept_in_written_content(
    tmp_path: Path,
) -> None:
    """An escape sequence in a goal or command would drive the terminal of whoever
    reads the plan overview, the report or the approval card."""
    (tmp_path / "plan.yaml").write_text(
        'goal: "ship \\e]0;owned\\a"\nsteps:\n  - {id: a, run: "echo \\e[2J"}\n'
    )
    message = refused(tmp_path, "plan.yaml", "contains control character U+001B")
    assert "\x1b" not in message
    plan = parse_plan('steps:\n  - {id: a, write: {path: f, content: "page\\fbreak\\ttab"}}\n')
    assert plan.steps[0].write is not None and plan.steps[0].write.content == "page\fbreak\ttab"


# --- the pure parts ----------------------------------------------------------------------


def test_backoff_delays_never_overflow_and_stop_at_the_cap() -> None:
    backoff = Backoff(initial=1, factor=100, max=3600)
    assert backoff.delay(1) == 1
    assert backoff.delay(2) == 100
    assert backoff.delay(10_000) == 3600


def test_graph_questions_on_a_long_reversed_chain_do_not_recurse() -> None:
    plan = parse_plan(chain(3000))
    assert [s.id for s in topological_order(plan)][:3] == ["s0", "s1", "s2"]
    assert len(critical_path(plan)) == 3000
    assert len(waves(plan)) == 3000
    needs = {f"s{i}": [f"s{(i + 1) % 3000}"] for i in range(3000)}
    cycle = find_cycle(needs)
    assert cycle is not None and len(cycle) == 3001


def test_topological_order_keeps_file_order_within_a_wave() -> None:
    plan = Plan.model_validate(
        {
            "steps": [
                {"id": "d", "needs": ["b", "c"], "run": "x"},
                {"id": "c", "needs": ["a"], "run": "x"},
                {"id": "b", "run": "x"},
                {"id": "a", "run": "x"},
            ]
        }
    )
    assert [s.id for s in topological_order(plan)] == ["b", "a", "c", "d"]


# --- one unreadable run does not hide the others ---------------------------------------


def test_listings_across_runs_name_an_unreadable_run_and_go_on(tmp_path: Path) -> None:
    """A plan accepted before non-finite numbers were refused was recorded with
    ``backoff.max: null``; inbox, health and feedback export once crashed on it."""
    (tmp_path / "plan.yaml").write_text("steps:\n  - {id: ship, run: 'true', approval: confirm}\n")
    store = tmp_path / "t.db"
    first, second = (
        trestle(tmp_path, "run", "plan.yaml", "--store", store).stdout.split()[1] for _ in "ab"
    )
    with sqlite3.connect(store) as db:
        (data,) = db.execute(
            "SELECT data FROM events WHERE run_id = ? AND seq = 1", (first,)
        ).fetchone()
        assert '"max":60.0' in data
        db.execute(
            "UPDATE events SET data = ? WHERE run_id = ? AND seq = 1",
            (data.replace('"max":60.0', '"max":null'), first),
        )
    for command in (["inbox"], ["health"], ["feedback", "export"]):
        result = trestle(tmp_path, *command, "--store", store)
        assert "Traceback" not in result.stderr, command
        assert f"warning: run {first!r} cannot be read, left out" in result.stderr, command
        if command != ["feedback", "export"]:
            assert second in result.stdout, command


# --- trestle.toml ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[policy]\naudit_rate = nan\n", "policy.audit_rate: must be a finite number, not nan"),
        ("[policy]\n[[policy.rules]]\nname = 'x'\ncost_above = inf\n", "cost_above"),
        ("[monitors]\nstall_after = inf\n", "monitors.stall_after"),
        ("[monitors]\nstall_after = 1e300\n", "monitors.stall_after"),
        (f"[policy]\naudit_seed = {'9' * 5000}\n", "invalid value: Exceeds the limit"),
        ("[policy]\nx = " + "[" * 3000 + "]" * 3000 + "\n", "invalid value"),
    ],
)
def test_bad_numbers_and_depths_in_trestle_toml_are_refused(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "plan.yaml").write_text("steps:\n  - {id: a, run: 'true'}\n")
    (tmp_path / "trestle.toml").write_text(text)
    store = tmp_path / "t.db"
    result = trestle(tmp_path, "run", "plan.yaml", "--store", store, "--policy", "trestle.toml")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "trestle.toml:" in message and expected in message
    assert not store.exists()


def test_a_fifo_as_trestle_toml_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "trestle.toml")
    (tmp_path / "plan.yaml").write_text("steps:\n  - {id: a, run: 'true'}\n")
    result = trestle(tmp_path, "run", "plan.yaml", "--policy", "trestle.toml", timeout=30)
    assert result.returncode == 2
    assert "trestle.toml: not a regular file (a FIFO)" in result.stderr


def test_critical_path_agrees_with_the_list_building_definition() -> None:
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 12)
        ids = [f"s{i}" for i in range(n)]
        steps = [
            {"id": ids[i], "run": "x", "needs": rng.sample(ids[:i], rng.randint(0, i))}
            for i in range(n)
        ]
        rng.shuffle(steps)
        plan = Plan.model_validate({"steps": steps})
        best: dict[str, list[str]] = {}
        for s in topological_order(plan):
            longest = max((best[n] for n in s.needs), key=len, default=[])
            best[s.id] = [*longest, s.id]
        assert critical_path(plan) == max(best.values(), key=len)
