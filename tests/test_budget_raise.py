"""Going on after a hard budget stop: ``trestle budget RUN --add DIM=AMOUNT``, then
``trestle resume RUN``, through the real ``trestle`` executable.

Plan runs count their steps' side effects in files; the agent run talks to the
loopback OpenAI-compatible server, which counts the requests it answers. Each refusal
is checked for its exit code, its message, and that nothing was recorded. Forged
``budget_raised`` rows, written straight into the store as a step could without the
sandbox, must change nothing and be reported.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store_rows import append_raw_event
from test_agent_cli import CALC_TESTS, FINDINGS, OPENAI_MODEL, PLAN, call
from test_agent_cli import Cli as AgentCli
from test_approvals_cli import Cli, flat
from trestle.core.budget import Budget, Limit
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore
from trestle.testing import OpenAIServer
from trestle.trust.signing import decision_key, signed_payload

GO_ON = re.compile(
    r"to go on: `(trestle budget (\S+) --add (\S+))` \(or more\), then `trestle resume \2`"
)


def chain(n: int, budget: str, *, cost: bool = False) -> str:
    """``n`` steps in a row, each appending its id to ``done.log`` (its side effect)."""
    steps = "".join(
        f"  - id: s{i}\n"
        + ("    cost: 1\n" if cost else "")
        + f"    run: echo s{i} >> done.log\n"
        + (f"    needs: [s{i - 1}]\n" if i > 1 else "")
        for i in range(1, n + 1)
    )
    return f"goal: count to {n}\n{budget}steps:\n{steps}"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


def run_stopped(cli: Cli, plan: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    """``trestle run`` a plan its budget stops (exit 6); its run id and what it printed."""
    cli.write("plan.yaml", plan)
    result = cli("run", "plan.yaml")
    assert result.returncode == 6, result.stdout + result.stderr
    match = re.match(r"run (\S+)", result.stdout)
    assert match
    return match.group(1), result


def event_count(cli: Cli, run_id: str) -> int:
    return len(cli.json("log", run_id))


# --- a hard stop, raised, goes on --------------------------------------------------------


def test_a_raised_hard_stop_resumes_where_it_stopped_and_runs_each_step_once(cli: Cli) -> None:
    run_id, stopped = run_stopped(cli, chain(4, "budget:\n  steps: {hard: 2}\n"))
    assert cli.lines("done.log") == ["s1", "s2"]
    # the stop names the exact commands to go on, live and in the report
    go_on = (
        f"to go on: `trestle budget {run_id} --add steps=1` (or more), "
        f"then `trestle resume {run_id}`"
    )
    assert (
        f"STOPPED  budget: would spend 3 steps of 2 steps (hard steps limit); {go_on}"
        in stopped.stdout
    )
    assert f"(hard steps limit). {go_on[0].upper()}{go_on[1:]}." in flat(stopped.stdout)
    shown = cli("budget", run_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "steps: 2 steps used; hard 2 steps",
        "the run was stopped by its budget: would spend 3 steps of 2 steps (hard steps limit)",
        go_on,
    ]

    raised = cli("budget", run_id, "--add", "steps=+2", "--reason", "two more")
    assert raised.returncode == 0, raised.stderr
    assert raised.stdout.splitlines() == [
        f"raised the steps limit of run {run_id} by 2 steps, to 4 steps",
        f"continue with `trestle resume {run_id}`",
    ]
    assert cli.lines("done.log") == ["s1", "s2"]  # a raise runs nothing by itself

    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "finished succeeded" in resumed.stdout
    assert cli.lines("done.log") == ["s1", "s2", "s3", "s4"]  # each side effect once
    events = cli.json("log", run_id)
    [event] = [e for e in events if e["kind"] == "budget_raised"]
    [stop] = [e for e in events if e["kind"] == "budget_exhausted"]
    assert (event["add"], event["reason"]) == ({"steps": 2.0}, "two more")
    assert event["stop_seq"] == stop["seq"] and event["signed"]
    assert [e["step"] for e in events if e["kind"] == "step_started"] == ["s1", "s2", "s3", "s4"]
    log = flat(cli("log", run_id).stdout)
    assert "budget_raised" in log and "steps +2 steps; two more" in log
    report = cli.json("show", run_id)
    assert (report["status"], report["exit_code"]) == ("succeeded", 0)


def test_the_command_a_stop_names_is_enough_to_go_on_each_time(cli: Cli) -> None:
    run_id, stopped = run_stopped(cli, chain(3, "budget:\n  cost: {hard: 1.5}\n", cost=True))
    for _ in range(2):
        match = GO_ON.search(stopped.stdout)
        assert match, stopped.stdout
        assert match.group(2) == run_id
        assert cli(*match.group(1).split()[1:]).returncode == 0
        stopped = cli("resume", run_id)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert cli.lines("done.log") == ["s1", "s2", "s3"]
    asked = [e["add"] for e in cli.json("log", run_id) if e["kind"] == "budget_raised"]
    assert asked == [{"cost": 0.5}, {"cost": 1.0}]  # $2.00 needed of $1.50, $3.00 of $2.00


def test_a_raise_moves_the_soft_level_with_the_hard_one(cli: Cli) -> None:
    cli.write("plan.yaml", chain(4, "budget:\n  steps: {soft: 1, hard: 2, top_up: 1}\n"))
    paused = cli("run", "plan.yaml")
    assert paused.returncode == 3, paused.stdout + paused.stderr
    run_id = paused.stdout.split()[1]
    assert cli("approve", f"{run_id}.1").returncode == 0  # soft level 1 + 1
    assert cli("resume", run_id).returncode == 6  # s2 ran; s3 would pass the hard level
    assert cli("budget", run_id, "--add", "steps=2").returncode == 0
    # hard 2 + 2, soft 2 + 2: s3 and s4 run without another pause
    resumed = cli("resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "PAUSED" not in resumed.stdout
    assert cli.lines("done.log") == ["s1", "s2", "s3", "s4"]
    assert cli("budget", run_id).stdout.splitlines() == [
        "steps: 4 steps used; soft 4 steps, hard 4 steps"
    ]


def test_a_seconds_limit_is_raised_by_a_duration(cli: Cli) -> None:
    plan = chain(2, "budget:\n  seconds: {hard: 1}\n").replace(
        "run: echo s1", "run: sleep 1.2; echo s1"
    )
    run_id, stopped = run_stopped(cli, plan)
    assert "(hard seconds limit); to go on: `trestle budget" in stopped.stdout
    raised = cli("budget", run_id, "--add", "seconds=10m")
    assert raised.returncode == 0, raised.stderr
    assert raised.stdout.startswith(f"raised the seconds limit of run {run_id} by 600 s, to 601 s")
    assert cli("resume", run_id).returncode == 0
    assert cli.lines("done.log") == ["s1", "s2"]


# --- refusals: a clear error, the CLI's exit code, nothing recorded ----------------------


BAD_RAISES = [
    ("stepz=1", "unknown budget dimension 'stepz' (did you mean 'steps'?)"),
    ("steps", "expected DIMENSION=AMOUNT, like tokens=2000"),
    ("steps=0", "the amount must be a finite number above 0"),
    ("steps=-3", "the amount must be a finite number above 0"),
    ("steps=nan", "the amount must be a finite number above 0"),
    ("steps=inf", "the amount must be a finite number above 0"),
    ("steps=1e999", "the amount must be a finite number above 0"),
    ("steps=lots", "'lots' is not an amount"),
    ("steps=1.5", "steps are counted whole; give a whole number"),
    ("tokens=100", "has no tokens limit to raise (its budget limits steps, cost)"),
    ("cost=5", "was stopped by its hard steps limit, not by cost: raise that one"),
]


def test_bad_raises_are_refused_and_nothing_is_recorded(cli: Cli) -> None:
    # one stopped run takes every bad raise in turn; none records anything (counted
    # at the end), so each meets the run as the first did
    run_id, _ = run_stopped(cli, chain(3, "budget:\n  steps: {hard: 1}\n  cost: {hard: 100}\n"))
    before = event_count(cli, run_id)
    for add, message in BAD_RAISES:
        refused = cli("budget", run_id, "--add", add)
        assert refused.returncode == 2, (add, refused.stdout + refused.stderr)
        assert message in flat(refused.stderr), add
        assert refused.stdout == "", add
    assert event_count(cli, run_id) == before
    assert cli("resume", run_id).returncode == 6  # still stopped
    assert cli.lines("done.log") == ["s1"]


def test_a_raise_too_small_says_what_is_used_and_what_the_limit_would_be(cli: Cli) -> None:
    run_id, _ = run_stopped(cli, chain(4, "budget:\n  cost: {hard: 2}\n", cost=True))
    before = event_count(cli, run_id)
    refused = cli("budget", run_id, "--add", "cost=$0.50")
    assert refused.returncode == 2
    assert flat(refused.stderr) == (
        f"error: run {run_id!r}: raising the cost limit by $0.50 is not enough: the start "
        "it stopped at would use $3.00, and the limit would be $2.50; add at least $1.00"
    )
    assert event_count(cli, run_id) == before
    assert cli("budget", run_id, "--add", "cost=1").returncode == 0


def test_a_run_its_budget_did_not_stop_is_refused_in_words(cli: Cli) -> None:
    cli.write("plan.yaml", chain(2, "budget:\n  steps: {hard: 5}\n"))
    done = cli("run", "plan.yaml")
    assert done.returncode == 0
    run_id = done.stdout.split()[1]
    refused = cli("budget", run_id, "--add", "steps=1")
    assert refused.returncode == 2
    assert flat(refused.stderr) == (
        f"error: run {run_id!r} cannot have its budget raised: it already succeeded"
    )

    cli.write("plan.yaml", chain(3, "budget:\n  steps: {soft: 1, top_up: 1}\n"))
    paused = cli("run", "plan.yaml")
    assert paused.returncode == 3
    paused_id = paused.stdout.split()[1]
    refused = cli("budget", paused_id, "--add", "steps=1")
    assert refused.returncode == 2
    assert flat(refused.stderr) == (
        f"error: run {paused_id!r} cannot have its budget raised: it is paused at a soft "
        f"limit, not stopped: approve its top-up with `trestle approve {paused_id}.1 "
        "--top-up AMOUNT`"
    )

    # a human refused the top-up: that stop is theirs, and a raise does not overrule it
    assert cli("reject", f"{paused_id}.1", "--reason", "enough").returncode == 0
    assert cli("resume", paused_id).returncode == 6
    refused = cli("budget", paused_id, "--add", "steps=1")
    assert refused.returncode == 2
    assert flat(refused.stderr).endswith(
        "top-up refused: enough (a human refused the top-up; a raise does not overrule that)"
    )

    # raised once: a second raise before the resume is refused, and says what to do
    run_id, _ = run_stopped(cli, chain(3, "budget:\n  steps: {hard: 1}\n"))
    assert cli("budget", run_id, "--add", "steps=1").returncode == 0
    again = cli("budget", run_id, "--add", "steps=1")
    assert again.returncode == 2
    assert f"its budget was raised since it stopped; continue with `trestle resume {run_id}`" in (
        flat(again.stderr)
    )


def test_a_cancelled_run_is_refused_with_exit_7(cli: Cli) -> None:
    run_id, _ = run_stopped(cli, chain(3, "budget:\n  steps: {hard: 1}\n"))
    assert cli("cancel", run_id, "--reason", "not worth it").returncode == 0
    before = event_count(cli, run_id)
    refused = cli("budget", run_id, "--add", "steps=1")
    assert refused.returncode == 7
    assert "a cancelled run cannot be resumed, retried or changed" in flat(refused.stderr)
    assert event_count(cli, run_id) == before


HELD_OPEN = """\
goal: two at once
budget:
  steps: {hard: 1}
