"""Cascade tracing: real plan runs through the engine in which one step writes a
plausible but wrong value, later steps build on it and only the last check fails;
``blame`` must name the first wrong step with its evidence, pass over decoys, and a
rewind to it must re-run it and exactly what depended on it. The scoring's pieces are
tested on events made by hand."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trestle.cli.app import main
from trestle.cli.blame import lines
from trestle.core.blame import Blame, blame
from trestle.core.errors import ConfigError
from trestle.core.events import (
    ActionResult,
    AlertRaised,
    AnyEvent,
    CheckResult,
    RunCreated,
    StepAttemptEnded,
    StepFailed,
    StepReopened,
    StepStarted,
    StoredEvent,
)
from trestle.core.lineage import lineage, rewind_scope
from trestle.core.plan import Plan
from trestle.core.records.lineage import AttemptFiles
from trestle.core.records.monitors import Alert
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.lease import this_process
from trestle.lifecycle.rewinding import rewind
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore
from trestle.workspace.shadow import shadow_dir_for

pytestmark = pytest.mark.usefixtures("unconfined")

PY = sys.executable
# total.py skips the first row: a plausible total (9), but the right one is 12
WRONG_TOTAL = "import sys\nrows = open(sys.argv[1]).read().split()[1:]\n"
RIGHT_TOTAL = "import sys\nrows = open(sys.argv[1]).read().split()\n"
SUM = "print(sum(int(r.split(',')[1]) for r in rows))\n"
DOUBLE = "import sys\nprint(2 * int(open(sys.argv[1]).read()))\n"
REPORT = "import sys\nprint('total:', open(sys.argv[1]).read().strip())\n"
# a check that compares the total with the data it came from
CHECK = (
    "import sys\nrows = open(sys.argv[1]).read().split()\n"
    "sys.exit(int(open(sys.argv[2]).read()) != sum(int(r.split(',')[1]) for r in rows))\n"
)


def cascade(final_check: str) -> str:
    """fetch (verified: its check pins data.csv's whole content) -> total (wrong,
    weakly checked) -> double -> report (its check fails); lint and audit are decoys
    with no checks that nothing downstream reads."""
    return f"""\
        workspace: ws
        checkpoints: every_step
        steps:
          - id: fetch
            run: printf 'a,3\\nb,4\\nc,5\\n' > data.csv
            verify:
              - file_contains: data.csv
                text: "a,3\\nb,4\\nc,5"
          - id: lint
            write: {{path: notes.txt, content: "looks fine"}}
          - id: total
            needs: [fetch]
            run: {PY} total.py data.csv > total.txt
            verify:
              - file_exists: total.txt
          - id: audit
            needs: [fetch]
            run: echo audited > audit.txt
          - id: double
            needs: [total]
            run: {PY} double.py total.txt > doubled.txt
          - id: report
            needs: [double]
            run: {PY} report.py doubled.txt > report.txt
            verify:
              - {final_check}
    """


REPORT_SAYS = 'file_contains: report.txt\n                text: "total: 24"'
CHECKED_AT_SOURCE = f"command: {PY} check.py data.csv total.txt"


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ws = root / "ws"
        self.ws.mkdir()
        self.store = SqliteStore(root / "trestle.db")
        for name, text in {
            "total.py": WRONG_TOTAL + SUM,
            "double.py": DOUBLE,
            "report.py": REPORT,
            "check.py": CHECK,
        }.items():
            (self.ws / name).write_text(text, encoding="utf-8")

    def run(self, plan_text: str) -> str:
        source = self.root / "plan.yaml"
        source.write_text(textwrap.dedent(plan_text), encoding="utf-8")
        plan: Plan = parse_plan(source.read_text("utf-8"), source=str(source), base_dir=self.root)
        run_id = create_run(self.store, plan, workspace=self.ws, plan_path=source)
        self.drive(run_id)
        return run_id

    def drive(self, run_id: str) -> None:
        engine = LocalEngine(self.store, poll_interval=0.02)
        try:
            asyncio.run(engine.run(run_id))
        finally:
            engine.close()

    def events(self, run_id: str) -> list[StoredEvent]:
        return list(self.store.events(run_id))

    def attempts(self, run_id: str) -> Counter[str]:
        return Counter(e.event.step for e in self.events(run_id) if e.event.kind == "step_started")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.store.close()


def kinds(found: Blame, step: str) -> list[str]:
    [c] = [c for c in found.candidates if c.step == step]
    return [e.kind for e in c.evidence]


# --- real runs ---------------------------------------------------------------------------


def test_the_weakly_checked_step_that_first_went_wrong_ranks_first(world: World) -> None:
    run_id = world.run(cascade(REPORT_SAYS))

    found = blame(world.events(run_id))

    assert found.target == "report" and found.failed == ("report",)
    assert "total: 24" in found.symptom
    ranked = [c.step for c in found.candidates]
    assert ranked[0] == "total", ranked
    assert kinds(found, "total")[:1] == ["weak_checks"]
    top = found.candidates[0]
    assert top.link == "read" and top.distance == 2
    assert any("total.txt read by 'double'" in e.text for e in top.evidence)
    # the verified source counts against itself; the decoys nothing reads rank below
    assert "verified" in kinds(found, "fetch")
    by = {c.step: c for c in found.candidates}
    for decoy in ("lint", "audit"):
        assert decoy not in by or (by[decoy].link == "possible" and by[decoy].score < top.score)
    # what each attempt read and wrote was recorded with its end
    ended = [
        e.event
        for e in world.events(run_id)
        if isinstance(e.event, StepAttemptEnded) and e.event.step == "double"
    ]
    files = ended[0].files
    assert files is not None and files.wrote is not None
    assert list(files.wrote) == ["doubled.txt"] and "total.txt" in files.read


def test_a_later_check_on_its_output_contradicts_the_culprit(world: World) -> None:
    run_id = world.run(cascade(CHECKED_AT_SOURCE))

    found = blame(world.events(run_id))

    assert found.candidates[0].step == "total"
    assert kinds(found, "total")[0] == "contradicted"
    assert found.candidates[0].score >= 4


def test_rewind_to_the_top_candidate_re_runs_it_and_its_dependents_only(world: World) -> None:
    run_id = world.run(cascade(REPORT_SAYS))
    top = blame(world.events(run_id)).candidates[0].step
    before = world.attempts(run_id)
    shadow = shadow_dir_for(world.store, world.ws)
    assert shadow is not None

    done = rewind(world.store, run_id, top, shadow_dir=shadow, owner=this_process())

    assert done.reopened == ["total", "double", "report"]
    assert done.files is not None
    assert sorted(done.files) == ["doubled.txt", "report.txt", "total.txt"]
    # the work of the steps that stay done stays
    assert {"audit.txt", "notes.txt", "data.csv"} <= {p.name for p in world.ws.iterdir()}
    assert not (world.ws / "total.txt").exists()
    (world.ws / "total.py").write_text(RIGHT_TOTAL + SUM, encoding="utf-8")  # the fix
    world.drive(run_id)

    after = world.attempts(run_id)
    assert {s: after[s] - before[s] for s in after} == {
        "fetch": 0,
        "lint": 0,
        "audit": 0,
        "total": 1,
        "double": 1,
        "report": 1,
    }
    assert (world.ws / "report.txt").read_text() == "total: 24\n"
    assert blame(world.events(run_id)).target is None  # nothing failed now


def trestle(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """``trestle ARGS`` in this process: its exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["trestle", *args])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_ranks_prints_json_and_refuses_an_unknown_step(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = world.run(cascade(REPORT_SAYS))
    store = ("--store", str(world.root / "trestle.db"))

    code, out, _ = trestle(monkeypatch, capsys, "blame", run_id, *store)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"run {run_id}: tracing back from 'report': check failed")
    assert lines[1].startswith("1. total  score ")
    assert lines[2].startswith("     + weak checks: none looked at what it wrote")
    assert f"`trestle rewind {run_id} --to total`" in out

    code, out, _ = trestle(monkeypatch, capsys, "blame", run_id, "double", "--json", *store)
    data = json.loads(out)
    assert code == 0 and data["target"] == "double"
    assert data["candidates"][0]["step"] == "total"
    assert {"kind", "weight", "text"} <= set(data["candidates"][0]["evidence"][0])

    code, _, err = trestle(monkeypatch, capsys, "blame", run_id, "totl", *store)
    assert code == 2
    assert "did you mean 'total'" in err


