"""``trestle export``: a run's events as JSON Lines (read back unchanged), as a SWE-agent
trajectory (read back by Trestle's own importer, as ``trestle monitors eval`` reads it,
and shaped as SWE-agent's inspectors read it), and its spans as OTLP/JSON; through the
real console script for the formats and the bad input."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from agent_helpers import agent_settings, call, drive, fix_replies, sample_workspace, start_run
from test_cli import Cli, flat
from trestle.cli.export import FORMATS as cli_formats
from trestle.core.events import ModelCalled, StoredEvent, ToolCallEnded
from trestle.models import ScriptedModel
from trestle.monitors.importers import load_trajectory_file
from trestle.monitors.rawjson import OUTPUT_CAP
from trestle.presentation.exports import (
    FORMATS,
    command_of,
    event_lines,
    export_text,
    read_event_lines,
    recorded_spans,
    swe_agent_trajectory,
)
from trestle.store import SqliteStore

PLAN = """\
goal: greet twice
steps:
  - id: hello
    description: say hello
    run: echo hello
  - id: bye
    run: echo bye
    needs: [hello]
"""


def agent_run(tmp_path: Path) -> tuple[Cli, str, list[StoredEvent]]:
    """A finished agent run that fixes the sample workspace with the scripted model."""
    store = SqliteStore(tmp_path / "store.db")
    run_id = start_run(store, sample_workspace(tmp_path), settings=agent_settings(max_turns=12))
    drive(store, run_id, ScriptedModel(fix_replies()))
    events = store.events(run_id)
    store.close()
    return Cli(tmp_path, tmp_path / "store.db"), run_id, events


def plan_run(tmp_path: Path) -> tuple[Cli, str]:
    """A finished run of :data:`PLAN`, made by ``trestle run``."""
    tmp_path.mkdir(exist_ok=True)
    cli = Cli(tmp_path, tmp_path / "store.db")
    cli.write("plan.yaml", PLAN)
    ran = cli("run", "plan.yaml", "--no-live")
    assert ran.returncode == 0, ran.stderr
    return cli, cli.json("runs")[0]["run_id"]


def test_an_agent_run_as_swe_agent_reads_back_through_the_monitors_importer(
    tmp_path: Path,
) -> None:
    cli, run_id, events = agent_run(tmp_path)
    exported = cli("export", run_id, "--format", "swe-agent", "--output", "run.traj")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == "" and exported.stderr == ""

    imported = load_trajectory_file(tmp_path / "run.traj")
    assert imported.source == "swe-agent" and imported.outcome == "succeeded"
    assert imported.facts.goal == "make add() return the sum"
    assert imported.facts.turn_limit == 12
    # every tool call the model asked for is an action, in order, with what it returned
    ended = {
        (e.event.step, e.event.round, e.event.turn, e.event.call_id): e.event
        for e in events
        if isinstance(e.event, ToolCallEnded)
    }
    expected = []
    for stored in events:
        call = stored.event
        if isinstance(call, ModelCalled):
            for c in call.response.tool_calls:
                content = ended[(call.step, call.round, call.turn, c.id)].content
                expected.append((c.name, command_of(c.name, c.arguments), content[:OUTPUT_CAP]))
    actions = [a for t in imported.turns for a in t.actions]
    assert [(a.arguments, a.output) for a in actions] == [(c, o) for _, c, o in expected]
    assert [name for name, _, _ in expected] == ["read_file", "edit_file", "finish"]
    read, edit, _ = actions
    assert (read.kind, read.target) == ("read", "calc.py")
    assert (edit.kind, edit.writes) == ("edit", ("calc.py",))
    # the two answers in words (findings, plan) are turns without an action
    said = [t for t in imported.turns if not t.actions]
    assert len(said) == 2 and all(t.problem is None for t in said)
    assert len(imported.turns) == sum(isinstance(e.event, ModelCalled) for e in events)

    evaluated = cli("monitors", "eval", "run.traj", "--json")
    assert evaluated.returncode == 0, evaluated.stderr


def test_the_trajectory_has_what_swe_agent_inspectors_read(tmp_path: Path) -> None:
    _, run_id, events = agent_run(tmp_path)
    traj = json.loads(export_text("swe-agent", events))
    # the web inspector: the first user message is the problem statement, every
    # assistant message has an action, and a submitted run has a submission
    history = traj["history"]
    assert history[0]["role"] == "user" and history[0]["content"] == "make add() return the sum"
    assistant = [m for m in history if m["role"] == "assistant"]
    assert assistant and all("action" in m for m in assistant)
    info = traj["info"]
    assert info["exit_status"] == "submitted" and "submission" in info
    stats = info["model_stats"]
    assert stats["api_calls"] == 5
    assert all(isinstance(stats[k], int | float) for k in ("instance_cost", "tokens_sent"))
    # the command-line inspector: each step's thought, action, observation, response
    for entry in traj["trajectory"]:
        assert {"thought", "action", "observation", "response", "execution_time"} <= set(entry)
        assert entry["extra_info"]["trestle"]["step"]
    assert traj["environment"] == run_id


def test_a_plan_run_as_swe_agent_is_its_steps_commands_and_outputs(tmp_path: Path) -> None:
    cli, run_id = plan_run(tmp_path)
    shown = cli("export", run_id, "--format", "swe-agent")
    assert shown.returncode == 0, shown.stderr
    traj = json.loads(shown.stdout)
    steps = [(e["action"], e["observation"], e["thought"]) for e in traj["trajectory"]]
    assert steps == [("echo hello", "hello\n", "say hello"), ("echo bye", "bye\n", "")]
    assert traj["info"]["model_stats"]["api_calls"] == 0

    (tmp_path / "plan.traj").write_text(shown.stdout, encoding="utf-8")
    imported = load_trajectory_file(tmp_path / "plan.traj")
    assert [a.arguments for t in imported.turns for a in t.actions] == ["echo hello", "echo bye"]


def test_jsonl_is_every_event_and_reads_back_unchanged(tmp_path: Path) -> None:
    _, _, events = agent_run(tmp_path)
    text = event_lines(events)
    assert len(text.splitlines()) == len(events)
    assert read_event_lines(text) == [(e.seq, e.event) for e in events]

    cli, run_id = plan_run(tmp_path / "plan")
    shown = cli("export", run_id)  # jsonl is the default
    assert shown.returncode == 0, shown.stderr
    store = SqliteStore(cli.store)
    stored = store.events(run_id)
    store.close()
    assert read_event_lines(shown.stdout) == [(e.seq, e.event) for e in stored]
    first = json.loads(shown.stdout.splitlines()[0])
    assert {"seq", "v", "at", "kind", "run_id", "plan"} <= set(first)
    # monitors eval reads the file as a Trestle run
    (tmp_path / "run.jsonl").write_text(shown.stdout, encoding="utf-8")
    assert load_trajectory_file(tmp_path / "run.jsonl").source == "trestle"


_HEX = {"traceId": 32, "spanId": 16, "parentSpanId": 16}


def _check_otlp_by_hand(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The OTLP/JSON shape, field by field; returns the spans."""
    (resource,) = request["resourceSpans"]
    keys = {a["key"]: a["value"] for a in resource["resource"]["attributes"]}
    assert keys["service.name"] == {"stringValue": "trestle"}
    (scope,) = resource["scopeSpans"]
    assert scope["scope"]["name"] == "trestle"
    spans: list[dict[str, Any]] = scope["spans"]
    for span in spans:
        for key, digits in _HEX.items():
            if key in span:
                assert re.fullmatch(f"[0-9a-f]{{{digits}}}", span[key]), (key, span[key])
        for key in ("startTimeUnixNano", "endTimeUnixNano"):
            assert isinstance(span[key], str) and span[key].isdigit()
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])
        assert span["kind"] in (1, 3)
        for attribute in span["attributes"]:
            (kind,) = attribute["value"]
            assert kind in ("stringValue", "intValue", "doubleValue", "boolValue", "arrayValue")
            if kind == "intValue":
                assert isinstance(attribute["value"][kind], str)
    return spans


