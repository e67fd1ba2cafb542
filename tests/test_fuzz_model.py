"""Malformed model turns, seeded: each ends as a message to the model or a failed call.

Agent runs on a real SQLite store are driven through the real ``openai`` client against
the loopback server, which answers each model turn with a seeded, mostly malformed
reply written as JSON text, the way a real server would write it: lone surrogates as
``\\ud83d`` escapes, NUL and control characters, huge and empty text, tool calls to
unknown tools, with arguments that are not JSON, not an object, empty, 2 MiB, nested
100 or 5,000 deep, duplicated, missing or odd ids and names, odd finish reasons, no
choices, impossible usage (negative, ``1e999``, text), bodies that are not JSON, and
server errors. A run takes many turns, so a few hundred runs cover the turns.

After each run: the engine returned (no traceback), the run ended or waits on a human
(never left ``running``), its state loads from the store, and every event it recorded
reads back and writes again to the very text that was stored.

``TRESTLE_MODEL_FUZZ_TURNS`` sets the number of turns (1,000 by default; ``make soak``
runs more) and ``TRESTLE_MODEL_FUZZ_SEED`` the first seed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_helpers import agent_settings, findings_json, plan_json, plan_step, sample_workspace
from trestle.agent.runtime import AgentPerformer
from trestle.agent.settings import bootstrap_plan
from trestle.engine import LocalEngine
from trestle.events import EVENT_ADAPTER, event_json
from trestle.models import RetryPolicy
from trestle.models.openai import OpenAIModel
from trestle.plan import Backoff, Plan
from trestle.runs import create_run, load_state
from trestle.store import SqliteStore
from trestle.testing import OpenAIServer, RecordingSleep

TURNS = int(os.environ.get("TRESTLE_MODEL_FUZZ_TURNS", "1000"))
SEED = int(os.environ.get("TRESTLE_MODEL_FUZZ_SEED", "0"))
TURNS_PER_RUN = 40  # replies queued for one run; a run may end before it uses them all
MODEL = "fuzz-model"
INF = "__inf__"  # replaced by 1e999 in the JSON text: no dict can say it

TOOLS = ["read_file", "list_files", "search_text", "write_file", "edit_file", "finish"]
NASTY = [
    "\ud83d",  # a high surrogate alone
    "\udc00",  # a low one
    "\ud83d\ude00",  # a pair, which is fine
    "\x00",
    "\x1b[31m",
    "\u202e",
    "\r\n",
    "\\",
    '"',
    "\ufeff",
    "\U0010ffff",
    "é",
]


def text(rng: random.Random, longest: int = 200) -> str:
    """Short text with odd characters among plain ones; now and then a huge one."""
    if rng.random() < 0.02:
        return rng.choice(NASTY) * rng.randint(50_000, 200_000)
    parts = [rng.choice([*NASTY, "calc.py", "add", " ", "{", "}", "ok"]) for _ in range(8)]
    return "".join(parts)[: rng.randint(0, longest)]


def nested(depth: int) -> str:
    return '{"path": ' + "[" * depth + "]" * depth + "}"


def arguments(rng: random.Random, tool: str) -> Any:
    """What a call's ``arguments`` field holds: mostly text, sometimes not."""
    valid: dict[str, dict[str, Any]] = {
        "read_file": {"path": "calc.py"},
        "list_files": {"directory": "."},
        "search_text": {"pattern": "add"},
        "write_file": {"path": "notes.txt", "content": text(rng)},
        "edit_file": {"path": "calc.py", "old": "a - b", "new": "a + b"},
        "finish": {"summary": text(rng), "claims": [text(rng)]},
    }
    good = valid.get(tool, {"x": 1})
    choices: list[Callable[[], Any]] = [
        lambda: json.dumps(good),
        lambda: json.dumps(good, ensure_ascii=False),  # the surrogate in the outer text
        lambda: json.dumps({k: text(rng) for k in good}),  # wrong types, odd strings
        lambda: '{"path": "calc.py"',
        lambda: "not json",
        lambda: "[1, 2]",
        lambda: '"calc.py"',
        lambda: "",
        lambda: None,
        lambda: good,  # an object where text belongs
        lambda: nested(100),
        lambda: nested(5_000),
        lambda: '{"path": "' + "d/" * 50_000 + '"}',
        lambda: '{"path": ' + INF + "}",
        lambda: '{"path": ' + "9" * 5_000 + "}",
        lambda: '{"path": "calc.py", "path": "other.py"}',
        lambda: json.dumps({"path": "x" * (2 << 20)}) if rng.random() < 0.1 else "{}",
    ]
    return rng.choice(choices)()


def tool_call(rng: random.Random, index: int, ids: list[str]) -> Any:
    if rng.random() < 0.03:
        return rng.choice([None, 5, "call", [], {}])
    name: Any = rng.choice(
        [*TOOLS, *TOOLS, "run_tests", "nope", "", None, 7, "read\ud83dfile", "x" * 100_000]
    )
    call_id: Any = rng.choice(
        [f"call_{index}", f"call_{index}", *ids[-1:], "", None, 5, "id\udc00", "i" * 10_000]
    )
    function: dict[str, Any] = {"name": name, "arguments": arguments(rng, str(name))}
    for key in ("name", "arguments"):
        if rng.random() < 0.03:
            del function[key]
    call: dict[str, Any] = {"id": call_id, "type": "function", "function": function}
    if rng.random() < 0.03:
        del call["id"]
    if isinstance(call_id, str):
        ids.append(call_id)
    return call


