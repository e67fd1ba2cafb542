"""The context-loss suite: does the receiver of a handoff get the fact it needs?

For every task (``bench/handoff_tasks.py``) a sender agent run is driven by the real
runtime (engine, SQLite store, tools, sandbox) with a scripted model: it reads long
files and runs commands, one of whose outputs holds a fact, records findings and a
plan, and ends with a summary that omits the fact. Then three receiver agent runs,
one per handoff mode (``packet``, ``last_message``, ``transcript``), each started with
the handoff built from the sender's recorded events
(:func:`trestle.core.packets.build_packet`) and the ``fetch_artifact`` tool.

The receiver's model is a deterministic reader (a ``FunctionModel``): in its
execute step it looks for the fact (the task's regular expression) in everything in
its context; failing that, it fetches the artifacts whose note names one of the
task's hint words, then pages through the sender's transcript if the handoff
references it. It writes what it found (or ``unknown``) to ``answer.txt``. Success is
the receiver run's own verdict: its acceptance command (``python3 check.py``, which
compares the answer's SHA-256 with the fact's) passes and the run succeeds.

Tokens passed: the offline estimate of the handoff as the receiver's first message
shows it, plus every artifact it fetched. Usage::

    python bench/handoff.py [--only NAME,...] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import figures
from handoff_tasks import FILLER_FILES, TASKS, Task, filler, read, task
from hostinfo import machine_info
from trestle.agent.runtime import AgentPerformer
from trestle.core.conversation import ToolSchema
from trestle.core.estimate import estimate_text_tokens
from trestle.core.events import RunFinished, ToolCallEnded
from trestle.core.handoff import HandoffMode, HandoffPacket, handoff_tokens
from trestle.core.packets import build_packet
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.engines.local import LocalEngine
from trestle.lifecycle.runs import create_run
from trestle.models import FunctionModel, Message, ModelResponse, ScriptedModel, ToolCall, Usage
from trestle.store import SqliteStore
from trestle.tools.coding import coding_registry

MODES: tuple[HandoffMode, ...] = ("packet", "last_message", "transcript")
POLL = 0.02
ARTIFACT_LINE = re.compile(r"^- (tool_output|file|transcript|checkpoint|commit) (\S+)(?: - (.*))?$")
READ_ON = re.compile(r"read on with fetch_artifact\(ref='([^']+)', first=(\d+)\)")
CHECK = """import hashlib, pathlib, sys
answer = pathlib.Path("answer.txt")
got = answer.read_text(encoding="utf-8").strip() if answer.exists() else ""
sys.exit(0 if hashlib.sha256(got.encode()).hexdigest() == "{digest}" else 1)
"""


@dataclass(frozen=True)
class Outcome:
    """One receiver run: did it succeed, and what did its handoff cost it."""

    task: str
    mode: HandoffMode
    succeeded: bool
    handoff_tokens: int
    fetched_tokens: int
    fetches: int

    @property
    def tokens(self) -> int:
        return self.handoff_tokens + self.fetched_tokens


# --- the sender ---------------------------------------------------------------------------


def _call(name: str, arguments: dict[str, Any], text: str = "") -> ModelResponse:
    return ModelResponse(
        text=text,
        tool_calls=(ToolCall(id="c1", name=name, arguments=json.dumps(arguments)),),
        finish_reason="tool_calls",
        usage=Usage(),
    )


def sender_replies(task: Task) -> list[ModelResponse | str]:
    """The sender's whole run: filler reads around its own look-ups, findings, a plan,
    the notes, and a finish whose summary omits the fact."""
    fillers = [read(f"notes/module_{k}.py") for k in range(FILLER_FILES)]
    half = FILLER_FILES // 2
    calls = [*fillers[:half], *task.calls, *fillers[half:]]
    if task.name in ("prose-host", "unlabelled-output"):  # the fact comes last
        calls = [*fillers, *task.calls]
    findings = {
        "summary": task.summary,
        "relevant_files": [{"path": p, "why": "looked at"} for p in task.files],
        "how_to_test": "read the notes",
        "constraints": list(task.constraints),
        "open_questions": list(task.questions),
    }
    step = {
        "id": "notes",
        "objective": "write NOTES.md with what was found",
        "new_files": ["NOTES.md"],
        "verify": [{"file_exists": "NOTES.md"}],
        "reasoning": task.reasoning,
    }
    return [
        *(_call(c.tool, c.arguments, c.text) for c in calls),
        json.dumps(findings),
        json.dumps({"summary": task.plan_summary, "steps": [step]}),
        _call("write_file", {"path": "NOTES.md", "content": f"# Notes\n\n{task.final}\n"}),
        _call("finish", {"summary": task.final, "claims": ["NOTES.md is written"]}),
    ]


def sender_workspace(root: Path, task: Task) -> Path:
    ws = root / f"{task.name}-sender"
    for k in range(FILLER_FILES):
        _write(ws / f"notes/module_{k}.py", "\n".join(filler(f"{task.name}-{k}")) + "\n")
    for path, text in task.files.items():
        _write(ws / path, text)
    return ws


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- the receiver -------------------------------------------------------------------------


def reader(task: Task) -> FunctionModel:
    """The deterministic receiver (see the module docstring). It knows the task's
    pattern and hint words, never the answer."""
    pattern = re.compile(task.pattern)
    hints = tuple(h.lower() for h in task.hints)

    def answer(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> ModelResponse | str:
        offered = {t.name for t in tools}
        if "finish" not in offered:  # UNDERSTAND offers run_tests, PLAN only reads
            if "run_tests" in offered:
                return json.dumps({"summary": "answer the question", "how_to_test": "check.py"})
            step = {
                "id": "answer",
                "objective": "write the answer to answer.txt",
                "new_files": ["answer.txt"],
                "verify": [{"file_exists": "answer.txt"}],
            }
            return json.dumps({"summary": "answer", "steps": [step]})
        if any(c.name == "write_file" for m in messages for c in m.tool_calls):
            return _call("finish", {"summary": "wrote answer.txt"})
        for m in messages:
            found = pattern.search(m.content)
            if found is not None:
                return _call("write_file", {"path": "answer.txt", "content": found.group(1)})
        asked = {c.arguments for m in messages for c in m.tool_calls if c.name == "fetch_artifact"}
        for arguments in _wanted(messages, hints):
            if json.dumps(arguments) not in asked:
                return _call("fetch_artifact", arguments)
        return _call("write_file", {"path": "answer.txt", "content": "unknown"})

    return FunctionModel(answer, name="reader")


def _wanted(messages: Sequence[Message], hints: tuple[str, ...]) -> list[dict[str, Any]]:
    """What to fetch, in order: artifacts whose note names a hint word, then the
    transcript, page after page."""
    listed: list[tuple[str, str, str]] = []
    for m in messages:
        if m.role != "user":
            continue
        for line in m.content.splitlines():
            found = ARTIFACT_LINE.match(line)
            if found is not None:
                listed.append((found[1], found[2], (found[3] or "").lower()))
    wanted: list[dict[str, Any]] = [
        {"ref": ref}
        for kind, ref, note in listed
        if kind in ("tool_output", "file") and any(h in note for h in hints)
    ]
    transcripts = [ref for kind, ref, _ in listed if kind == "transcript"]
    if transcripts:
        wanted.append({"ref": transcripts[0]})
        pages = [m for m in messages if m.role == "tool"]
        if pages:
            more = READ_ON.search(pages[-1].content)
            if more is not None:
                wanted.append({"ref": more[1], "first": int(more[2])})
    return wanted


def receiver_workspace(root: Path, task: Task, mode: str) -> Path:
    ws = root / f"{task.name}-{mode}"
    digest = hashlib.sha256(task.answer.encode()).hexdigest()
    _write(ws / "check.py", CHECK.format(digest=digest))
    return ws


# --- one task -----------------------------------------------------------------------------


async def _drive(store: SqliteStore, run_id: str, performer: AgentPerformer) -> None:
    engine = LocalEngine(store, poll_interval=POLL, performer=performer)
    try:
        async for _ in engine.drive(run_id):
            pass
    finally:
        engine.close()


async def run_task(task: Task, root: Path, store: SqliteStore) -> list[Outcome]:
    """The sender's run, then one receiver run per mode; their outcomes."""
    sender = AgentSettings(
        model="scripted",
        plan_approval="auto",
        rules=task.rules,
        test_command=task.test_command,
        max_replans=0,
    )
    plan = bootstrap_plan(f"find out what the next agent needs: {task.kind}")
    sender_id = create_run(store, plan, workspace=sender_workspace(root, task), agent=sender)
    await _drive(store, sender_id, AgentPerformer(ScriptedModel(sender_replies(task))))
    events = store.events(sender_id)
    outcomes = []
    for mode in MODES:
        packet = build_packet(
            mode, events, goal=task.question, acceptance=["python3 check.py passes"]
        )
        outcomes.append(await _receive(task, mode, packet, root, store))
    return outcomes