def test_a_run_with_nothing_failed_has_nothing_to_blame(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = world.run("workspace: ws\nsteps:\n  - id: only\n    run: 'true'\n")

    code, out, _ = trestle(
        monkeypatch, capsys, "blame", run_id, "--store", str(world.root / "trestle.db")
    )

    assert code == 0
    assert "nothing failed, so there is nothing to blame" in out


# --- the scoring, on events made by hand ----------------------------------------------------


HAND_PLAN = [
    {"id": "a", "run": "make a"},
    {"id": "b", "run": "make b", "verify": [{"file_contains": "b", "text": "x"}]},
    {"id": "c", "run": "make c", "verify": [{"command": "test -s c"}]},
    {"id": "d", "write": {"path": "d", "content": "d"}},
]


def made(
    *steps: tuple[str, dict[str, str] | None, dict[str, str], bool],
    plan: list[dict[str, Any]] | None = None,
) -> list[AnyEvent]:
    """A run whose steps ran one after another: (id, wrote, read, ok); each step's
    checks (of ``plan``, :data:`HAND_PLAN` by default) passed or failed with it."""
    spec = Plan.model_validate({"steps": plan or HAND_PLAN})
    events: list[AnyEvent] = [RunCreated(at=0, run_id="r", plan=spec, workspace="/w")]
    for sid, wrote, read, ok in steps:
        events.append(StepStarted(at=0, step=sid, attempt=1, key=f"r/{sid}/1"))
        checks = tuple(
            CheckResult(check=f"{sid} {n}", expected="", actual="", passed=ok)
            for n, _ in enumerate(next(s for s in spec.steps if s.id == sid).verify)
        )
        events.append(
            StepAttemptEnded(
                at=0,
                step=sid,
                attempt=1,
                ok=ok,
                action=ActionResult(status="ok"),
                checks=checks,
                files=AttemptFiles(wrote=wrote, read=read),
            )
        )
    return events


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_nothing_failed_means_nothing_to_blame() -> None:
    found = blame(made(("a", {"a": "1"}, {}, True)))
    assert found.target is None and found.candidates == ()


def test_an_unknown_step_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="no step 'zz'"):
        blame(made(("a", {"a": "1"}, {}, True)), "zz")


