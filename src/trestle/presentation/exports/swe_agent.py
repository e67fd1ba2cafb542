"""A run as a SWE-agent trajectory (``.traj``): for SWE-agent's inspectors and for
``trestle monitors eval``.

The file is the JSON object SWE-agent writes per instance:

- ``trajectory``: one entry per action, each with ``action`` (the command, as
  SWE-agent's tools write it), ``observation`` (what the action returned), ``thought``
  and ``response`` (the model's text), ``execution_time`` (seconds), ``state`` and
  ``extra_info`` (here ``extra_info.trestle``: the step, round, turn, tool, call id, the
  call's raw arguments and outcome, and the seq of the model call);
- ``history``: the task as the first user message, then per entry the assistant's
  message (with ``action``, which SWE-agent's web inspector requires) and the
  observation, as SWE-agent's function-calling agents record them;
- ``info``: ``exit_status``, ``submission`` and ``model_stats`` (``instance_cost``,
  ``tokens_sent``, ``tokens_received``, ``api_calls``), plus ``info.trestle`` (the
  run's id and status);
- ``replay_config``: only the agent's limits (``agent.model.per_instance_call_limit``
  is the agent's turn limit per step, ``per_instance_cost_limit`` the run's cost
  limit), which ``trestle monitors eval`` reads; it does not make the file replayable
  by ``sweagent run-replay``.

What an entry is:

- an **agent run** (one with model calls): one entry per tool call the model asked
  for, in the order the calls were recorded; a model call that asked for several
  gives several entries, the first carrying its text; one that asked for none gives
  one entry with an empty action, whose observation is the attempt's result when it
  was the last call of its round (the findings or plan accepted), else empty (SWE-agent
  reads that as output it could not parse). The plan's other steps (a review, the
  acceptance run) made no model call and are not entries.
- a **plan run** (no model calls): one entry per ended step attempt: the step's
  command as the action (a ``write`` step as SWE-agent's ``create``), what it printed
  as the observation, its description as the thought.

Commands: ``run_command`` is its command and ``run_tests`` the run's test command,
as SWE-agent's bash tool shows them; ``read_file``, ``write_file`` and ``edit_file`` are
SWE-agent's ``str_replace_editor`` ``view``, ``create`` and ``str_replace`` (so its
inspector and Trestle's importer read them as reads and edits); any other tool is its
name and its arguments' values, shell-quoted, the way SWE-agent writes its own tools'
calls. The exact arguments are in ``extra_info.trestle.arguments``.

Exit status: ``submitted`` for a run that succeeded (``submission`` is empty:
Trestle's events hold checkpoints, not a patch); for a hard budget stop, SWE-agent's
name for the limit (``exit_cost``, ``exit_step_limit``,
``exit_total_execution_time``) or ``exit_token_limit``; else ``exit_`` and the run's
status (``exit_partial``, ``exit_needs_human``, ``exit_stopped``, ``exit_cancelled``);
none for a run still going. A delegated child run is a run of its own: export it by
its id.

Pure: the caller reads the events and writes the file.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from trestle.core.events import (
    BudgetExhausted,
    ModelCalled,
    PlanExtended,
    RunCreated,
    StepAttemptEnded,
    StoredEvent,
    ToolCallEnded,
    ToolCallStarted,
)
from trestle.core.plan import Step
from trestle.presentation.exports.status import run_status

_LIMIT_STATUS = {
    "cost": "exit_cost",
    "steps": "exit_step_limit",
    "seconds": "exit_total_execution_time",
    "tokens": "exit_token_limit",
}
_CallKey = tuple[str, int, int, str]  # step, round, turn, call id


def swe_agent_trajectory(events: Sequence[StoredEvent]) -> dict[str, Any]:
    """The run whose stored events these are, as a SWE-agent trajectory (see module).

    Raises:
        ValueError: the events do not begin with ``run_created``.
    """
    if not events or not isinstance(events[0].event, RunCreated):
        raise ValueError("a run's events begin with run_created")
    created = events[0].event
    calls = [e for e in events if isinstance(e.event, ModelCalled)]
    entries = _turn_entries(events, created) if calls else _attempt_entries(events, created)
    history: list[dict[str, Any]] = [_message("user", created.plan.goal, "observation")]
    for entry in entries:
        history.extend(_exchange(entry))
    status = run_status(events)
    trajectory: dict[str, Any] = {
        "environment": created.run_id,
        "trajectory": entries,
        "history": history,
        "info": {
            "exit_status": _exit_status(status, events),
            "submission": "" if status == "succeeded" else None,
            "model_stats": _model_stats(calls),
            "trestle": {"run_id": created.run_id, "status": status or "running"},
        },
    }
    limits = _limits(created)
    if limits:
        trajectory["replay_config"] = json.dumps({"agent": {"model": limits}})
    return trajectory


# --- an agent run: the model's tool calls ------------------------------------------


def _turn_entries(events: Sequence[StoredEvent], created: RunCreated) -> list[dict[str, Any]]:
    test_command = created.agent.test_command if created.agent is not None else None
    started: dict[_CallKey, ToolCallStarted] = {}
    ended: dict[_CallKey, ToolCallEnded] = {}
    last_of_round: dict[tuple[str, int], int] = {}  # (step, round) -> seq of its last call
    for stored in events:
        e = stored.event
        if isinstance(e, ToolCallStarted):
            started[(e.step, e.round, e.turn, e.call_id)] = e
        elif isinstance(e, ToolCallEnded):
            ended[(e.step, e.round, e.turn, e.call_id)] = e
        elif isinstance(e, ModelCalled):
            last_of_round[(e.step, e.round)] = stored.seq
    entries: list[dict[str, Any]] = []
    for n, stored in enumerate(events):
        e = stored.event
        if not isinstance(e, ModelCalled):
            continue
        text = e.response.text
        base = {"seq": stored.seq, "step": e.step, "round": e.round, "turn": e.turn}
        if not e.response.tool_calls:
            answered = ""
            if last_of_round[(e.step, e.round)] == stored.seq:
                answered = _attempt_output_after(events, n, e.step)
            entries.append(_entry("", answered, text, 0.0, created.workspace, base))
            continue
        for k, call in enumerate(e.response.tool_calls):
            key = (e.step, e.round, e.turn, call.id)
            end = ended.get(key)
            start = started.get(key)
            seconds = end.at - start.at if end is not None and start is not None else 0.0
            said = (end.content or end.error or "") if end is not None else ""
            facts = {
                **base,
                "tool": call.name,
                "call_id": call.id,
                "arguments": call.arguments,
                "ok": end.ok if end is not None else None,
                "error": end.error if end is not None else None,
            }
            action = command_of(call.name, call.arguments, test_command)
            entries.append(
                _entry(action, said, text if k == 0 else "", seconds, created.workspace, facts)
            )
    return entries


def _attempt_output_after(events: Sequence[StoredEvent], index: int, step: str) -> str:
    """What the attempt of ``step`` that the model call at ``index`` belongs to returned."""
    for stored in events[index + 1 :]:
        e = stored.event
        if isinstance(e, StepAttemptEnded) and e.step == step:
            return e.action.output
    return ""


def command_of(tool: str, arguments: str, test_command: str | None = None) -> str:
    """A Trestle tool call as the command SWE-agent would have written (see module)."""
    try:
        args = json.loads(arguments)
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        return f"{tool} {arguments}".strip()
    command = args.get("command")
    if tool == "run_command" and isinstance(command, str):
        return command
    if tool == "run_tests" and not args and test_command:
        return test_command
    path = args.get("path")
    if isinstance(path, str):
        editor = _editor_command(tool, path, args)
        if editor is not None:
            return editor
    values = [v if isinstance(v, str) else json.dumps(v) for v in args.values()]
    return " ".join([tool, *(shlex.quote(v) for v in values)])


def _editor_command(tool: str, path: str, args: Mapping[str, Any]) -> str | None:
    q = shlex.quote
    if tool == "read_file" and set(args) <= {"path", "start_line", "end_line"}:
        start, end = args.get("start_line"), args.get("end_line")
        if start is None and end is None:
            return f"str_replace_editor view {q(path)}"
        return f"str_replace_editor view {q(path)} --view_range {start or 1} {end or -1}"
    content = args.get("content")
    if tool == "write_file" and set(args) == {"path", "content"} and isinstance(content, str):
        return f"str_replace_editor create {q(path)} --file_text {q(content)}"
    old, new = args.get("old"), args.get("new")
    if (
        tool == "edit_file"
        and set(args) == {"path", "old", "new"}
        and isinstance(old, str)
        and isinstance(new, str)
    ):
        return f"str_replace_editor str_replace {q(path)} --old_str {q(old)} --new_str {q(new)}"
    return None


# --- a plan run: its steps' attempts ---------------------------------------------------


def _attempt_entries(events: Sequence[StoredEvent], created: RunCreated) -> list[dict[str, Any]]:
    steps = {s.id: s for s in created.plan.steps}
    entries: list[dict[str, Any]] = []
    for stored in events:
        e = stored.event
        if isinstance(e, PlanExtended):
            steps.update((s.id, s) for s in e.steps)
        if not isinstance(e, StepAttemptEnded):
            continue
        step = steps.get(e.step)
        facts = {
            "seq": stored.seq,
            "step": e.step,
            "attempt": e.attempt,
            "ok": e.ok,
            "status": e.action.status,
            "exit_code": e.action.exit_code,
            "error": e.action.error,
            "checks": [c.model_dump(mode="json") for c in e.checks],
        }
        action = step_command(step) if step is not None else e.step
        thought = step.description if step is not None else ""
        entries.append(
            _entry(action, e.action.output, thought, e.action.duration, created.workspace, facts)
        )
    return entries


def step_command(step: Step) -> str:
    """A plan step's action as a command: what it runs, writes, calls or hands on."""
    if step.run is not None:
        return step.run
    if step.write is not None:
        q = shlex.quote
        return f"str_replace_editor create {q(step.write.path)} --file_text {q(step.write.content)}"
    if step.python is not None:
        return f"python {step.python}"
    if step.delegate is not None:
        return f"delegate {shlex.quote(step.delegate.goal)}"
    if step.agent is not None:
        return f"agent {shlex.quote(step.agent.objective)}"
    return step.id


