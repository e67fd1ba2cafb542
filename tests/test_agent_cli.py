"""The agent's commands end to end: ``trestle demo``, ``agent``, ``trajectory``, ``tell``.

Every command runs the real console script (``python -m trestle``) in a subprocess
against a real SQLite store, on a real copy of the bundled sample repository whose
tests really run. The model is either the recorded trajectory bundled with the demo
(``replay:PATH``; no model is called) or the ``openai`` client talking to the
loopback chat completions server, so nothing leaves the machine. One demo run is
shared by the tests that only read it (exporting its trajectory, telling a finished
run); the others start their own runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from forked_cli import run_trestle
from trestle.agent.runtime import MODELS_OWN_CHECK
from trestle.demo import write_sample
from trestle.models import ToolCall
from trestle.testing import OpenAIServer

RUN_ID = r"\d{8}-\d{6}-[0-9a-f]{4}"
# `trestle agent` prints `run ID: GOAL`, `trestle demo` `run ID in DIR: GOAL`,
# `trestle run` and `resume` just `run ID`.
RUN_LINE = re.compile(rf"run ({RUN_ID})\b")
WIDTH = "200"  # wide enough that report lines and cards do not wrap
# Only a guard against a hung child; no test asserts how long anything takes.
PATIENCE = 120.0

# the demo's own goal and acceptance check (see trestle.cli.agent)
DEMO_GOAL = "make slugify() turn any title into a clean URL slug; the failing test shows how"
DEMO_TESTS = "python3 -m unittest discover -s tests -q"
FIXED_SLUGIFY = '    return "-".join(re.findall(r"\\w+", title.lower()))'


@dataclass(frozen=True)
class Cli:
    """``trestle`` run in ``dir`` (unless told another ``cwd``) with
    ``$TRESTLE_STORE`` pointing at ``store``."""

    dir: Path
    store: Path
    key_file: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("TRESTLE_STORE", "OPENAI_API_KEY")}
        env.update(
            COLUMNS=WIDTH,
            NO_COLOR="1",
            TERM="dumb",
            TRESTLE_STORE=str(self.store),
            # approvals are signed with this test's key, never the user's
            TRESTLE_KEY_FILE=str(self.key_file),
        )
        env.update(extra)
        return env

    def __call__(
        self, *args: str | Path, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return run_trestle(args, cwd=cwd or self.dir, env=self.env(**env), timeout=PATIENCE)

    def json(self, *args: str | Path) -> Any:
        """Run a command with ``--json``; it must succeed."""
        result = self(*args, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    def events(self, run_id: str, store: Path | None = None) -> list[dict[str, Any]]:
        """The run's events as ``trestle log --json`` prints them."""
        found: list[dict[str, Any]] = self.json("log", run_id, "--store", store or self.store)
        return found

    def kinds(self, run_id: str, store: Path | None = None) -> list[str]:
        return [event["kind"] for event in self.events(run_id, store)]


def run_id_of(result: subprocess.CompletedProcess[str]) -> str:
    match = RUN_LINE.match(result.stdout)
    assert match, f"output does not start with `run <id>`: {result.stdout[:300]!r}"
    return match.group(1)


def flat(text: str) -> str:
    return " ".join(text.split())


def lines_starting(text: str, *prefixes: str) -> list[str]:
    """The progress lines that start with one of ``prefixes``, spaces collapsed."""
    return [flat(line) for line in text.splitlines() if line.startswith(prefixes)]


def sample_repo(where: Path) -> Path:
    """A fresh copy of the sample repository bundled with Trestle."""
    return write_sample(where)


def unittests(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        DEMO_TESTS.split(),
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )


@pytest.fixture
def cli(tmp_path: Path, _own_decision_key: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "trestle.db", _own_decision_key)


# --- trestle demo (one run, shared) ------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    """A finished ``trestle demo --dir DIR`` and what it printed."""

    dir: Path
    run_id: str
    result: subprocess.CompletedProcess[str]

    @property
    def store(self) -> Path:
        return self.dir / "trestle.db"

    @property
    def repo(self) -> Path:
        return self.dir / "textkit"