async def _receive(
    task: Task, mode: HandoffMode, packet: HandoffPacket, root: Path, store: SqliteStore
) -> Outcome:
    settings = AgentSettings(
        model="reader",
        plan_approval="auto",
        test_command="python3 check.py",
        max_replans=0,
        step_retries=0,
        handoff=packet,
    )
    ws = receiver_workspace(root, task, mode)
    run_id = create_run(store, bootstrap_plan(task.question), workspace=ws, agent=settings)
    performer = AgentPerformer(reader(task), tools=coding_registry(store))
    await _drive(store, run_id, performer)
    events = [s.event for s in store.events(run_id)]
    fetched = [e for e in events if isinstance(e, ToolCallEnded) and e.tool == "fetch_artifact"]
    finished = [e for e in events if isinstance(e, RunFinished)]
    return Outcome(
        task=task.name,
        mode=mode,
        succeeded=bool(finished) and finished[-1].status == "succeeded",
        handoff_tokens=handoff_tokens(packet),
        fetched_tokens=sum(estimate_text_tokens(e.content) for e in fetched),
        fetches=len(fetched),
    )


# --- the suite ----------------------------------------------------------------------------


def run_suite(tasks: Sequence[Task], work: Path) -> list[Outcome]:
    """Every task in ``tasks``, in a store under ``work``; every receiver's outcome."""
    store = SqliteStore(work / "trestle.db")
    try:
        outcomes: list[Outcome] = []
        for task in tasks:
            outcomes += asyncio.run(run_task(task, work, store))
        return outcomes
    finally:
        store.close()


