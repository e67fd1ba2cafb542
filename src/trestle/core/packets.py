"""Handoff packets built from a sender's recorded run (see :mod:`trestle.core.handoff`).

Each builder takes the sending run's stored events (``store.events(run_id)``), in
order, plus what the delegating step states itself (goal, acceptance, constraints),
and returns a :class:`~trestle.core.handoff.HandoffPacket`:

- :func:`sender_packet`: the structured packet. Findings come from the run's
  ``FindingsRecorded`` (summary, relevant files, how to test), from its failed
  commands and tests (the end of their output as evidence) and from the claims of the
  steps that succeeded; decisions from its accepted plans (the approach, each step and
  its reasoning); constraints from its rules, the requirements it was given and its
  findings; open questions from its findings; artifacts are its transcript (run and
  seq range), each tool call's output, the files it wrote, the commits its
  ``git commit`` commands made, and its checkpoints.
- :func:`last_message_packet`: the sender's last message only.
- :func:`transcript_packet`: the sender's whole transcript.

:func:`transcript_text` renders a run's events as the conversation they record; the
``fetch_artifact`` tool shows a transcript slice with it. Pure: no IO.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from trestle.core.events import (
    ContextCompressed,
    FindingsRecorded,
    ModelCalled,
    PlanExtended,
    RequirementAdded,
    RoundOpened,
    RunCreated,
    StepAttemptEnded,
    StoredEvent,
    ToolCallEnded,
    ToolCallStarted,
)
from trestle.core.handoff import (
    MAX_ARTIFACTS,
    MAX_BODY,
    MAX_EVIDENCE,
    MAX_EXCERPT,
    MAX_ITEMS,
    MAX_LINE,
    ArtifactRef,
    Decision,
    Evidence,
    Finding,
    HandoffMode,
    HandoffPacket,
    clean_text,
)
from trestle.core.records.agent import Findings

TAIL_LINES = 12  # of a failed command's output, kept as evidence
TAIL_CHARS = 800
NOTE_ARGUMENT = 120  # characters of a tool call's main argument in an artifact's note
WRITING_TOOLS = frozenset({"write_file", "edit_file"})
COMMAND_TOOLS = frozenset({"run_command", "run_tests"})
# what `git commit` prints first: [branch (root-commit) 1a2b3c4] subject
COMMIT_MADE = re.compile(
    r"^\[[^\]\s]+(?: \(root-commit\))? (?P<sha>[0-9a-f]{7,40})\] (?P<subject>.*)$", re.M
)


def sender_packet(
    events: Sequence[StoredEvent],
    *,
    goal: str | None = None,
    acceptance: Iterable[str] = (),
    constraints: Iterable[str] = (),
    artifacts: Iterable[ArtifactRef] = (),
) -> HandoffPacket:
    """The structured packet from the sender's recorded run (see the module docstring).

    Args:
        events: the sender run's stored events, in order (its first is ``RunCreated``).
        goal: the receiver's goal; default: the sender's own.
        acceptance: how the receiver's work will be judged.
        constraints: rules the delegating step adds to the sender's own.
        artifacts: references the delegating step adds (a commit, say).
    """
    run, created = _created(events)
    rules = list(constraints)
    if created.agent is not None:
        rules += created.agent.rules
    rules += [e.event.text for e in events if isinstance(e.event, RequirementAdded)]
    findings: list[Finding] = []
    questions: list[str] = []
    decisions: list[Decision] = []
    for stored in events:
        match stored.event:
            case FindingsRecorded(findings=found):
                findings.append(_understood(found))
                rules += found.constraints
                questions += found.open_questions
            case PlanExtended(agent_plan=plan) if plan is not None:
                if plan.summary:
                    decisions.append(Decision(what=f"approach: {_text(plan.summary)}"))
                decisions += [
                    Decision(what=_text(f"step {s.id}: {s.objective}"), why=clean_text(s.reasoning))
                    for s in plan.steps
                ]
    findings += _failures(run, events)
    findings += _claims(events)
    refs = [*artifacts, *_artifacts(run, events)]
    return HandoffPacket(
        sender=run,
        goal=_text(goal or created.plan.goal),
        acceptance=_items(acceptance),
        constraints=_items(rules),
        findings=tuple(findings[-MAX_ITEMS:]),
        decisions=tuple(decisions[-MAX_ITEMS:]),
        open_questions=_items(questions),
        artifacts=_unique(refs)[:MAX_ARTIFACTS],
    )


def last_message_packet(
    events: Sequence[StoredEvent],
    *,
    goal: str | None = None,
    acceptance: Iterable[str] = (),
    constraints: Iterable[str] = (),
) -> HandoffPacket:
    """The sender's last message only: its last ``finish`` (summary and claims), or
    else its model's last text."""
    run, created = _created(events)
    body = ""
    for stored in events:
        event = stored.event
        if isinstance(event, ToolCallStarted) and event.tool == "finish":
            body = _finish_text(event.arguments) or body
        elif isinstance(event, ModelCalled) and event.response.text.strip():
            body = event.response.text
    return _plain("last_message", run, created, body, goal, acceptance, constraints)