def usage(rng: random.Random) -> Any:
    if rng.random() < 0.95:
        return {"prompt_tokens": rng.randint(0, 5000), "completion_tokens": rng.randint(0, 500)}
    return rng.choice(
        [
            None,
            {},
            {"prompt_tokens": -1, "completion_tokens": 2},
            {"prompt_tokens": INF, "completion_tokens": 2},
            {"prompt_tokens": 10**30, "completion_tokens": 2},
            {"prompt_tokens": "ten", "completion_tokens": 2},
            {"prompt_tokens": 12.0, "completion_tokens": 2.5},
            {"prompt_tokens": None, "completion_tokens": None},
        ]
    )


def message(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.08:
        return {"role": "assistant", "content": findings_json(summary=text(rng, 40) or "x")}
    if roll < 0.13:
        check = {"file_exists": "calc.py"}
        step = plan_step("fix", "add returns the sum", files=["calc.py"], verify=[check])
        return {"role": "assistant", "content": plan_json(step)}
    if roll < 0.35:
        return {"role": "assistant", "content": text(rng, 2_000)}
    if roll < 0.37:
        return rng.choice([None, {}, {"content": 5}, {"content": ["a"]}, "text"])
    ids: list[str] = []
    calls = [tool_call(rng, i, ids) for i in range(rng.choice([1, 1, 1, 2, 3, 5]))]
    content = rng.choice([None, None, "", text(rng)])
    tool_calls: Any = calls if rng.random() > 0.02 else rng.choice([5, "x", {}, []])
    return {"role": "assistant", "content": content, "tool_calls": tool_calls}


def finish_reason(rng: random.Random) -> Any:
    odd = ["odd", 7, "r" * 1_000, "\ud800"]
    return rng.choice(["stop", "tool_calls", "length", "content_filter", None, "", *odd])


def reply(rng: random.Random, server: OpenAIServer) -> None:
    """Queue one seeded reply."""
    roll = rng.random()
    if roll < 0.01:
        server.queue_error(rng.choice([500, 503, 429]))
        return
    if roll < 0.02:
        server.queue_json(rng.choice(["<html>bad gateway</html>", '{"choices": [', "[]", "null"]))
        return
    body: dict[str, Any] = {
        "id": f"chatcmpl-{rng.randint(0, 10**6)}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": rng.choice([MODEL, MODEL, "", None, "m\ud83d"]),
        "choices": [{"index": 0, "message": message(rng), "finish_reason": finish_reason(rng)}],
        "usage": usage(rng),
    }
    if rng.random() < 0.03:
        body["choices"] = rng.choice([[], None, 5, body["choices"] * 2])
    for key in ("choices", "usage", "model"):
        if rng.random() < 0.02:
            del body[key]
    # ensure_ascii (the default) writes a lone surrogate as the escape a server sends
    server.queue_json(json.dumps(body).replace(f'"{INF}"', "1e999").replace(INF, "1e999"))


def quick_plan() -> Plan:
    """The agent's opening plan, less what costs time and tells nothing about model
    input: the retry's backoff and the workspace checkpoints (git)."""
    plan = bootstrap_plan("make add() return the sum")
    now = Backoff(initial=0.0, max=0.0)
    steps = tuple(step.model_copy(update={"backoff": now}) for step in plan.steps)
    return plan.model_copy(update={"steps": steps, "checkpoints": "off"})


def stored_texts(path: Path, run_id: str) -> list[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT data FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        return [str(row[0]) for row in rows]


def check_run(store: SqliteStore, path: Path, run_id: str) -> str:
    """How the run ended; an AssertionError if it did not, or its records are unsound."""
    state = load_state(store, run_id)
    running = [sid for sid, st in state.steps.items() if st.status in ("running", "probing")]
    assert not running, f"{run_id}: left running: {running}"
    ended = state.finished or ("waiting" if state.waiting_on_human() or state.held else None)
    assert ended is not None, f"{run_id}: neither ended nor waiting"
    for seq, raw in enumerate(stored_texts(path, run_id), start=1):
        again = event_json(EVENT_ADAPTER.validate_json(raw))
        assert again == raw, f"{run_id}: event {seq} does not read back as written"
    return ended


def test_malformed_model_turns_end_as_messages_or_failed_calls(tmp_path: Path) -> None:
    path = tmp_path / "state" / "runs.db"
    store = SqliteStore(path)
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    turns = runs = 0
    began = time.monotonic()
    with OpenAIServer(model=MODEL) as server:
        while turns < TURNS:
            seed = SEED + runs
            rng = random.Random(seed)
            want = min(TURNS_PER_RUN, TURNS - turns)
            for _ in range(want):
                reply(rng, server)
            settings = agent_settings(model=MODEL, test_command="true", max_turns=1000)
            workspace = sample_workspace(tmp_path, f"ws{runs}")
            run_id = create_run(store, quick_plan(), workspace=workspace, agent=settings)
            try:
                asyncio.run(drive(store, server, run_id))
                outcomes[check_run(store, path, run_id)] += 1
            except Exception:
                failures.append(f"seed {seed}:\n{traceback.format_exc()}")
            turns += want - server.clear()
            runs += 1
    store.close()
    took = time.monotonic() - began
    print(
        f"\nmodel fuzz: {turns} turns in {runs} runs, {took:.1f}s, "
        f"{len(failures)} failures; ended: {dict(outcomes)}"
    )
    assert not failures, "\n".join(failures[:5])


async def drive(store: SqliteStore, server: OpenAIServer, run_id: str) -> None:
    model = OpenAIModel(
        MODEL,
        base_url=server.base_url,
        api_key="x",
        retry=RetryPolicy(max_attempts=2),
        sleep=RecordingSleep(),
    )
    engine = LocalEngine(store, poll_interval=0.02, performer=AgentPerformer(model))
    try:
        await engine.run(run_id)
    finally:
        engine.close()
        await model.aclose()
