"""The cascade-tracing suite: does ``trestle blame`` name the first wrong step?

Generates cascades from a seed (``bench/cascade_cases.py``: plans whose one step
writes a plausible but wrong value that later steps build on, and scripted runs of
the coding agent whose one step writes a wrong rate the later steps and the
acceptance test use), runs each for real (the :class:`LocalEngine`, a SQLite store in a
fresh directory, real subprocesses and checkpoints; commands unsandboxed, as the
tests run them), then calls :func:`trestle.core.blame.blame` on the run's stored
events and records where the known culprit ranks. Reports top-1 and top-3 accuracy,
overall and by category, and the median time of a ``blame`` call. A sample of the
runs is also blamed through the CLI (``trestle blame RUN --json``), which must give
the same ranking. Usage::

    python bench/cascades.py [--seed N] [--cases N] [--agents N] [--json PATH]

``--cases`` is the number of plan cascades (default 40), ``--agents`` the number of
agent runs (default 10). The same seed gives the same cases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cascade_cases import Case, generate
from trestle.agent.runtime import AgentPerformer
from trestle.core.blame import Blame, blame
from trestle.core.conversation import Message, ToolSchema
from trestle.core.events import AlertRaised, StoredEvent
from trestle.core.records.agent import AgentSettings, bootstrap_plan
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.models import FunctionModel, ModelResponse, ToolCall, Usage
from trestle.store import SqliteStore

RESULTS = Path(__file__).resolve().parent / "results"
POLL = 0.02
CATEGORIES = ("kind", "depth", "fan_in", "decoy", "style", "ending")
TEST_COMMAND = (
    f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {shlex.quote(sys.executable)} -m pytest -q "
    "-p no:cacheprovider"
)


@dataclass
class Outcome:
    """What blame made of one case."""

    name: str
    culprit: str
    tags: dict[str, str]
    target: str | None
    valid: bool  # the run failed where the case says it must (else the case is broken)
    rank: int | None  # 1: first; None: not among the candidates
    ranking: list[tuple[str, float]]
    seconds: float  # one blame call, on the stored events
    run_seconds: float
    alerts: int
    cli_agrees: bool | None = None
    failed: list[str] = field(default_factory=list)


def run_case(case: Case, root: Path) -> tuple[SqliteStore, str]:
    """Run the case in ``root`` (a fresh directory); returns its store and run id."""
    ws = root / "ws"
    ws.mkdir()
    for name, text in case.files.items():
        (ws / name).write_text(text, encoding="utf-8")
    store = SqliteStore(root / "trestle.db")
    if case.kind == "plan":
        source = root / "plan.yaml"
        # `python` in the cases is this interpreter, whatever the PATH says
        text = case.plan.replace('"python ', f'"{sys.executable} ')
        source.write_text(text, encoding="utf-8")
        plan = parse_plan(text, source=str(source), base_dir=root)
        run_id = create_run(store, plan, workspace=ws, plan_path=source)
        engine = LocalEngine(store, poll_interval=POLL)
    else:
        settings = AgentSettings(
            model="scripted",
            test_command=TEST_COMMAND,
            plan_approval="auto",
            max_replans=0,
            step_retries=1,
        )
        plan = bootstrap_plan(str(case.agent["goal"]), parallelism=1)
        run_id = create_run(store, plan, workspace=ws, agent=settings)
        engine = LocalEngine(
            store, poll_interval=POLL, performer=AgentPerformer(agent_model(case.agent))
        )
    try:
        asyncio.run(_drive(engine, run_id))
    finally:
        engine.close()
    return store, run_id


async def _drive(engine: LocalEngine, run_id: str) -> None:
    async for _ in engine.drive(run_id):
        pass


def agent_model(script: dict[str, Any]) -> FunctionModel:
    """The scripted model of an agent case: findings, the plan, then each step's
    replies in turn (``STEP#2``'s on its second attempt), by the step the
    conversation's task names."""
    replies: dict[str, list[dict[str, Any]]] = script["replies"]
    plan = json.dumps({"summary": "the rate, the modules, price.py", "steps": script["steps"]})
    findings = json.dumps(
        {
            "summary": "price.py must apply the VAT rate spec.md gives",
            "relevant_files": [{"path": "spec.md", "why": "it gives the rate"}],
            "how_to_test": "run pytest: test_gross",
        }
    )

    def reply(messages: Sequence[Message], tools: Sequence[ToolSchema]) -> ModelResponse | str:
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        task = next(m.content for m in messages[users[0] :] if "Phase " in m.content)
        turn = sum(1 for m in messages if m.role == "assistant")
        if "Phase UNDERSTAND" in task:
            return findings
        if "Phase PLAN" in task:
            return plan
        step = task.split("'", 2)[1]  # Current step 'ID': ...
        key = f"{step}#2" if "Attempt 1 failed" in task and f"{step}#2" in replies else step
        item = dict(replies[key][min(turn, len(replies[key]) - 1)])
        name = item.pop("tool")
        call = ToolCall(id=f"{step}-{turn}", name=name, arguments=json.dumps(item))
        return ModelResponse(tool_calls=(call,), finish_reason="tool_calls", usage=Usage())

    return FunctionModel(reply, name="cascade-script")


def evaluate(case: Case, root: Path, *, cli: bool) -> Outcome:
    """Run the case, blame the run, and say where the culprit ranks."""
    started = time.perf_counter()
    store, run_id = run_case(case, root)
    run_seconds = time.perf_counter() - started
    try:
        events: list[StoredEvent] = list(store.events(run_id))
        times = []
        found: Blame | None = None
        for _ in range(3):
            t0 = time.perf_counter()
            found = blame(store.events(run_id))
            times.append(time.perf_counter() - t0)
        assert found is not None
    finally:
        store.close()
    ranked = [c.step for c in found.candidates]
    agrees = _cli_agrees(root / "trestle.db", run_id, ranked) if cli else None
    return Outcome(
        name=case.name,
        culprit=case.culprit,
        tags=case.tags,
        target=found.target,
        valid=found.target == case.fails and found.failed == (case.fails,),
        rank=ranked.index(case.culprit) + 1 if case.culprit in ranked else None,
        ranking=[(c.step, c.score) for c in found.candidates],
        seconds=statistics.median(times),
        run_seconds=run_seconds,
        alerts=sum(isinstance(e.event, AlertRaised) for e in events),
        cli_agrees=agrees,
        failed=list(found.failed),
    )


def _cli_agrees(db: Path, run_id: str, ranked: list[str]) -> bool:
    """``trestle blame RUN --json`` ranks as the call did."""
    exe = Path(sys.executable).with_name("trestle")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "trestle"]
    done = subprocess.run(
        [*command, "blame", run_id, "--json", "--store", str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(done.stdout)
    return [c["step"] for c in data["candidates"]] == ranked


def summary(outcomes: Sequence[Outcome]) -> dict[str, dict[str, dict[str, float]]]:
    """Top-1 and top-3 accuracy (and the count) overall and per category value."""

    def score(group: Sequence[Outcome]) -> dict[str, float]:
        n = len(group)
        top1 = sum(o.rank == 1 for o in group)
        top3 = sum(o.rank is not None and o.rank <= 3 for o in group)
        return {"n": n, "top1": top1 / n, "top3": top3 / n}

    out: dict[str, dict[str, dict[str, float]]] = {"all": {"all": score(outcomes)}}
    for category in CATEGORIES:
        values = sorted({o.tags[category] for o in outcomes})
        out[category] = {v: score([o for o in outcomes if o.tags[category] == v]) for v in values}
    return out


def suite(
    seed: int, plans: int, agents: int, *, cli_every: int = 10, verbose: bool = True
) -> list[Outcome]:
    """Generate, run and blame every case, each in a fresh directory."""
    os.environ.setdefault("TRESTLE_SANDBOX", "off")
    outcomes = []
    for n, case in enumerate(generate(seed, plans, agents)):
        with tempfile.TemporaryDirectory(prefix="cascade-") as tmp:
            outcome = evaluate(case, Path(tmp), cli=cli_every > 0 and n % cli_every == 0)
        outcomes.append(outcome)
        if verbose:
            top = ", ".join(f"{s} {v:g}" for s, v in outcome.ranking[:3])
            print(
                f"{case.name}: culprit {case.culprit!r} rank {outcome.rank} "
                f"(target {outcome.target!r}; {top})",
                flush=True,
            )
    return outcomes


def report(outcomes: Sequence[Outcome]) -> list[str]:
    """The table in Markdown: one row per category value, then the misses."""
    table = summary(outcomes)
    lines = ["| category | value | cases | top-1 | top-3 |", "| --- | --- | --- | --- | --- |"]
    for category, rows in table.items():
        for value, s in rows.items():
            lines.append(
                f"| {category} | {value} | {s['n']:g} | {s['top1']:.0%} | {s['top3']:.0%} |"
            )
    times = [o.seconds * 1000 for o in outcomes]
    lines.append("")
    lines.append(
        f"median blame call: {statistics.median(times):.2f} ms "
        f"(max {max(times):.2f} ms) over {len(outcomes)} runs"
    )
    checked = [o for o in outcomes if o.cli_agrees is not None]
    agreed = sum(bool(o.cli_agrees) for o in checked)
    lines.append(f"CLI (trestle blame --json) agrees on {agreed} of {len(checked)} sampled runs")
    broken = [o.name for o in outcomes if not o.valid]
    lines.append(f"runs that did not fail as their case says: {', '.join(broken) or 'none'}")
    misses = [o for o in outcomes if o.rank != 1]
    if misses:
        lines.append("")
        lines.append("not first:")
    for o in misses:
        tags = " ".join(f"{k}={o.tags[k]}" for k in CATEGORIES[1:])
        top = ", ".join(f"{s} {v:g}" for s, v in o.ranking[:3])
        lines.append(f"- {o.name} ({tags}): {o.culprit!r} rank {o.rank}; top: {top}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=36)
    parser.add_argument("--cases", type=int, default=40, help="plan cascades")
    parser.add_argument("--agents", type=int, default=10, help="scripted agent runs")
    parser.add_argument("--cli-every", type=int, default=10, help="blame every Nth via the CLI")
    parser.add_argument("--json", type=Path, help="where to write the outcomes")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    outcomes = suite(args.seed, args.cases, args.agents, cli_every=args.cli_every)
    lines = report(outcomes)
    print("\n".join(lines))
    print(f"\n{len(outcomes)} cascades in {time.perf_counter() - started:.0f} s, seed {args.seed}")
    path = args.json or RESULTS / f"cascades-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "seed": args.seed,
        "summary": summary(outcomes),
        "outcomes": [asdict(o) for o in outcomes],
    }
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