def transcript_packet(
    events: Sequence[StoredEvent],
    *,
    goal: str | None = None,
    acceptance: Iterable[str] = (),
    constraints: Iterable[str] = (),
) -> HandoffPacket:
    """The sender's whole transcript (:func:`transcript_text`), clipped to the most a
    packet carries."""
    run, created = _created(events)
    body = transcript_text(events)
    return _plain("transcript", run, created, body, goal, acceptance, constraints)


def build_packet(mode: HandoffMode, events: Sequence[StoredEvent], **stated: Any) -> HandoffPacket:
    """The packet of ``mode`` from the sender's events; ``stated`` as the builders take."""
    builders = {
        "packet": sender_packet,
        "last_message": last_message_packet,
        "transcript": transcript_packet,
    }
    return builders[mode](events, **stated)


# --- transcripts ---------------------------------------------------------------------------


def transcript_text(events: Iterable[StoredEvent]) -> str:
    """Events as the conversation they record: each conversation's pins, each model
    answer (its text and tool calls), each tool result, findings, requirements added
    and compressions' summaries, marked with their seq and the conversation (``step#round``) they
    belong to."""
    return "\n".join(text for _, text in transcript_parts(events) if text)


def transcript_parts(events: Iterable[StoredEvent]) -> list[tuple[int, str]]:
    """(seq, text) per event, as :func:`transcript_text` joins them (empty for an
    event that shows nothing), so a reader can page by seq."""
    parts: list[tuple[int, str]] = []
    where = ""
    for stored in events:
        event, seq = stored.event, stored.seq
        lines: list[str] = []
        if isinstance(event, RoundOpened | ModelCalled | ToolCallEnded | ContextCompressed):
            here = f"{event.step}#{event.round}"
            if here != where:
                lines.append(f"== {here} ==")
                where = here
        match event:
            case RoundOpened(pins=pins, failure=failure):
                lines.append(f"[{seq} pinned] {pins.render()}")
                if failure:
                    lines.append(f"[{seq} the last attempt failed] {failure}")
            case ModelCalled(response=response):
                if response.text.strip():
                    lines.append(f"[{seq} assistant] {response.text}")
                lines += [
                    f"[{seq} tool call {c.id}] {c.name}({c.arguments})" for c in response.tool_calls
                ]
            case ToolCallEnded():
                status = "" if event.ok else " FAILED"
                lines.append(f"[{seq} tool result {event.call_id}{status}] {event.content}")
            case ContextCompressed(summary=summary):
                lines.append(f"[{seq} summary of earlier turns] {summary}")
            case RequirementAdded(text=text):
                lines.append(f"[{seq} requirement added] {text}")
            case FindingsRecorded(findings=found):
                lines.append(f"[{seq} findings recorded] {found.model_dump_json()}")
        parts.append((seq, "\n".join(lines)))
    return parts


