"""The monitors from the command line: ``trestle health``, alerts in ``trestle log``,
and ``[monitors]`` in ``trestle.toml``, through the real console script."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from agent_helpers import call, drive
from test_cli import Cli, flat
from test_monitor_runtime import looping_replies, start
from trestle.core.records.monitors import DEFAULT_KINDS, MonitorSettings
from trestle.models import ScriptedModel
from trestle.store import SqliteStore

PLAN = """\
goal: say hello
steps:
  - id: hello
    run: echo hello
"""


def paused_run(tmp_path: Path) -> tuple[Cli, str]:
    """A run a monitor paused: it waits for a human's go-on."""
    store, run_id = start(tmp_path, MonitorSettings(actions={"warning": "pause"}))
    drive(store, run_id, ScriptedModel(looping_replies()))
    store.close()
    return Cli(tmp_path, tmp_path / "store.db"), run_id


def test_health_with_no_runs_says_so(tmp_path: Path) -> None:
    cli = Cli(tmp_path, tmp_path / "t.db")
    SqliteStore(cli.store).close()
    result = cli("health")
    assert result.returncode == 0, result.stderr
    assert "no active runs" in result.stdout


def test_health_shows_a_paused_run_and_its_alert_and_exits_1(tmp_path: Path) -> None:
    cli, run_id = paused_run(tmp_path)
    result = cli("health")
    assert result.returncode == 1, result.stderr
    text = flat(result.stdout)
    assert f"{run_id} needs human" in text
    assert "no live driver" in text
    assert "-> pause (waits for a human)" in text

    shown = json.loads(cli("health", "--json").stdout)
    assert [r["run_id"] for r in shown] == [run_id]
    waiting = [a for a in shown[0]["alerts"] if a["waiting"]]
    assert len(waiting) == 1 and waiting[0]["action"] == "pause"


def test_the_log_shows_each_alert_with_its_evidence_and_action(tmp_path: Path) -> None:
    cli, run_id = paused_run(tmp_path)
    result = cli("log", run_id)
    assert result.returncode == 0, result.stderr
    text = result.stdout  # a table: long details wrap within their cells
    assert "alert_raised" in text and "repeat/repeated_action ->" in text
    assert "approval 1 (alert)" in text
    events = json.loads(cli("log", run_id, "--json").stdout)
    raised = [e for e in events if e["kind"] == "alert_raised"]
    assert raised and all(e["alert"]["evidence"] for e in raised)


def test_bad_monitor_settings_are_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    cli = Cli(tmp_path, tmp_path / "t.db")
    cli.write("plan.yaml", PLAN)
    cli.write(
        "trestle.toml", '[monitors]\nstall_afer = 5\n[monitors.actions]\nwarning = "explode"\n'
    )
    result = cli("run", "plan.yaml", "--no-live")
    assert result.returncode == 2
    err = flat(result.stderr)
    assert "trestle.toml:2: monitors.stall_afer: unknown field (did you mean 'stall_after'?)" in err
    assert "monitors.actions.warning" in err and "explode" in err
    assert not (tmp_path / "t.db").exists() or cli("runs", "--json").stdout.strip() == "[]"


def test_monitor_settings_from_trestle_toml_are_recorded_with_the_run(tmp_path: Path) -> None:
    cli = Cli(tmp_path, tmp_path / "t.db")
    cli.write("plan.yaml", PLAN)
    toml = cli.write(
        "trestle.toml", '[monitors]\nstall_after = 42\n[monitors.kinds]\nno_edit = "stop"\n'
    )
    written = hashlib.sha256(toml.read_bytes()).hexdigest()
    result = cli("run", "plan.yaml", "--no-live", "--accept-policy", written)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[1]
    first = json.loads(cli("log", run_id, "--json").stdout)[0]
    assert first["monitors"]["stall_after"] == 42
    # the kind named, over the defaults of those it does not name
    assert first["monitors"]["kinds"] == {**DEFAULT_KINDS, "no_edit": "stop"}


def test_monitors_eval_replays_a_trestle_run_log_and_the_corpus(tmp_path: Path) -> None:
    cli, run_id = paused_run(tmp_path)
    log = tmp_path / "run.json"
    log.write_text(cli("log", run_id, "--json").stdout, encoding="utf-8")
    result = cli("monitors", "eval", log, "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["runs"] == 1
    # the replay flags the run as the live monitors did
    assert figures["results"][0]["flags"], figures["results"][0]

    corpus = Path(__file__).parent / "data" / "monitor_corpus"
    table = cli("monitors", "eval", corpus)
    assert table.returncode == 0, table.stderr
    assert "Replayed 132 runs" in table.stdout
    assert "| repeat | repeated_action |" in table.stdout
    # per source, with counts and intervals
    assert "| mini-swe-agent | 66 | 23/28 = 82% (95% CI 64%-92%) | 4/34 = 12%" in table.stdout


def test_monitors_eval_reads_gzipped_real_runs_and_labels_them(tmp_path: Path) -> None:
    cli = Cli(tmp_path, tmp_path / "t.db")
    real = Path(__file__).parent / "data" / "real_runs"
    labels: dict[str, dict[str, str]] = {
        f"openhands-{name}.json.gz": {"outcome": "succeeded"}
        for name in ("django__django-11265", "django__django-16082", "sympy__sympy-16886")
    }
    labels["openhands-pytest-dev__pytest-10356.json.gz"] = {"outcome": "exhausted"}
    cli.write("labels.json", json.dumps(labels))
    table = cli("monitors", "eval", real, "--labels", "labels.json")
    assert table.returncode == 0, table.stderr
    # matplotlib-26208, unlabelled, has an unknown outcome and counts in neither share
    assert "Replayed 8 runs (1 exhausted, 6 succeeded)" in table.stdout
    assert "| mini-swe-agent | 3 | - (no runs) | 0/3 = 0% (95% CI 0%-56%) |" in table.stdout
    # the exhausted excerpt stops at turn 17: its flag comes late in the excerpt
    assert "| openhands | 5 | 0/1 = 0% (95% CI 0%-79%) | 0/3 = 0% (95% CI 0%-56%) |" in (
        table.stdout
    )


def test_monitors_eval_refuses_a_file_it_cannot_read(tmp_path: Path) -> None:
    cli = Cli(tmp_path, tmp_path / "t.db")
    cli.write("broken.traj", "{not json")
    result = cli("monitors", "eval", "broken.traj")
    assert result.returncode == 2
    assert "broken.traj" in result.stderr and "Traceback" not in result.stderr


def test_a_monitors_message_makes_no_line_of_what_to_check(tmp_path: Path) -> None:
    """A monitor's message names what the model did, a path it chose among them: one
    holding a newline ('  - FAKE: ...') made a bullet of its own under 'what a human
    should check'."""
    path = "calc.py\n  - FAKE: nothing to check"
    store, run_id = start(tmp_path, MonitorSettings(actions={"warning": "pause"}))
    replies = looping_replies()
    replies[3:6] = [call("read_file", path=path, call_id=f"r{i}") for i in range(3)]
    drive(store, run_id, ScriptedModel(replies))
    store.close()
    shown = Cli(tmp_path, tmp_path / "store.db")("show", run_id)
    assert "a monitor paused the run" in shown.stdout, shown.stdout
    assert not [line for line in shown.stdout.splitlines() if "- FAKE" in line[:8]], shown.stdout