def test_an_unchecked_writer_outranks_a_verified_one_and_a_changed_input_counts() -> None:
    events = made(
        ("a", {"a": "1"}, {}, True),
        ("b", {"b": sha("x")}, {"a": "1"}, True),  # verified: its check pins all of b
        ("c", {"c": "3"}, {"b": "OTHER"}, False),  # read b, not as b left it
    )
    events.append(StepFailed(at=0, step="c", reason="check", dead_lettered=True))

    found = blame(events)

    assert [c.step for c in found.candidates][:1] == ["a"]
    assert kinds(found, "a")[0] == "no_checks"
    assert "verified" in kinds(found, "b")
    assert "changed_input" in kinds(found, "c")
    assert found.candidates[-1].step == "b"


def test_unknown_writes_make_a_possible_edge_and_say_so() -> None:
    events = made(("a", None, {}, True), ("c", {"c": "3"}, {}, False))

    found = blame(events, "c")

    [a] = [c for c in found.candidates if c.step == "a"]
    assert a.link == "possible"
    assert any("writes unknown" in e.text for e in a.evidence)


def test_a_monitor_alert_on_a_step_adds_to_its_score() -> None:
    events = made(("a", {"a": "1"}, {}, True), ("c", {"c": "3"}, {"a": "1"}, False))
    plain = {c.step: c.score for c in blame(events, "c").candidates}
    alert = Alert(
        monitor="loops",
        kind="repeated_action",
        severity="warning",
        message="the same call 3 times",
        evidence=(2,),
        suggestion="",
        step="a",
    )
    events.append(AlertRaised(at=0, alert=alert, action="note"))

    alerted = {c.step: c.score for c in blame(events, "c").candidates}

    assert alerted["a"] == plain["a"] + 1.0