@pytest.fixture(scope="module")
def demo_cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A Cli for module-scoped fixtures, which run before the per-test key is set."""
    root = tmp_path_factory.mktemp("demo-cli")
    return Cli(root, root / "unused.db", root / "approval.key")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, demo_cli: Cli) -> Demo:
    where = tmp_path_factory.mktemp("demo")
    result = demo_cli("demo", "--dir", where)
    match = re.search(rf"^run ({RUN_ID}) in ", result.stdout, re.M)
    assert match, result.stdout + result.stderr
    return Demo(where, match.group(1), result)


@pytest.fixture(scope="module")
def demo_trajectory(demo: Demo, demo_cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo run's trajectory, exported with ``trestle trajectory -o``."""
    path = tmp_path_factory.mktemp("trajectory") / "t.json"
    result = demo_cli("trajectory", demo.run_id, "-o", path, "--store", demo.store)
    assert result.returncode == 0, result.stdout + result.stderr
    said = flat(result.stderr)  # it wrote the file and said nothing
    assert said.startswith(f"wrote the model answers of run {demo.run_id} ("), said
    assert said.endswith(f" conversations) to {path}: replay them with --model replay:{path}")
    return path


def test_the_demo_fixes_the_sample_after_an_approval_and_a_failed_attempt(demo: Demo) -> None:
    result = demo.result
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith("REPLAY: the model's answers are a recorded trajectory")
    assert "no model is called" in flat(out)
    # the plan waits for a human; the demo shows the card and approves it itself
    [asked] = lines_starting(out, "APPROVE?")
    assert asked.startswith(f"APPROVE? review ({demo.run_id}.1):")
    # the agent's plan is shown with its waves and critical path, not as one line
    shape = out.split("plan     plan added: ", 1)[1].splitlines()[:6]
    assert [flat(line) for line in shape] == [
        "review, fix-slugify, cover-accents, validate",
        "wave 1: review",
        "wave 2: fix-slugify",
        "wave 3: cover-accents",
        "wave 4: validate",
        "critical path: review -> fix-slugify -> cover-accents -> validate (4 steps)",
    ]
    assert f"approved {demo.run_id}.1" in out
    # fix-slugify fails its check once, then passes
    fix = lines_starting(out, "failed   fix-slugify", "done     fix-slugify")
    assert [line.split(":")[0] for line in fix] == [
        "failed fix-slugify (attempt 1)",
        "done fix-slugify (attempt 2)",
    ]
    assert "python3 -m unittest tests.test_slug -q" in fix[0]
    # cover-accents is delegated to a worker agent: a child run whose own plan waits
    # in the same inbox, with its place in the tree, before the root goes on
    child = f"{demo.run_id}.cover-accents.1"
    assert f"child run {child} waits for a human" in flat(out)
    assert f"approved {child}.1" in out
    [tree] = lines_starting(out, "in tree")
    assert tree.split(None, 2)[2] == f"{demo.run_id} > cover-accents#1"
    assert lines_starting(out, "finished") == [
        "finished needs human",
        "finished needs human",
        "finished succeeded",
    ]
    assert f"trestle diff {demo.run_id} fix-slugify --store {demo.store}" in out

    # the sample's tests really pass now, including the one the agent added
    tests = unittests(demo.repo)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert FIXED_SLUGIFY in (demo.repo / "textkit" / "slug.py").read_text()
    assert (demo.repo / "tests" / "test_accents.py").is_file()


def test_the_demo_run_is_recorded_in_its_store(demo: Demo, demo_cli: Cli) -> None:
    events = demo_cli.events(demo.run_id, demo.store)
    kinds = {event["kind"] for event in events}
    assert {
        "model_called",
        "tool_call_started",
        "tool_call_ended",
        "phase_entered",
        "findings_recorded",
        "plan_extended",
        "approval_decided",
    } <= kinds
    phases = [event["phase"] for event in events if event["kind"] == "phase_entered"]
    assert phases == ["UNDERSTAND", "PLAN", "EXECUTE", "VALIDATE", "DONE"]
    [extended] = [event for event in events if event["kind"] == "plan_extended"]
    added = [step["id"] for step in extended["steps"]]
    assert added == ["review", "fix-slugify", "cover-accents", "validate"]
    assert events[-1]["kind"] == "run_finished" and events[-1]["status"] == "succeeded"

    diff = demo_cli("diff", demo.run_id, "fix-slugify", "--store", demo.store)
    assert diff.returncode == 0, diff.stderr
    assert "+++ b/textkit/slug.py" in diff.stdout
    assert "+import re" in diff.stdout
    # the diff is the latest attempt's: it starts from what the failed first attempt left
    assert '-    return title.lower().strip().replace(" ", "-")' in diff.stdout.splitlines()
    assert "+" + FIXED_SLUGIFY in diff.stdout.splitlines()