steps:
  - id: slow
    run: while [ ! -f go ]; do sleep 0.05; done; echo slow >> done.log
  - id: other
    run: echo other >> done.log
"""


def test_a_raise_waits_until_the_stopped_runs_driver_has_ended(cli: Cli) -> None:
    """The limit stops the run while ``slow`` still runs: its driver holds the lease
    until ``slow`` ends, and a raise meanwhile is refused with exit 5."""
    cli.write("plan.yaml", HELD_OPEN)
    driver = subprocess.Popen(
        [sys.executable, "-m", "trestle", "run", "plan.yaml"],
        cwd=cli.dir,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        run_id = None
        while time.monotonic() < deadline:
            runs = cli.json("runs") if cli.store.exists() else []
            if runs:
                run_id = runs[0]["run_id"]
                kinds = {e["kind"] for e in cli.json("log", run_id)}
                # slow's process is recorded as it starts, which can come after the
                # stop: counted before it, it was taken for the refused raise's event
                if {"budget_exhausted", "step_process_started"} <= kinds:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the run was never stopped by its budget")
        assert run_id is not None
        before = event_count(cli, run_id)
        refused = cli("budget", run_id, "--add", "steps=1")
        assert refused.returncode == 5, refused.stdout + refused.stderr
        assert f"error: run {run_id!r} is still driven by trestle[{driver.pid}]: it " in (
            flat(refused.stderr)
        )
        assert "raise the budget after that" in flat(refused.stderr)
        assert event_count(cli, run_id) == before
    finally:
        (cli.dir / "go").touch()
        out, err = driver.communicate(timeout=60)
    assert driver.returncode == 6, out + err
    assert cli.lines("done.log") == ["slow"]
    assert cli("budget", run_id, "--add", "steps=1").returncode == 0
    assert cli("resume", run_id).returncode == 0
    assert cli.lines("done.log") == ["slow", "other"]


SNEAKY = """\
goal: raise another run's budget
steps:
  - id: sneaky
    run: >-
      {python} -m trestle budget {victim} --add steps=5 > plain.out 2>&1;
      echo $? >> codes.log;
      env -u TRESTLE_STEP_ID -u TRESTLE_RUN_ID {python} -m trestle budget {victim}
      --add steps=5 > stripped.out 2>&1;
      echo $? >> codes.log