def test_the_ranking_is_deterministic_and_rewind_scope_follows_the_data() -> None:
    events = made(
        ("a", {"a": "1"}, {}, True),
        ("d", {"d": "4"}, {}, True),
        ("b", {"b": "2"}, {"a": "1"}, True),
        ("c", {"c": "3"}, {"b": "2"}, False),
    )
    assert blame(events, "c") == blame(list(events), "c")

    scope = rewind_scope(lineage(events), "b", 1)

    # c's reads beyond what it names are unknown, so it may have read d's file: c
    # depends on b by a read; d started before b and stays
    assert scope.reopen == ("b", "c")
    assert scope.keep == ()


def test_a_retry_that_passed_after_a_humans_retry_counts_as_another_approach() -> None:
    events = made(("a", {"a": "1"}, {}, True))
    events.append(StepStarted(at=0, step="b", attempt=1, key="r/b/1"))
    failed = CheckResult(check="b", expected="x", actual="", passed=False)
    passed = failed.model_copy(update={"passed": True})
    events.append(
        StepAttemptEnded(
            at=0,
            step="b",
            attempt=1,
            ok=False,
            action=ActionResult(status="ok"),
            checks=(failed,),
            files=AttemptFiles(wrote={"b": "0"}, read={"a": "1"}),
        )
    )
    events.append(StepReopened(at=0, step="b", reason="try again", by="alice"))
    events.append(StepStarted(at=0, step="b", attempt=2, key="r/b/2"))
    events.append(
        StepAttemptEnded(
            at=0,
            step="b",
            attempt=2,
            ok=True,
            action=ActionResult(status="ok"),
            checks=(passed,),
            files=AttemptFiles(wrote={"b": "2"}, read={"a": "1"}),
        )
    )
    events += made(("c", {"c": "3"}, {"b": "2"}, False))[1:]

    found = blame(events, "c")

    [b] = [c for c in found.candidates if c.step == "b"]
    [retried] = [e for e in b.evidence if e.kind == "retried"]
    assert "after 1 failed, by a different approach: alice asked to retry it" in retried.text
    assert retried.weight == 1.5


# --- the rules: what counts as verified, what writes nothing, who lies ahead ------------


