"""What OpenTelemetry costs a plan step and an agent turn: off, to the SDK's in-memory
exporter, and over OTLP/HTTP to a receiver on 127.0.0.1, in one run.

Usage::

    python bench/telemetry_cost.py [--steps 300] [--turns 200] [--repeat 5] [--json out.json]

plan step
    ``--steps`` durable no-op Python steps in a chain (``workloads.chain_plan``) on a
    SQLite file, driven by :class:`LocalEngine` with ``telemetry=None`` (off: the
    engine's path when no ``OTEL_*`` variable is set), with a :class:`Telemetry`
    whose SDK sink has a ``BatchSpanProcessor`` into an ``InMemorySpanExporter``, and
    with one into the OTLP/HTTP exporter posting to
    :class:`trestle.testing.otlp.OtlpReceiver`. Figure: wall time / steps.
agent turn
    A scripted agent run whose one work step makes ``--turns`` ``read_file`` calls (a
    ~4 KB file), monitors on. Figure: the median time between two consecutive model
    calls of that step (from the recorded events), i.e. one turn: the model call, the
    tool call, their commits, and their spans.

The three variants run interleaved, in an order that turns each repetition,
``--repeat`` times, each on a fresh store; figures
are medians, ratios to "off" of the same run. Spans are counted at the end, so a
variant that sent nothing is seen.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hostinfo import load_average, machine_info
from trestle.agent.runtime import AgentPerformer
from trestle.core.events import ModelCalled
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run
from trestle.models import ModelResponse, ScriptedModel, ToolCall
from trestle.store import SqliteStore
from trestle.telemetry.feed import Telemetry
from trestle.telemetry.sdk import SdkSink
from trestle.testing.otlp import OtlpReceiver
from workloads import chain_plan, importable_steps

VARIANTS = ("off", "memory", "otlp")


def telemetry_for(
    variant: str, receiver: OtlpReceiver
) -> tuple[Telemetry | None, Callable[[], int]]:
    """The engine's telemetry for ``variant``, and how to count the spans it sent."""
    if variant == "off":
        return None, lambda: 0
    exporter: SpanExporter
    if variant == "memory":
        memory = InMemorySpanExporter()
        exporter = memory
        count: Callable[[], int] = lambda: len(memory.get_finished_spans())  # noqa: E731
    else:
        exporter = OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")
        before = len(receiver.spans)
        count = lambda: len(receiver.spans) - before  # noqa: E731
    return Telemetry(SdkSink([BatchSpanProcessor(exporter)])), count


def plan_step(work: Path, steps: int, telemetry: Telemetry | None) -> float:
    """Seconds per step of a chain of no-op steps."""
    store = SqliteStore(work / "plan.db")
    run_id = create_run(store, chain_plan(steps), workspace=work)
    engine = LocalEngine(store, sandbox="off", telemetry=telemetry)
    try:
        started = time.perf_counter()
        state = asyncio.run(engine.run(run_id))
        elapsed = time.perf_counter() - started
    finally:
        engine.close()
        store.close()
    assert state.finished == "succeeded", state.finished
    return elapsed / steps


FINISH = json.dumps({"summary": "read", "claims": ["read"]})


def _path(turn: int) -> str:
    return json.dumps({"path": f"f{turn}.txt"})


def _replies(turns: int) -> list[ModelResponse | str]:
    findings = {"summary": "s", "relevant_files": [{"path": "big.txt", "why": "w"}],
                "how_to_test": "t"}  # fmt: skip
    step = {"id": "work", "objective": "read it", "files": ["big.txt"], "new_files": [],
            "needs": [], "verify": [{"file_exists": "big.txt"}]}  # fmt: skip
    read = [
        ModelResponse(
            tool_calls=(
                ToolCall(id=f"r{i}", name="read_file", arguments=f'{{"path": "f{i}.txt"}}'),
            ),
            finish_reason="tool_calls",
        )
        for i in range(turns)
    ]
    done = ModelResponse(
        tool_calls=(
            ToolCall(id="f", name="finish", arguments='{"summary": "read", "claims": ["read"]}'),
        ),
        finish_reason="tool_calls",
    )
    return [json.dumps(findings), json.dumps({"summary": "", "steps": [step]}), *read, done]


def agent_turn(work: Path, turns: int, telemetry: Telemetry | None) -> float:
    """Seconds per turn of an agent step that reads a file ``turns`` times."""
    repo = work / "repo"
    repo.mkdir()
    (repo / "big.txt").write_text("x", "utf-8")
    for i in range(turns):  # a file per turn: the same read again and again is a loop
        (repo / f"f{i}.txt").write_text(f"{i:<79}\n" * 50, "utf-8")
    store = SqliteStore(work / "agent.db")
    settings = AgentSettings(model="scripted", test_command="true", plan_approval="auto")
    plan = bootstrap_plan("read the file", parallelism=4)
    run_id = create_run(store, plan, workspace=repo, agent=settings)
    performer = AgentPerformer(ScriptedModel(_replies(turns)))
    engine = LocalEngine(store, sandbox="off", performer=performer, telemetry=telemetry)
    try:
        state = asyncio.run(engine.run(run_id))
        calls = [e.event.at for e in store.events(run_id)
                 if isinstance(e.event, ModelCalled) and e.event.step == "work"]  # fmt: skip
    finally:
        engine.close()
        store.close()
    if state.finished != "succeeded":
        from trestle.core.report import build_report

        raise SystemExit(f"agent run ended {state.finished}: {build_report(state)}")
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    return statistics.median(gaps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    importable_steps()
    results: dict[str, dict[str, list[float]]] = {
        v: {"step": [], "turn": [], "spans": []} for v in VARIANTS
    }
    with OtlpReceiver() as receiver, tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            # the order turns each repetition, so no variant always runs first
            for variant in VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]:
                for kind in ("step", "turn"):
                    work = Path(tmp) / f"{rep}-{variant}-{kind}"
                    work.mkdir()
                    telemetry, count = telemetry_for(variant, receiver)
                    if kind == "step":
                        figure = plan_step(work, args.steps, telemetry)
                    else:
                        figure = agent_turn(work, args.turns, telemetry)
                    if telemetry is not None:
                        telemetry.flush()
                    results[variant][kind].append(figure)
                    results[variant]["spans"].append(count())
    summary: dict[str, Any] = {
        "machine": machine_info(Path(tempfile.gettempdir())),
        "load": load_average(),
        "args": {k: v for k, v in vars(args).items() if k != "json"},
    }
    off = {k: statistics.median(results["off"][k]) for k in ("step", "turn")}
    print(f"{'variant':8} {'µs/step':>9} {'ratio':>6} {'ms/turn':>9} {'ratio':>6} {'spans/run':>9}")
    for variant in VARIANTS:
        step = statistics.median(results[variant]["step"])
        turn = statistics.median(results[variant]["turn"])
        spans = max(results[variant]["spans"])
        summary[variant] = {"us_per_step": step * 1e6, "ms_per_turn": turn * 1e3,
                            "step_ratio": step / off["step"], "turn_ratio": turn / off["turn"],
                            "spans": spans}  # fmt: skip
        print(
            f"{variant:8} {step * 1e6:9.0f} {step / off['step']:6.2f} "
            f"{turn * 1e3:9.2f} {turn / off['turn']:6.2f} {spans:9.0f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