def _parse_as_protobuf(request: dict[str, Any]) -> int:
    """The request parsed into opentelemetry-proto's message (ids turned from OTLP's hex
    into the base64 protobuf's JSON mapping expects); returns how many spans it holds."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    def as_base64(node: Any) -> Any:
        if isinstance(node, list):
            return [as_base64(n) for n in node]
        if not isinstance(node, dict):
            return node
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode() if k in _HEX else as_base64(v)
            for k, v in node.items()
        }

    message = json_format.ParseDict(as_base64(request), ExportTraceServiceRequest())
    spans = message.resource_spans[0].scope_spans[0].spans
    assert all(len(s.trace_id) == 16 and len(s.span_id) == 8 for s in spans)
    return len(spans)


def test_otlp_json_is_the_runs_spans_as_an_export_request(tmp_path: Path) -> None:
    cli, run_id, events = agent_run(tmp_path)
    shown = cli("export", run_id, "--format", "otlp-json")
    assert shown.returncode == 0, shown.stderr
    request = json.loads(shown.stdout)
    spans = _check_otlp_by_hand(request)
    assert len(spans) == len(recorded_spans(events))
    names = [s["name"] for s in spans]
    assert "invoke_agent trestle" in names and "execute_tool edit_file" in names
    ids = {s["spanId"] for s in spans}
    assert all(s.get("parentSpanId", next(iter(ids))) in ids for s in spans)
    assert len({s["traceId"] for s in spans}) == 1
    if importlib.util.find_spec("opentelemetry.proto") is not None:
        assert _parse_as_protobuf(request) == len(spans)


def test_bad_input_is_refused_with_what_to_do(tmp_path: Path) -> None:
    assert cli_formats == FORMATS  # --help and a wrong --format load none of the exporters
    cli, run_id = plan_run(tmp_path)
    wrong = cli("export", run_id, "--format", "xml")
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert "'xml': choose jsonl, swe-agent or otlp-json" in flat(wrong.stderr)

    unknown = cli("export", "nope")
    assert unknown.returncode == 2
    assert f"no run 'nope' in {cli.store}" in flat(unknown.stderr)

    target = tmp_path / "missing" / "run.jsonl"
    unwritable = cli("export", run_id, "--output", target)
    assert unwritable.returncode == 2
    assert flat(unwritable.stderr) == (
        f"error: --output {str(target)!r}: cannot write it: No such file or directory"
    )
    feedback = cli("feedback", "export", "--output", target)  # the same helper writes it
    assert feedback.returncode == 2
    assert flat(feedback.stderr) == flat(unwritable.stderr)


@pytest.mark.parametrize("fmt", ["jsonl", "swe-agent", "otlp-json"])
def test_a_run_not_finished_is_exported_as_recorded_and_said_so(tmp_path: Path, fmt: str) -> None:
    store = SqliteStore(tmp_path / "store.db")
    run_id = start_run(store, sample_workspace(tmp_path))  # recorded, never driven
    store.close()
    cli = Cli(tmp_path, tmp_path / "store.db")
    shown = cli("export", run_id, "--format", fmt)
    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id} has not finished: exported the 1 event recorded so far" in flat(
        shown.stderr
    )
    if fmt == "swe-agent":
        assert json.loads(shown.stdout)["info"]["exit_status"] is None
    if fmt == "otlp-json":
        (span,) = _check_otlp_by_hand(json.loads(shown.stdout))
        unfinished = {a["key"]: a["value"] for a in span["attributes"]}["trestle.unfinished"]
        assert unfinished == {"boolValue": True}


def test_the_trajectory_of_no_run_is_refused() -> None:
    with pytest.raises(ValueError, match="begin with run_created"):
        swe_agent_trajectory([])


OBEYED = "\x9b31m\u202eevil\u200b"  # a terminal's CSI, a right-to-left override, a zero-width space
RAW = {"\x9b", "\u202e", "\u200b"}


def test_what_a_terminal_would_obey_is_printed_escaped_and_reads_back_the_same(
    tmp_path: Path,
) -> None:
    # JSON writes C1 controls and bidirectional marks as they are inside its strings, so
    # `trestle export` and `trestle trajectory` printed a model's or a step's raw
    cli = Cli(tmp_path, tmp_path / "store.db")
    cli.write(
        "plan.yaml", "steps:\n  - id: say\n    run: printf '\\302\\23331m\\342\\200\\256evil'\n"
    )
    assert cli("run", "plan.yaml", "--no-live").returncode == 0
    run_id = cli.json("runs")[0]["run_id"]
    store = SqliteStore(cli.store)
    stored = store.events(run_id)
    store.close()
    assert any(
        "\x9b31m\u202eevil" in json.dumps(e.event.model_dump(), ensure_ascii=False) for e in stored
    )
    for fmt in cli_formats:
        shown = cli("export", run_id, "--format", fmt)
        assert shown.returncode == 0, shown.stderr
        assert not set(shown.stdout) & RAW, fmt
    jsonl = cli("export", run_id).stdout
    assert "\\u009b31m\\u202eevil" in jsonl
    assert read_event_lines(jsonl) == [(e.seq, e.event) for e in stored]

    store = SqliteStore(tmp_path / "agent.db")
    replies = fix_replies()
    finish = call("finish", summary="add() adds", claims=["test_add passes"])
    replies[-1] = finish.model_copy(update={"text": f"done {OBEYED}"})  # the model's words
    agent_id = start_run(store, sample_workspace(tmp_path), settings=agent_settings())
    drive(store, agent_id, ScriptedModel(replies))
    store.close()
    exported = Cli(tmp_path, tmp_path / "agent.db")("trajectory", agent_id)
    assert exported.returncode == 0, exported.stderr
    assert not set(exported.stdout) & RAW
    assert "done \\u009b31m\\u202eevil\\u200b" in exported.stdout