"""


@pytest.mark.usefixtures("unconfined")  # the step reaches the store: the second barrier
def test_a_step_cannot_raise_a_budget(cli: Cli) -> None:
    victim, _ = run_stopped(cli, chain(3, "budget:\n  steps: {hard: 1}\n"))
    before = event_count(cli, victim)
    cli.write("sneaky.yaml", SNEAKY.format(python=sys.executable, victim=victim))
    assert cli("run", "sneaky.yaml").returncode == 0
    assert cli.lines("codes.log") == ["2", "2"]
    plain = flat((cli.dir / "plain.out").read_text())
    assert plain.startswith("error: a budget cannot be raised from inside a running step: ")
    stripped = flat((cli.dir / "stripped.out").read_text())
    assert stripped.startswith("error: a budget cannot be raised from inside a running step: ")
    assert event_count(cli, victim) == before
    assert cli("resume", victim).returncode == 6


# --- forged raises -----------------------------------------------------------------------


def forge(cli: Cli, run_id: str, fields: dict[str, Any]) -> int:
    """Append a ``budget_raised`` event with ``fields`` to the run's events, as a row
    written by hand; return its seq."""
    return append_raw_event(cli.store, run_id, "budget_raised", fields)


def stop_seq(cli: Cli, run_id: str) -> int:
    events = cli.json("log", run_id)
    return int([e for e in events if e["kind"] == "budget_exhausted"][-1]["seq"])


@pytest.mark.parametrize("how", ["unsigned", "bad signature", "other run", "replayed"])
def test_a_forged_raise_is_ignored_and_reported(cli: Cli, how: str) -> None:
    run_id, _ = run_stopped(cli, chain(4, "budget:\n  steps: {hard: 1}\n"))
    key = decision_key()
    plain = {
        "add": {"steps": 10.0},
        "by": "you@host",
        "reason": "",
        "stop_seq": stop_seq(cli, run_id),
    }
    fields = {"run_id": run_id, "kind": "budget", **plain}
    if how == "replayed":  # a genuine raise, copied to answer the next stop
        assert cli("budget", run_id, "--add", "steps=1").returncode == 0
        assert cli("resume", run_id).returncode == 6
        [genuine] = [e for e in cli.json("log", run_id) if e["kind"] == "budget_raised"]
        row = {k: genuine[k] for k in ("add", "by", "reason", "stop_seq", "signed")}
    elif how == "unsigned":
        row = plain
    elif how == "bad signature":
        row = {**plain, "signed": json.dumps({"fields": fields, "signature": "0" * 64})}
    else:
        row = {**plain, "signed": signed_payload({**fields, "run_id": "some-other-run"}, key)}
    done = cli.lines("done.log")
    seq = forge(cli, run_id, row)

    resumed = cli("resume", run_id)
    assert resumed.returncode == 6, resumed.stdout + resumed.stderr
    assert cli.lines("done.log") == done  # nothing more ran
    report = cli.json("show", run_id)
    assert report["status"] == "stopped"
    [refused] = [r for r in report["refused"] if r.get("forged_seq") == seq]
    assert f"the budget_raised event at seq {seq} was ignored" in refused["reason"]
    assert cli("resume", run_id).returncode == 6  # reported once, however often resumed
    again = cli.json("show", run_id)["refused"]
    assert [r["forged_seq"] for r in again if r.get("forged_seq")] == [seq]
    doctor = cli("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"event seq {seq} (budget_raised) is ignored as forged" in flat(doctor.stdout)
    # a genuine raise still works
    assert cli("budget", run_id, "--add", "steps=10").returncode == 0
    assert cli("resume", run_id).returncode == 0
    assert cli.lines("done.log") == ["s1", "s2", "s3", "s4"]


# --- an agent run whose model call the budget held ---------------------------------------


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(model=OPENAI_MODEL) as running:
        yield running


def test_an_agent_run_stopped_before_a_model_call_goes_on_after_a_raise(
    tmp_path: Path, _own_decision_key: Path, server: OpenAIServer
) -> None:
    agent = AgentCli(tmp_path, tmp_path / "trestle.db", _own_decision_key)
    repo = tmp_path / "calc"
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
    settings = AgentSettings(
        model=f"openai:{OPENAI_MODEL}",
        base_url=server.base_url,
        test_command=CALC_TESTS,
        plan_approval="auto",
        max_tokens=512,
    )
    # a hard limit below any call's worst case: the first call is held, not sent
    plan = bootstrap_plan("make add() return the sum", budget=Budget(tokens=Limit(hard=1)))
    store = SqliteStore(agent.store)
    try:
        run_id = create_run(store, plan, workspace=repo, agent=settings)
    finally:
        store.close()

    def resume() -> Any:
        return agent("resume", run_id, "--no-live", "--no-prompt", OPENAI_API_KEY="x")

    stopped = resume()
    assert stopped.returncode == 6, stopped.stdout + stopped.stderr
    assert server.requests == []
    # raise by exactly what the stop names: the held call goes out, the next is held
    match = GO_ON.search(stopped.stdout)
    assert match and match.group(3).startswith("tokens="), stopped.stdout
    assert agent(*match.group(1).split()[1:]).returncode == 0
    stopped = resume()
    assert stopped.returncode == 6, stopped.stdout + stopped.stderr
    assert len(server.requests) == 1  # the read, mid-step: the step's next call is held
    raised = agent("budget", run_id, "--add", "tokens=1000000", "--reason", "go on")
    assert raised.returncode == 0, raised.stderr

    done = resume()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "finished succeeded" in done.stdout
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert server.pending == 0 and len(server.requests) == 5  # no call was sent twice
    kinds = agent.kinds(run_id)
    assert kinds.count("budget_exhausted") == 2 and kinds.count("budget_raised") == 2
    assert kinds.count("model_called") == 5