def summary(outcomes: Sequence[Outcome]) -> dict[str, dict[str, float]]:
    """Per mode: tasks succeeded, tasks, tokens passed, and the ratio to the
    transcript's tokens."""
    total = {m: sum(o.tokens for o in outcomes if o.mode == m) for m in MODES}
    return {
        mode: {
            "succeeded": sum(o.succeeded for o in outcomes if o.mode == mode),
            "tasks": sum(1 for o in outcomes if o.mode == mode),
            "tokens": total[mode],
            "handoff_tokens": sum(o.handoff_tokens for o in outcomes if o.mode == mode),
            "fetched_tokens": sum(o.fetched_tokens for o in outcomes if o.mode == mode),
            "ratio": total[mode] / total["transcript"] if total["transcript"] else 0.0,
        }
        for mode in MODES
    }


def table(outcomes: Sequence[Outcome]) -> str:
    rows = summary(outcomes)
    lines = [
        "| mode | tasks succeeded | tokens passed (handoff + fetched) | ratio to transcript |",
        "| --- | --- | --- | --- |",
    ]
    for mode, row in rows.items():
        lines.append(
            f"| {mode} | {row['succeeded']:.0f} / {row['tasks']:.0f} | {row['tokens']:,.0f} "
            f"({row['handoff_tokens']:,.0f} + {row['fetched_tokens']:,.0f}) | {row['ratio']:.3f} |"
        )
    lines += ["", "| task | " + " | ".join(MODES) + " |", "| --- |" + " --- |" * len(MODES)]
    for name in dict.fromkeys(o.task for o in outcomes):
        cells = []
        for mode in MODES:
            o = next(x for x in outcomes if x.task == name and x.mode == mode)
            cells.append(f"{'ok' if o.succeeded else 'FAIL'} {o.tokens:,} ({o.fetches} fetched)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="task names, comma-separated")
    parser.add_argument("--json", type=Path, help="write every outcome here")
    args = parser.parse_args(argv)
    tasks = list(TASKS)
    if args.only:
        tasks = [task(name) for name in args.only.split(",")]
    started = time.perf_counter()
    machine = machine_info(Path(tempfile.gettempdir()))  # the load before, too
    with tempfile.TemporaryDirectory(prefix="trestle-handoff-") as work:
        outcomes = run_suite(tasks, Path(work))
    print(table(outcomes))
    print(f"\n{len(tasks)} tasks, {time.perf_counter() - started:.1f} s")
    if not args.only:  # the whole suite is what bench/published.json's figures cover
        packet = summary(outcomes)["packet"]
        figures.record("handoff_packet_succeeded", packet["succeeded"], "tasks", machine)
        figures.record("handoff_packet_token_ratio", packet["ratio"], "x", machine)
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