# --- trestle trajectory, and replaying it with trestle agent ------------------------------


def test_an_exported_trajectory_replays_to_the_same_result(
    demo: Demo, demo_trajectory: Path, cli: Cli
) -> None:
    recorded = json.loads(demo_trajectory.read_text())
    assert recorded["format"] == "trestle-trajectory/1"
    assert recorded["goal"] == DEMO_GOAL
    assert list(recorded["conversations"]) == [
        "understand#1",
        "plan#1",
        "fix-slugify#1",
        "fix-slugify#2",
        "cover-accents#1/understand#1",  # the worker the step delegated to
        "cover-accents#1/plan#1",
        "cover-accents#1/write-test#1",
    ]
    fresh = sample_repo(cli.dir / "fresh")
    assert unittests(fresh).returncode != 0  # the copy starts out broken

    result = cli(
        "agent",
        DEMO_GOAL,
        "--repo",
        fresh,
        "--model",
        f"replay:{demo_trajectory}",
        "--test-command",
        DEMO_TESTS,
        "--auto-plan",
        "--no-live",
        "--no-prompt",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    run_id = run_id_of(result)
    assert "APPROVE?" not in result.stdout  # --auto-plan: the review asks nobody
    assert lines_starting(result.stdout, "finished") == ["finished succeeded"]
    for changed in ("textkit/slug.py", "tests/test_accents.py"):
        assert (fresh / changed).read_bytes() == (demo.repo / changed).read_bytes(), changed
    assert unittests(fresh).returncode == 0
    # the replay asked for exactly the recorded answers, in the same conversations
    again = json.loads(cli("trajectory", run_id).stdout)
    assert again["conversations"] == recorded["conversations"]


# --- the plan review: exit 3, inbox, approve, resume ---------------------------------------


def start_at_review(cli: Cli, trajectory: Path, repo: Path) -> str:
    """``trestle agent`` with the default --approve-plan: it stops at the plan's review."""
    result = cli(
        "agent",
        DEMO_GOAL,
        "--repo",
        repo,
        "--model",
        f"replay:{trajectory}",
        "--test-command",
        DEMO_TESTS,
        "--no-live",
        "--no-prompt",
    )
    assert result.returncode == 3, result.stdout + result.stderr
    run_id = run_id_of(result)
    assert lines_starting(result.stdout, "finished") == ["finished needs human"]
    assert f"`trestle approve {run_id}.1`" in result.stdout
    return run_id


def test_the_plan_waits_for_approval_and_resume_rebuilds_the_replay_model(
    demo_trajectory: Path, cli: Cli, tmp_path: Path
) -> None:
    # a relative trajectory path: the run records it absolute, so a resume from
    # another directory still finds it
    local = shutil.copy(demo_trajectory, cli.dir / "recorded.json")
    repo = sample_repo(cli.dir / "repo")
    run_id = start_at_review(cli, Path("recorded.json"), repo)
    [created] = [e for e in cli.events(run_id) if e["kind"] == "run_created"]
    assert created["agent"]["model"] == f"replay:{Path(local).resolve()}"
    assert created["agent"]["plan_approval"] == "confirm"
    assert created["agent"]["step_timeout"] == 1800.0  # half an hour per attempt, by default
    assert unittests(repo).returncode != 0  # nothing executed before the approval

    inbox = cli("inbox")
    assert inbox.returncode == 0, inbox.stderr
    card = flat(inbox.stdout)
    assert f"approval {run_id}.1" in card
    assert "review: approve the plan:" in card
    assert "- fix-slugify: slugify drops punctuation and collapses runs of separators" in card
    assert "- cover-accents: a test that accented titles keep their letters" in card

    approved = cli("approve", f"{run_id}.1")
    assert approved.returncode == 0, approved.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = cli("resume", run_id, "--no-live", "--no-prompt", cwd=elsewhere)

    # the worker that cover-accents delegates to asks for its own plan's approval: do
    # what the report says, word for word
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    child = f"{run_id}.cover-accents.1"
    said = flat(resumed.stdout)
    told = f"with `trestle show {child}`, then `trestle resume {run_id}`"
    assert told in said
    shown = flat(cli("show", child).stdout)
    approve = f"`trestle approve {child}.1`"
    assert approve in shown  # the child's report names the decision to take
    asked = cli("inbox", "--run", child)
    assert f"in tree {run_id} > cover-accents#1" in flat(asked.stdout)
    assert cli("approve", f"{child}.1").returncode == 0
    resumed = cli("resume", run_id, "--no-live", "--no-prompt", cwd=elsewhere)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert lines_starting(resumed.stdout, "finished") == ["finished succeeded"]
    assert unittests(repo).returncode == 0
    assert cli("inbox").stdout.strip() == "inbox is empty"


# --- bad input: exit 2, a message naming the problem, nothing recorded ---------------------


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("nonsense", "model 'nonsense': expected PROVIDER:MODEL"),
        (
            "foo:bar",
            "model 'foo:bar': unknown provider 'foo'; known: anthropic, openai, and "
            "replay:TRAJECTORY.json (a recorded run's answers)",
        ),
        ("replay:/missing.json", "trajectory '/missing.json': cannot read it"),
        ("replay:{dir}/broken.json", "trajectory '{dir}/broken.json': not JSON"),
        ("replay:{dir}/wrong.json", "trajectory '{dir}/wrong.json', field 'conversations.a#1'"),
    ],
)
def test_a_bad_model_is_refused_before_anything_is_recorded(
    cli: Cli, model: str, says: str
) -> None:
    (cli.dir / "broken.json").write_text("{not json\n")
    (cli.dir / "wrong.json").write_text(json.dumps({"conversations": {"a#1": 5}}))
    repo = sample_repo(cli.dir / "repo")

    result = cli("agent", "G", "--repo", repo, "--model", model.format(dir=cli.dir), "--no-live")

    assert result.returncode == 2, result.stdout + result.stderr
    assert flat(result.stderr).startswith("error: " + says.format(dir=cli.dir))
    assert result.stdout == ""
    assert_nothing_recorded(cli, repo)


