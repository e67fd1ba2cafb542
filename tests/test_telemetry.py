"""OpenTelemetry spans of real runs, through the SDK's in-memory exporter.

Each test drives a real run (a SQLite file, real subprocesses, a scripted model for the
agent) with a :class:`Telemetry` whose sink is the real SDK, and reads the spans the
SDK finished: the tree, the names, the GenAI attributes, the span events and the error
statuses; then that a second process catching up from the store emits the rest and
nothing twice, and that without the environment nothing of OpenTelemetry is loaded.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agent_helpers import (
    agent_settings,
    fix_replies,
    sample_workspace,
    start_run,
)
from trestle.agent.runtime import AgentPerformer
from trestle.core.state import RunState
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.approvals import inbox, submit_decision
from trestle.lifecycle.runs import create_run
from trestle.models import ScriptedModel, Usage
from trestle.store import SqliteStore
from trestle.telemetry.env import wanted
from trestle.telemetry.feed import Telemetry
from trestle.telemetry.ids import trace_id_for
from trestle.telemetry.sdk import SdkSink, exporter_names
from trestle.telemetry.spans import SpanRecord

POLL = 0.02


class Traced:
    """A store under ``tmp_path`` and a telemetry whose spans an in-memory exporter keeps."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspace = root / "ws"
        self.workspace.mkdir(exist_ok=True)
        self.store = SqliteStore(root / "trestle.db")
        self.exporter = InMemorySpanExporter()
        self.telemetry = Telemetry(SdkSink([SimpleSpanProcessor(self.exporter)]))

    def create(self, text: str, name: str = "plan.yaml") -> str:
        source = self.root / name
        source.write_text(textwrap.dedent(text), encoding="utf-8")
        plan = parse_plan(source.read_text("utf-8"), source=str(source), base_dir=self.root)
        return create_run(self.store, plan, workspace=self.workspace, plan_path=source)

    def run(self, run_id: str, performer: AgentPerformer | None = None) -> RunState:
        engine = LocalEngine(
            self.store,
            poll_interval=POLL,
            performer=performer,
            sandbox="off",
            telemetry=self.telemetry,
        )
        try:
            return asyncio.run(engine.run(run_id))
        finally:
            engine.close()

    @property
    def spans(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()


@pytest.fixture
def traced(tmp_path: Path) -> Traced:
    return Traced(tmp_path)


def named(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def parent_of(spans: Sequence[ReadableSpan], span: ReadableSpan) -> ReadableSpan | None:
    if span.parent is None:
        return None
    [parent] = [s for s in spans if s.context.span_id == span.parent.span_id]
    return parent


def assert_one_tree(spans: Sequence[ReadableSpan]) -> None:
    """One trace, no span id twice, every parent among the spans, one root."""
    ids = [s.context.span_id for s in spans]
    assert len(ids) == len(set(ids))
    assert len({s.context.trace_id for s in spans}) == 1
    assert all(s.parent is None or s.parent.span_id in ids for s in spans)
    assert len([s for s in spans if s.parent is None]) == 1


PLAN = """\
    steps:
      - id: build
        run: echo built > out.txt
        verify: [{file_exists: out.txt}]
      - id: flaky
        run: "test -f again || (touch again; exit 1)"
        retries: 2
      - id: bad
        run: exit 3
        needs: [build]
      - id: after
        run: echo after
        needs: [bad]
"""


def test_a_plan_run_is_one_trace_of_steps_and_attempts_with_their_errors(
    traced: Traced,
) -> None:
    run_id = traced.create(PLAN)
    traced.run(run_id)
    spans = traced.spans
    assert_one_tree(spans)
    assert spans[0].context.trace_id == trace_id_for(run_id)
    root = named(spans, "invoke_workflow plan")
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["trestle.run.id"] == run_id
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["trestle.run.status"] == "needs_human"  # 'bad' is dead-lettered

    build = named(spans, "step build")
    assert parent_of(spans, build) is root and build.status.status_code is StatusCode.UNSET
    attempt = named(spans, "attempt build#1")
    assert parent_of(spans, attempt) is build
    assert attempt.attributes is not None
    assert attempt.attributes["trestle.idempotency_key"] == f"{run_id}/build/1"
    assert [e.name for e in attempt.events] == ["trestle.check"]

    # a failed attempt, then a retry under the same step span, which succeeds
    failed = named(spans, "attempt flaky#1")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "failed"
    assert parent_of(spans, named(spans, "attempt flaky#2")) is named(spans, "step flaky")
    assert "trestle.retry.scheduled" in [e.name for e in named(spans, "step flaky").events]

    bad = named(spans, "step bad")
    assert bad.status.status_code is StatusCode.ERROR
    assert bad.attributes is not None and bad.attributes["trestle.step.status"] == "failed"
    after = named(spans, "step after")  # never started: a moment's span, blocked
    assert after.attributes is not None and after.attributes["trestle.step.status"] == "blocked"
    assert after.start_time == after.end_time


def test_an_approval_is_a_span_event_and_the_run_that_goes_on_a_continued_span(
    traced: Traced,
) -> None:
    run_id = traced.create(
        """\
        steps:
          - id: charge
            irreversible: true
            run: echo x >> count
        """
    )
    assert traced.run(run_id).finished == "needs_human"
    [card] = inbox(traced.store)
    submit_decision(traced.store, card.ref, "approve", reason="checked")
    assert traced.run(run_id).finished == "succeeded"
    spans = traced.spans
    assert_one_tree(spans)
    first, later = (s for s in spans if s.name.startswith("invoke_workflow"))
    assert later.name == "invoke_workflow plan (continued)"
    assert parent_of(spans, later) is first
    waited, ran = (s for s in spans if s.name == "step charge")
    assert "trestle.approval.requested" in [e.name for e in waited.events]
    assert waited.attributes is not None
    assert waited.attributes["trestle.step.status"] == "unfinished"
    assert "trestle.approval.decided" in [e.name for e in ran.events]
    assert parent_of(spans, named(spans, "attempt charge#1")) is ran
    assert "trestle.run.resumed" in [e.name for e in later.events]


def test_an_agent_run_has_phases_model_calls_and_tool_calls_by_the_genai_conventions(
    tmp_path: Path,
) -> None:
    traced = Traced(tmp_path)
    workspace = sample_workspace(tmp_path, "agent-ws")
    run_id = start_run(traced.store, workspace, settings=agent_settings())
    replies = fix_replies()
    replies[0] = replies[0].model_copy(  # type: ignore[union-attr]
        update={"usage": Usage(input_tokens=120, output_tokens=30, cost=0.002)}
    )
    state = traced.run(run_id, AgentPerformer(ScriptedModel(replies)))
    assert state.finished == "succeeded"
    spans = traced.spans
    assert_one_tree(spans)
    root = named(spans, "invoke_agent trestle")
    assert root.attributes is not None
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.request.model"] == "scripted"
    assert root.attributes["trestle.cost"] == pytest.approx(0.002)

    phases = [s.name for s in spans if s.name.startswith("phase ")]
    assert sorted(phases) == sorted(
        ["phase UNDERSTAND", "phase PLAN", "phase EXECUTE", "phase VALIDATE"]
    )
    assert all(parent_of(spans, named(spans, p)) is root for p in phases)

    chats = [s for s in spans if s.name == "chat scripted"]
    assert len(chats) == 5
    first = min(chats, key=lambda s: s.start_time or 0)
    assert first.attributes is not None
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.usage.input_tokens"] == 120
    assert first.attributes["gen_ai.usage.output_tokens"] == 30
    assert first.attributes["trestle.cost"] == pytest.approx(0.002)
    assert parent_of(spans, first) is named(spans, "attempt understand#1")
    # the run's usage is its calls' (the scripted model estimates what it is not given)
    used = [(s.attributes or {})["gen_ai.usage.input_tokens"] for s in chats]
    assert root.attributes["gen_ai.usage.input_tokens"] == sum(u for u in used if type(u) is int)

    edit = named(spans, "execute_tool edit_file")
    assert edit.attributes is not None
    assert edit.attributes["gen_ai.tool.name"] == "edit_file"
    assert edit.attributes["gen_ai.tool.call.id"] == "c1"
    assert (edit.attributes["trestle.tier"], edit.attributes["trestle.tier.source"]) == (
        "log",
        "default",
    )
    assert parent_of(spans, edit) is named(spans, "attempt fix#1")
    assert (named(spans, "step fix").attributes or {})["trestle.phase"] == "EXECUTE"


def test_a_child_run_joins_its_parents_trace_under_the_delegating_attempt(
    traced: Traced,
) -> None:
    (traced.root / "child.yaml").write_text(
        "steps:\n  - id: note\n    run: echo child > note.txt\n", encoding="utf-8"
    )
    run_id = traced.create(
        """\
        steps:
          - id: research
            delegate: {goal: write the note, plan: child.yaml}
        """
    )
    assert traced.run(run_id).finished == "succeeded"
    spans = traced.spans
    assert_one_tree(spans)
    roots = [s for s in spans if s.name == "invoke_workflow plan"]
    [child] = [s for s in roots if s.parent is not None]
    assert child.attributes is not None
    assert child.attributes["trestle.run.id"] == f"{run_id}.research.1"
    assert parent_of(spans, child) is named(spans, "attempt research#1")
    assert parent_of(spans, named(spans, "step note")) is child


def test_a_process_catching_up_from_the_store_emits_the_rest_and_nothing_twice(
    traced: Traced,
) -> None:
    run_id = traced.create(PLAN)
    traced.run(run_id)
    whole = {(s.name, s.context.span_id, s.parent.span_id if s.parent else None)
             for s in traced.spans}  # fmt: skip
    stored = traced.store.events(run_id)
    halves = [stored[: len(stored) // 2], stored[len(stored) // 2 :]]
    got: list[ReadableSpan] = []
    for half in halves:  # two processes, each committing one half
        exporter = InMemorySpanExporter()
        telemetry = Telemetry(SdkSink([SimpleSpanProcessor(exporter)]))
        telemetry.committed(run_id, half[0].seq, [item.event for item in half], traced.store.events)
        got += exporter.get_finished_spans()
    assert {(s.name, s.context.span_id, s.parent.span_id if s.parent else None)
            for s in got} == whole  # fmt: skip
    assert len(got) == len(whole)


def test_the_environment_asks_for_traces_by_the_standard_variables() -> None:
    assert wanted({}) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert wanted(endpoint) == "OTEL_EXPORTER_OTLP_ENDPOINT"
    assert wanted({"OTEL_TRACES_EXPORTER": "console"}) == "OTEL_TRACES_EXPORTER"
    assert wanted({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    assert wanted({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is None
    assert exporter_names({}) == ["otlp_proto_http"]
    grpc = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_EXPORTER": "otlp,console"}
    assert exporter_names(grpc) == ["otlp_proto_grpc", "console"]


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_the_environment_no_opentelemetry_is_loaded(tmp_path: Path) -> None:
    result = _python(
        f"""
        import sys
        from trestle.engines.local import LocalEngine
        from trestle.store import SqliteStore
        engine = LocalEngine(SqliteStore({str(tmp_path / "t.db")!r}))
        assert engine.telemetry is None
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], sys.modules
        """
    )
    assert result.returncode == 0, result.stderr


def test_with_the_environment_but_not_the_extra_one_warning_and_no_spans() -> None:
    result = _python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        from trestle.telemetry.env import from_env
        assert from_env() is None and from_env() is None
        """,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("trestle: OTEL_EXPORTER_OTLP_ENDPOINT is set") == 1
    assert 'pip install "trestle-runtime[otel]"' in result.stderr


def test_a_span_carries_no_secret_a_step_printed_nor_a_surrogate(traced: Traced) -> None:
    # a span leaves this machine: a failed check's reason quoting a step's output took
    # an environment secret and a credential with it, and a file name of bytes that are
    # not UTF-8 (an unpaired surrogate) made the exporter drop the whole batch
    token = "hunter2-but-longer"
    traced.telemetry = Telemetry(
        SdkSink([SimpleSpanProcessor(traced.exporter)], environ={"DEPLOY_TOKEN": token})
    )
    credential = "ghp_" + "a" * 36
    run_id = traced.create(
        f"""\
        steps:
          - id: leak
            run: "true"
            verify:
              - command: "printf 'token={token} key={credential} name=odd\\\\377name'; exit 1"
        """
    )
    traced.run(run_id)
    spans = traced.spans
    leak = named(spans, "attempt leak#1")
    assert leak.status.description is not None
    said = repr(
        [(s.attributes, s.status.description, [e.attributes for e in s.events]) for s in spans]
    )
    assert token not in said and credential not in said
    assert "[redacted: $DEPLOY_TOKEN]" in said and "[redacted: credential]" in said
    # and what a python: check's reason can hold, a file name os.listdir gave back with
    # its bytes as unpaired surrogates, reaches the exporter replaced, with the rest
    odd = "out\udcff\udced\udca0\udc80name"
    record = SpanRecord("step odd", 1, 2, None, 0.0, 1.0, {"trestle.step.reason": odd}, error=odd)
    traced.telemetry.sink.emit([record])
    [sent] = [s for s in traced.exporter.get_finished_spans() if s.name == "step odd"]
    assert sent.attributes is not None and sent.status.description is not None
    assert sent.attributes["trestle.step.reason"] == sent.status.description
    assert sent.status.description == "out\ufffd\ufffd\ufffd\ufffdname"