def tool_output_text(stored: StoredEvent, started: ToolCallStarted | None = None) -> str:
    """One tool call's output as ``fetch_artifact`` shows it: what was called, then
    what it returned."""
    event = stored.event
    assert isinstance(event, ToolCallEnded)
    call = f"{event.tool}({started.arguments})" if started is not None else event.tool
    status = "ok" if event.ok else f"failed: {event.error or 'see the output'}"
    return f"{call} [{status}]\n{event.content}"


# --- the parts --------------------------------------------------------------------------


def _created(events: Sequence[StoredEvent]) -> tuple[str, RunCreated]:
    if not events or not isinstance(events[0].event, RunCreated):
        raise ValueError("a packet is built from a run's events, from its run_created on")
    return events[0].run_id, events[0].event


def _plain(
    mode: HandoffMode,
    run: str,
    created: RunCreated,
    body: str,
    goal: str | None,
    acceptance: Iterable[str],
    constraints: Iterable[str],
) -> HandoffPacket:
    return HandoffPacket(
        mode=mode,
        sender=run,
        goal=_text(goal or created.plan.goal),
        acceptance=_items(acceptance),
        constraints=_items(constraints),
        body=clean_text(body, MAX_BODY),
    )


def _understood(found: Findings) -> Finding:
    evidence = [
        Evidence(kind="file", ref=clean_text(f.path, MAX_LINE, one_line=True), excerpt=_ex(f.why))
        for f in found.relevant_files
    ]
    if found.test_command:
        evidence.append(
            Evidence(
                kind="command",
                ref=clean_text(found.test_command, MAX_LINE, one_line=True),
                excerpt=_ex(found.how_to_test),
            )
        )
    else:
        evidence.append(Evidence(kind="text", excerpt=_ex(f"how to test: {found.how_to_test}")))
    return Finding(claim=_text(found.summary), evidence=tuple(evidence[:MAX_EVIDENCE]))


def _failures(run: str, events: Sequence[StoredEvent]) -> list[Finding]:
    """A finding per failed command or test call: what ran, the end of its output."""
    starts = _starts(events)
    found = []
    for stored in events:
        event = stored.event
        if isinstance(event, ToolCallEnded) and event.tool in COMMAND_TOOLS and not event.ok:
            started = starts.get((event.step, event.round, event.turn, event.call_id))
            what = _main_argument(event.tool, started.arguments if started else "{}")
            tail = "\n".join(event.content.splitlines()[-TAIL_LINES:])[-TAIL_CHARS:]
            claim = f"{event.tool} {what} failed: {event.error or 'see the output'}"
            evidence = Evidence(kind="command", ref=f"{run}:{stored.seq}", excerpt=_ex(tail))
            found.append(Finding(claim=_text(claim), evidence=(evidence,)))
    return found


def _claims(events: Sequence[StoredEvent]) -> list[Finding]:
    """What each step that succeeded said it did, with the checks that confirmed it."""
    found = []
    for stored in events:
        event = stored.event
        if not isinstance(event, StepAttemptEnded) or not event.ok:
            continue
        said = event.action.output.removeprefix("finished: ")
        if not event.action.output.startswith("finished: ") or not said.strip():
            continue
        evidence = tuple(
            Evidence(kind="text", ref=f"check {c.check}", excerpt=_ex(f"passed: {c.actual}"))
            for c in event.checks[:MAX_EVIDENCE]
        )
        claim = _text(f"step {event.step} done: {said}")
        found.append(Finding(claim=claim, evidence=evidence))
    return found