def test_the_trajectory_of_a_plan_run_without_agents_is_refused(cli: Cli) -> None:
    plan = cli.dir / "plan.yaml"
    plan.write_text("goal: no model\nsteps:\n  - id: a\n    run: 'true'\n")
    ran = cli("run", plan, "--no-live", "--no-prompt")
    assert ran.returncode == 0, ran.stdout + ran.stderr

    result = cli("trajectory", run_id_of(ran), "-o", cli.dir / "t.json")

    assert result.returncode == 2, result.stdout + result.stderr
    assert flat(result.stderr) == (
        f"error: run {run_id_of(ran)!r} is a plan run with no agent in it: it has no model "
        "answers to export"
    )
    assert not (cli.dir / "t.json").exists()


def test_a_missing_repository_is_refused_before_anything_is_recorded(cli: Cli) -> None:
    result = cli("agent", "G", "--repo", "/does/not/exist", "--model", "nonsense")

    # the repository is checked first; the model is never looked at
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Invalid value for --repo: '/does/not/exist' is not a directory" in flat(result.stderr)
    assert_nothing_recorded(cli, None)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("nan", "Invalid value for --step-timeout: must be a finite number of seconds"),
        ("inf", "Invalid value for --step-timeout: must be a finite number of seconds"),
        ("0.5", "Invalid value for '--step-timeout'"),
    ],
)
def test_a_bad_step_timeout_is_refused_before_anything_is_recorded(
    cli: Cli, given: str, says: str
) -> None:
    result = cli("agent", "G", "--repo", cli.dir, "--step-timeout", given)

    assert result.returncode == 2, result.stdout + result.stderr
    assert says in flat(result.stderr)
    assert_nothing_recorded(cli, cli.dir)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (["--max-cost", "inf"], "--max-cost: inf is not an amount"),
        (["--max-cost", "nan"], "--max-cost: nan is not an amount"),
        (["--stop-at-cost", "0"], "--stop-at-cost: 0.0 is not an amount"),
        (["--stop-at-tokens", "0"], "--stop-at-tokens: 0 is not an amount"),
        (
            ["--max-cost", "5", "--stop-at-cost", "2"],
            "--max-cost: 5 (where the run pauses) is above --stop-at-cost 2",
        ),
        (  # a cost limit that could never be reached: the model has no price
            ["--model", "openai:my-own-model", "--stop-at-cost", "0.001"],
            "--stop-at-cost: model 'openai:my-own-model' has no price in Trestle's price "
            "table, so what its calls cost is unknown",
        ),
    ],
)
def test_a_bad_budget_is_refused_before_anything_is_recorded(
    cli: Cli, given: list[str], says: str
) -> None:
    """``--max-cost inf`` crashed with pydantic's traceback."""
    result = cli("agent", "G", "--repo", cli.dir, *given)

    assert result.returncode == 2, result.stdout + result.stderr
    assert says in flat(result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_recorded(cli, cli.dir)


def test_a_hard_token_limit_stops_the_agent_and_a_raise_lets_it_finish(
    demo_trajectory: Path, cli: Cli
) -> None:
    repo = sample_repo(cli.dir / "limited")
    stopped = cli(
        "agent",
        DEMO_GOAL,
        "--repo",
        repo,
        "--model",
        f"replay:{demo_trajectory}",
        "--test-command",
        DEMO_TESTS,
        "--auto-plan",
        "--no-live",
        "--stop-at-tokens",
        "3000",
    )
    assert stopped.returncode == 6, stopped.stdout + stopped.stderr
    run_id = run_id_of(stopped)
    advice = re.search(r"`trestle budget \S+ --add (tokens=\d+)` \(or more\)", flat(stopped.stdout))
    assert advice, stopped.stdout
    raised = cli("budget", run_id, "--add", "tokens=200000")
    assert raised.returncode == 0, raised.stderr
    resumed = cli("resume", run_id, "--no-live")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert lines_starting(resumed.stdout, "finished") == ["finished succeeded"]
    assert unittests(repo).returncode == 0


def assert_nothing_recorded(cli: Cli, repo: Path | None) -> None:
    assert not cli.store.exists()
    if repo is not None:
        assert not (repo / ".trestle").exists()


# --- trestle tell --------------------------------------------------------------------------


def test_tell_refuses_a_plan_run(cli: Cli) -> None:
    (cli.dir / "plan.yaml").write_text(
        textwrap.dedent(
            """\
            goal: say hello
            steps:
              - id: hello
                run: echo hello
            """
        )
    )
    ran = cli("run", "plan.yaml", "--no-live", "--no-prompt")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = run_id_of(ran)
    before = cli.kinds(run_id)

    told = cli("tell", run_id, "also say goodbye")

    assert told.returncode == 2, told.stdout + told.stderr
    assert flat(told.stderr) == (
        f"error: run {run_id!r} is a plan run, not an agent run: it takes no requirements"
    )
    assert cli.kinds(run_id) == before


def test_tell_refuses_a_finished_agent_run(demo: Demo, demo_cli: Cli) -> None:
    before = demo_cli.kinds(demo.run_id, demo.store)

    told = demo_cli("tell", demo.run_id, "also handle emoji", "--store", demo.store)

    assert told.returncode == 2, told.stdout + told.stderr
    assert flat(told.stderr) == (
        f"error: run {demo.run_id!r} already finished (succeeded): "
        "start a new run for 'also handle emoji'"
    )
    assert demo_cli.kinds(demo.run_id, demo.store) == before


def test_a_requirement_told_at_the_review_adds_a_revise_step(
    demo_trajectory: Path, cli: Cli
) -> None:
    repo = sample_repo(cli.dir / "repo")
    run_id = start_at_review(cli, demo_trajectory, repo)
    requirement = "also strip leading dashes"

    told = cli("tell", run_id, requirement)
    assert told.returncode == 0, told.stdout + told.stderr
    # nobody drives the run: the command says so instead of waiting for an outcome
    assert flat(told.stdout) == (
        "the requirement: queued (request 1); it will be applied or refused when the run "
        f"is resumed: `trestle resume {run_id}`"
    )
    assert "requirement_added" not in cli.kinds(run_id)  # taken by the next driver
    assert cli("approve", f"{run_id}.1").returncode == 0
    resumed = cli("resume", run_id, "--no-live", "--no-prompt")

    # the requirement was planned as revise-1; the recording has no answers for it,
    # so revise-1 fails both attempts and the run waits for a human; the recorded
    # plan's steps still ran, so the sample is fixed
    out = resumed.stdout
    assert resumed.returncode == 3, out + resumed.stderr
    assert lines_starting(out, "plan     tell added") == ["plan tell added: revise-1"]
    events = cli.events(run_id)
    [added] = [e for e in events if e["kind"] == "requirement_added"]
    assert added["text"] == requirement
    extended = [e for e in events if e["kind"] == "plan_extended"]
    assert [step["id"] for step in extended[-1]["steps"]] == ["revise-1"]
    no_answer = "the trajectory has no answer left for 'revise-1#2' (it recorded 0)"
    [dead] = lines_starting(out, "FAILED   revise-1")
    assert dead == flat(
        "FAILED revise-1: failed 2 of 2 attempts; last: model call failed: "
        f"{no_answer} [dead-letter queue]"
    )
    assert "blocked validate (needs 'revise-1', which failed)" in lines_starting(out, "blocked")
    assert lines_starting(out, "finished") == ["finished needs human"]
    report = flat(out.split(f"run {run_id}: needs human")[1])
    assert f"'revise-1' failed after 2 attempts: model call failed: {no_answer}" in report
    assert f"trestle retry {run_id} revise-1" in report
    assert unittests(repo).returncode == 0
    shown = cli.json("show", run_id)
    assert shown["status"] == "needs_human"
    # the requirement is in the record of human judgement, with what followed it
    rows = [json.loads(line) for line in cli("feedback", "export").stdout.splitlines()]
    [tell] = [row for row in rows if row["act"] == "tell"]
    assert (tell["proposed"], tell["decision"]) == ({"requirement": requirement}, "added")
    assert tell["next"]["run"] == "needs_human"


def test_a_requirement_told_while_acceptance_runs_is_refused_and_said_so(
    demo_trajectory: Path, cli: Cli
) -> None:
    repo = sample_repo(cli.dir / "repo")
    # both signals live in the workspace: a write outside it needs a human, and the
    # sandbox shows the command nothing outside it
    at_validate, release = repo / "at-validate", repo / "release"
    # the acceptance command (and only it: tools run tests as their own step) waits
    gate = (
        f'if [ "$TRESTLE_STEP_ID" = validate ]; then touch at-validate; '
        f"while [ ! -f {release} ]; do sleep 0.05; done; fi; {DEMO_TESTS}"
    )
    command = ["agent", DEMO_GOAL, "--repo", str(repo), "--model", f"replay:{demo_trajectory}"]
    command += ["--test-command", gate, "--auto-plan", "--no-live", "--no-prompt"]
    agent = subprocess.Popen(
        [sys.executable, "-m", "trestle", *command],
        cwd=cli.dir,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + PATIENCE
        while not at_validate.exists() and agent.poll() is None:
            assert time.monotonic() < deadline, "the run never reached its acceptance step"
            time.sleep(0.05)
        [row] = [r for r in cli.json("runs") if r["parent"] is None]  # not its worker
        run_id = row["run_id"]
        told = cli("tell", run_id, "also handle emoji")
    finally:
        release.touch()
        out, err = agent.communicate(timeout=PATIENCE)

    why = (
        "the acceptance step 'validate' is running, no longer waiting: the run takes no "
        "more requirements once acceptance has begun; start a new run for it"
    )
    # the driver was live: the command waited for the outcome and says what it was
    assert told.returncode == 2, told.stdout + told.stderr
    assert flat(told.stderr) == f"error: run {run_id} refused the requirement: {why}"
    assert agent.returncode == 0, out + err
    assert lines_starting(out, "refused") == [flat(f"refused tell: {why}")]
    assert lines_starting(out, "finished") == ["finished succeeded"]
    report = flat(out.split(f"run {run_id}: succeeded")[1])
    listed = "requests the run refused: - request 1: requirement ('also handle emoji') refused: "
    assert listed + why in report
    [refused] = [e for e in cli.events(run_id) if e["kind"] == "request_refused"]
    assert (refused["request_id"], refused["text"], refused["reason"]) == (
        1,
        "also handle emoji",
        why,
    )
    shown = cli.json("show", run_id)
    assert [(r["request"], r["reason"]) for r in shown["refused"]] == [("tell", why)]


# --- trestle agent against an OpenAI-compatible server --------------------------------------

OPENAI_MODEL = "test-model"
CALC_TESTS = f"{sys.executable} -m unittest -q"
FINDINGS = {
    "summary": "add() subtracts instead of adding",
    "how_to_test": CALC_TESTS,
    "relevant_files": [{"path": "calc.py"}],
}
PLAN = {
    "summary": "fix add",
    "steps": [
        {
            "id": "fix-add",
            "objective": "add returns the sum",
            "files": ["calc.py"],
            "verify": [{"command": CALC_TESTS}],
        }
    ],
}


def call(call_id: str, name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(model=OPENAI_MODEL) as running:
        yield running


@pytest.mark.parametrize("given", [True, False], ids=["test-command", "the-models-own"])
def test_agent_runs_against_an_openai_compatible_server(
    cli: Cli, server: OpenAIServer, given: bool
) -> None:
    """The run says at its start what its work will be judged by: the given test
    command, or, without one, the command the model names (which it may change)."""
    repo = cli.dir / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "test_calc.py").write_text(
        "import unittest\n\nfrom calc import add\n\n\n"
        "class AddTest(unittest.TestCase):\n"
        "    def test_add(self) -> None:\n"
        "        self.assertEqual(add(2, 3), 5)\n"
    )
    server.queue_tool_calls(call("call_read", "read_file", path="calc.py"))
    server.queue_text(json.dumps(FINDINGS))
    server.queue_text(json.dumps(PLAN))
    server.queue_tool_calls(
        call("call_edit", "edit_file", path="calc.py", old="a - b", new="a + b")
    )
    server.queue_tool_calls(call("call_finish", "finish", summary="add adds"))

    result = cli(
        "agent",
        "make add() return the sum",
        "--repo",
        repo,
        "--model",
        f"openai:{OPENAI_MODEL}",
        "--base-url",
        server.base_url,
        *(["--test-command", CALC_TESTS] if given else []),
        "--auto-plan",
        "--max-tokens",
        "512",
        "--no-live",
        "--no-prompt",
        OPENAI_API_KEY="x",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_starting(result.stdout, "finished") == ["finished succeeded"]
    judged_by = CALC_TESTS if given else f"{MODELS_OWN_CHECK} (--test-command gives yours)"
    assert lines_starting(result.stdout, "acceptance:") == [flat(f"acceptance: {judged_by}")]
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert server.pending == 0 and len(server.requests) == 5
    for request in server.requests:
        assert request.headers["authorization"] == "Bearer x"
        assert request.body["model"] == OPENAI_MODEL
        assert request.body["max_tokens"] == 512  # each call's cap, as reserved
    run_id = run_id_of(result)
    events = cli.events(run_id)
    [created] = [e for e in events if e["kind"] == "run_created"]
    assert created["agent"]["model"] == f"openai:{OPENAI_MODEL}"
    assert created["agent"]["base_url"] == server.base_url
    assert created["agent"]["max_tokens"] == 512
    reserved = [e for e in events if e["kind"] == "model_call_reserved"]
    assert len(reserved) == 5 and all(e["tokens"] > 512 for e in reserved)
    called = [(e["step"], e["turn"]) for e in events if e["kind"] == "model_called"]
    assert called == [
        ("understand", 1),
        ("understand", 2),
        ("plan", 1),
        ("fix-add", 1),
        ("fix-add", 2),
    ]