def chain(*checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """s1 -> s2 -> ... -> end: step i runs ``make si`` with the i-th list of checks."""
    steps: list[dict[str, Any]] = [
        {"id": f"s{i}", "run": f"make s{i}", "verify": v} for i, v in enumerate(checks, 1)
    ]
    return [*steps, {"id": "end", "run": "make end"}]


def score_of(found: Blame, step: str) -> float:
    [c] = [c for c in found.candidates if c.step == step]
    return c.score


def evidence_of(found: Blame, step: str, kind: str) -> list[str]:
    [c] = [c for c in found.candidates if c.step == step]
    return [e.text for e in c.evidence if e.kind == kind]


def test_a_check_of_the_outputs_form_is_weak_one_against_an_input_verifies() -> None:
    shape = [{"command": "python check.py isint s2"}]
    tied = [{"command": "python check.py sum s2 s1"}]
    for checks, verified in ((shape, False), (tied, True)):
        events = made(
            ("s1", {"s1": "1"}, {}, True),
            ("s2", {"s2": "2"}, {"s1": "1", "check.py": "c"}, True),
            ("end", {"end": "3"}, {"s2": "2"}, False),
            plan=chain([], checks),
        )

        found = blame(events, "end")

        if verified:  # the script the check runs is its code, not the input it compares
            [why] = evidence_of(found, "s2", "verified")
            assert why == "its check compared s2 with s1, which it read, and passed"
        else:
            [why] = evidence_of(found, "s2", "weak_checks")
            assert why.startswith("its checks read s2 but compared it with neither")
            assert score_of(found, "s2") == 1.25 + 0.5  # the form, and its read by 'end'


def test_a_file_contains_verifies_only_the_whole_content() -> None:
    whole = [{"file_contains": "s1", "text": "42"}]
    part = [{"file_contains": "s1", "text": "rate"}]
    for checks, kind in ((whole, "verified"), (part, "weak_checks")):
        events = made(
            ("s1", {"s1": sha("42\n")}, {}, True),
            ("end", {"end": "3"}, {"s1": sha("42\n")}, False),
            plan=chain(checks),
        )

        assert evidence_of(blame(events, "end"), "s1", kind), kind


def test_a_step_known_to_have_written_nothing_has_no_check_evidence_nor_a_place() -> None:
    plan: list[dict[str, Any]] = [
        {"id": "think", "run": "make think"},
        {"id": "s1", "run": "make s1", "needs": ["think"]},
        {"id": "end", "run": "make end", "needs": ["s1"]},
    ]
    events = made(
        ("think", {}, {}, True),  # its writes are known: none
        ("s1", {"s1": "1"}, {}, True),
        ("end", {"end": "2"}, {"s1": "1"}, False),
        plan=plan,
    )

    found = blame(events, "end")

    assert found.top is not None and found.top.step == "s1"
    assert kinds(found, "think") == ["upstream", "no_output", "unknown"]
    assert score_of(found, "think") == 0.3  # upstream by a declared need, nothing else
    assert "     = it wrote nothing (its writes are known)" in lines(found)  # no [+0]
    # with its writes unknown it is a suspect like any step with no checks
    assert isinstance(events[2], StepAttemptEnded) and events[2].step == "think"
    events[2] = events[2].model_copy(update={"files": AttemptFiles(wrote=None)})
    assert "no_checks" in kinds(blame(events, "end"), "think")


def test_the_upstream_bonus_counts_the_unverified_steps_after_it_not_a_sibling_branch() -> None:
    plan: list[dict[str, Any]] = [
        {"id": "src", "run": "make src", "verify": [{"file_exists": "src"}]},
        {
            "id": "mid",
            "run": "python c.py add src",
            "verify": [{"command": "python c.py eq mid src"}],
        },
        {"id": "bad", "run": "make bad"},
        {"id": "end", "run": "make end", "needs": ["mid", "bad"]},
    ]
    events = made(
        ("src", {"src": "1"}, {}, True),
        ("mid", {"mid": "2"}, {"src": "1"}, True),  # verified against its input
        ("bad", {"bad": "3"}, {}, True),
        ("end", {"end": "4"}, {"mid": "2", "bad": "3"}, False),
        plan=plan,
    )

    found = blame(events, "end")

    # src is two steps up, but the only step after it was verified: no bonus; bad, one
    # step up with no checks, ranks first
    assert found.top is not None and found.top.step == "bad"
    assert not [t for t in evidence_of(found, "src", "upstream") if "ahead of" in t]
    # when mid is not verified, src lies ahead of it: +0.5
    plan[1]["verify"] = [{"file_exists": "mid"}]
    events[0] = events[0].model_copy(update={"plan": Plan.model_validate({"steps": plan})})
    found = blame(events, "end")
    [ahead] = [t for t in evidence_of(found, "src", "upstream") if "ahead of" in t]
    assert ahead.startswith("ahead of 1 unverified step on the way to 'end' ('mid')")
    assert score_of(found, "src") == 1.75 + 0.5 + 0.5


def test_the_validate_steps_reads_are_unknown_and_its_writes_the_checkpoints() -> None:
    plan: list[dict[str, Any]] = [
        {"id": "rate", "agent": {"role": "execute", "objective": "the rate"}},
        {"id": "validate", "needs": ["rate"], "agent": {"role": "validate"}},
    ]
    events = made(("rate", {"rate.json": "1"}, {}, True), plan=plan)
    events.append(StepStarted(at=0, step="validate", attempt=1, key="r/validate/1"))
    events.append(
        StepAttemptEnded(
            at=0,
            step="validate",
            attempt=1,
            ok=False,
            action=ActionResult(status="failed", error="exit code 1"),
            files=AttemptFiles(wrote={}, read={}),
        )
    )

    found = lineage(events)

    trace = found.current("validate")
    assert trace is not None and not trace.reads_known and trace.wrote == {}
    # the test command may have read rate.json: a possible edge besides the need
    assert {e.kind for e in found.into("validate")} == {"needs", "workspace"}
    # an execute step's reads are still its calls (none here): known
    rate = found.current("rate")
    assert rate is not None and rate.reads_known