# --- the parts -----------------------------------------------------------------------


def _entry(
    action: str,
    observation: str,
    thought: str,
    seconds: float,
    workspace: str,
    facts: dict[str, Any],
) -> dict[str, Any]:
    return {
        "action": action,
        "observation": observation,
        "response": thought,
        "thought": thought,
        "execution_time": seconds,
        "state": {"working_dir": workspace},
        "extra_info": {"trestle": facts},
    }


def _message(role: str, content: str, kind: str, **more: Any) -> dict[str, Any]:
    return {"role": role, "content": content, "agent": "main", "message_type": kind, **more}


def _exchange(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An entry as SWE-agent's history holds it: the model's message, then the reply."""
    facts = entry["extra_info"]["trestle"]
    if not entry["action"] and not entry["observation"] and not entry["thought"]:
        return []  # an empty answer: SWE-agent keeps such output out of the history
    call_id = facts.get("call_id")
    said = {"thought": entry["thought"], "action": entry["action"]}
    if call_id is None:
        return [
            _message("assistant", entry["response"], "action", **said),
            _message("user", entry["observation"], "observation"),
        ]
    function = {"name": facts["tool"], "arguments": facts["arguments"]}
    call = {"id": call_id, "type": "function", "function": function}
    return [
        _message("assistant", entry["response"], "action", **said, tool_calls=[call]),
        _message("tool", entry["observation"], "observation", tool_call_ids=[call_id]),
    ]


def _exit_status(status: str | None, events: Sequence[StoredEvent]) -> str | None:
    if status is None:
        return None
    if status == "succeeded":
        return "submitted"
    if status == "stopped":
        for stored in reversed(events):
            if isinstance(stored.event, BudgetExhausted):
                return _LIMIT_STATUS[stored.event.dimension]
    return f"exit_{status}"


def _model_stats(calls: Sequence[StoredEvent]) -> dict[str, float | int]:
    cost = 0.0
    sent = received = 0
    for stored in calls:
        assert isinstance(stored.event, ModelCalled)
        usage = stored.event.response.usage
        cost += usage.cost or 0.0
        sent += usage.input_tokens
        received += usage.output_tokens
    return {
        "instance_cost": cost,
        "tokens_sent": sent,
        "tokens_received": received,
        "api_calls": len(calls),
    }


def _limits(created: RunCreated) -> dict[str, float | int]:
    limits: dict[str, float | int] = {}
    if created.agent is not None:
        limits["per_instance_call_limit"] = created.agent.max_turns
    cost = created.plan.budget.cost if created.plan.budget is not None else None
    if cost is not None and (cost.hard or cost.soft):
        limits["per_instance_cost_limit"] = cost.hard or cost.soft or 0.0
    return limits