def _artifacts(run: str, events: Sequence[StoredEvent]) -> list[ArtifactRef]:
    last = events[-1].seq
    refs = [
        ArtifactRef(
            kind="transcript",
            ref=f"{run}:{events[0].seq}-{last}",
            note=f"the sender's whole run, {len(events)} events",
        )
    ]
    starts = _starts(events)
    written: list[ArtifactRef] = []
    outputs: list[ArtifactRef] = []
    for stored in events:
        event = stored.event
        if isinstance(event, ToolCallEnded) and event.tool != "finish":
            started = starts.get((event.step, event.round, event.turn, event.call_id))
            arguments = started.arguments if started else "{}"
            what = _main_argument(event.tool, arguments)
            size = f"{len(event.content.splitlines())} lines"
            status = "" if event.ok else ", failed"
            note = clean_text(f"{event.tool} {what} ({size}{status})", MAX_LINE, one_line=True)
            outputs.append(ArtifactRef(kind="tool_output", ref=f"{run}:{stored.seq}", note=note))
            commit = _commit(event, arguments)
            if commit is not None:
                refs.append(commit)
            if event.tool in WRITING_TOOLS and event.ok:
                path = _argument(arguments, "path")
                if path:
                    ref = clean_text(path, MAX_LINE, one_line=True)
                    note = clean_text(f"{event.tool} by step {event.step}", MAX_LINE, one_line=True)
                    written.append(ArtifactRef(kind="file", ref=ref, note=note))
        elif isinstance(event, StepAttemptEnded) and event.checkpoint_after:
            note = f"the workspace after step {event.step}, attempt {event.attempt}"
            refs.append(ArtifactRef(kind="checkpoint", ref=event.checkpoint_after, note=note))
    room = MAX_ARTIFACTS - len(refs) - len(written)
    return [*refs, *written, *outputs[-max(room, 0) :]] if room > 0 else [*refs, *written]


def _commit(event: ToolCallEnded, arguments: str) -> ArtifactRef | None:
    """The commit a ``git commit`` command made, as git announced it."""
    if event.tool != "run_command" or not event.ok:
        return None
    if "commit" not in _argument(arguments, "command"):
        return None
    made = COMMIT_MADE.search(event.content)
    if made is None:
        return None
    note = clean_text(f"committed by step {event.step}: {made['subject']}", MAX_LINE, one_line=True)
    return ArtifactRef(kind="commit", ref=made["sha"], note=note)


def _starts(events: Sequence[StoredEvent]) -> dict[tuple[str, int, int, str], ToolCallStarted]:
    return {
        (e.step, e.round, e.turn, e.call_id): e
        for e in (s.event for s in events)
        if isinstance(e, ToolCallStarted)
    }


def _main_argument(tool: str, arguments: str) -> str:
    """What a call is about, in a few words: its path, command or pattern."""
    for name in ("path", "command", "pattern", "directory", "ref"):
        value = _argument(arguments, name)
        if value:
            value = value if len(value) <= NOTE_ARGUMENT else value[: NOTE_ARGUMENT - 3] + "..."
            return repr(value) if name != "path" else value
    return "the test command" if tool == "run_tests" else ""


def _argument(arguments: str, name: str) -> str:
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return ""
    value = parsed.get(name) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else ""


def _finish_text(arguments: str) -> str:
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return ""
    if not isinstance(parsed, dict):
        return ""
    claims = parsed.get("claims") or []
    lines = [str(parsed.get("summary") or ""), *(f"- {c}" for c in claims if isinstance(c, str))]
    return "\n".join(line for line in lines if line)


def _text(text: str) -> str:
    return clean_text(text.strip() or "(none given)")


def _ex(text: str) -> str:
    return clean_text(text, MAX_EXCERPT)


def _items(items: Iterable[str]) -> tuple[str, ...]:
    kept = dict.fromkeys(_text(t) for t in items if t.strip())
    return tuple(kept)[:MAX_ITEMS]


def _unique(refs: list[ArtifactRef]) -> list[ArtifactRef]:
    seen: dict[str, ArtifactRef] = {}
    for ref in refs:
        seen.setdefault(ref.ref, ref)
    return list(seen.values())
