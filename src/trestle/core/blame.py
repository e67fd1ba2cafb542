"""Cascade tracing: which step first produced the wrong output a later failure shows.

A step returns a plausible but wrong result, the steps after it build on it, and the
failure shows only at the end. :func:`blame` starts from that failure (the failed
step, or any step named), walks back through the run's data dependencies
(:mod:`trestle.core.lineage`: files read and written, declared ``needs`` as a weaker
edge), and ranks every step upstream by how likely it is to be the first wrong one.

The ranking is a sum of weighed evidence, each item a line a person can check:

==================  ==============================================================
``symptom``         the target's own check failed (the failure being traced)
``contradicted``    a later failed check looked at a file this step wrote
``no_checks``       nothing verified this step's output
``weak_checks``     its checks did not look at what it wrote (or only that it exists)
``verified``        its checks looked at what it wrote and passed (counts against)
``changed_input``   a file it read was not as its writer left it, or differed between
                    its attempts
``alert``           a monitor raised an alert on it
``retried``         it passed only after failed attempts (more so after a different
                    approach: an agent's new conversation, a human's edit)
``upstream``        how its output reaches the target, and how far back it lies: the
                    first wrong step is the earliest one not verified
``unknown``         what could not be seen (reads or writes unknown), weight 0
==================  ==============================================================

Positive evidence of a step reached only by a possible edge (its reads or writes not
seen) or a declared need counts for less. The same events always give the same ranking.
Pure: no IO; the CLI (``trestle blame``) and the dashboard read the events and call it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from trestle.core.errors import ConfigError
from trestle.core.events import (
    AlertRaised,
    AnyEvent,
    ApprovalDecided,
    ApprovalRequested,
    CheckResult,
    RoundOpened,
    RunRewound,
    StepFailed,
    StepReopened,
    StoredEvent,
)
from trestle.core.field_problems import did_you_mean
from trestle.core.lineage import AttemptTrace, Lineage, lineage
from trestle.core.plan import (
    CallableCheck,
    Check,
    CommandCheck,
    FileContainsCheck,
    FileExistsCheck,
    Step,
    describe_check,
)
from trestle.core.record import Record
from trestle.core.records.lineage import ABSENT, DELETED
from trestle.core.shellparse import parse

EvidenceKind = Literal[
    "symptom",
    "contradicted",
    "no_checks",
    "weak_checks",
    "verified",
    "changed_input",
    "alert",
    "retried",
    "upstream",
    "unknown",
]

# the weights: a contradiction is direct evidence; unverified output is the usual way
# a wrong result travels; a verified one rarely does
W_SYMPTOM = 1.0
W_CONTRADICTED = 3.0
W_NO_CHECKS = 2.0
W_WEAK = 1.75
W_OPAQUE = 0.75  # a Python check: what it looked at is unknown
W_VERIFIED = -1.0
W_CHANGED = 1.0
W_ALERT = {"info": 0.25, "warning": 1.0, "critical": 1.5}
W_ALERT_MAX = 2.0
W_RETRIED = 0.5
W_NEW_APPROACH = 1.5
W_LINK = 0.5
W_HOP = 0.5  # per step between it and the target: the first wrong step lies furthest back
W_HOP_MAX = 1.5
# positive evidence of a step that reaches the target only by these counts for less
DISCOUNT = {3: 1.0, 2: 0.6, 1: 0.3}
LINK_WORDS = {3: "a file read", 2: "a declared need", 1: "a possible read (reads or writes unseen)"}


class Evidence(Record):
    """One reason a step is (or is not) suspected, with what it adds to the score."""

    kind: EvidenceKind
    weight: float
    text: str


class Candidate(Record):
    """A step that may have produced the first wrong output.

    Attributes:
        step: its id.
        score: the sum of its evidence's weights (higher: more suspect).
        distance: steps between it and the target along the data (0: the target).
        link: how surely its output reaches the target: ``read``, ``needs`` or
            ``possible``.
        attempt: its latest attempt, the one whose output stands (None: never ended).
        evidence: the lines that make up its score, heaviest first.
    """

    step: str
    score: float
    distance: int
    link: Literal["read", "needs", "possible"]
    attempt: int | None
    evidence: tuple[Evidence, ...]


class Blame(Record):
    """The ranking :func:`blame` returns.

    Attributes:
        run_id: the run.
        target: the step traced back from (None: nothing failed, nothing named).
        symptom: what failed there, in words ("" for a named step that did not fail).
        candidates: the suspects, most suspect first (the target among them).
        failed: every step of the run that failed, in the order they failed.
    """

    run_id: str
    target: str | None
    symptom: str
    candidates: tuple[Candidate, ...]
    failed: tuple[str, ...] = ()

    @property
    def top(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def blame(events: Iterable[AnyEvent | StoredEvent], target: str | None = None) -> Blame:
    """Rank the steps that may have first produced the wrong output behind ``target``.

    Args:
        events: the run's events in order, ``run_created`` first (as stored, or bare).
        target: the step to trace back from; None takes the step that failed last.

    Returns:
        The ranking; with no target and nothing failed, one with no candidates.

    Raises:
        ConfigError: ``target`` is not a step of the run.
    """
    stream = list(events)
    found = lineage(stream)
    failed = _failed(stream)
    if target is not None and target not in found.steps:
        hint = did_you_mean(target, found.steps)
        raise ConfigError(f"run {found.run_id!r} has no step {target!r}{hint}")
    if target is None:
        if not failed:
            return Blame(run_id=found.run_id, target=None, symptom="", candidates=())
        target = failed[-1]
    return Blame(
        run_id=found.run_id,
        target=target,
        symptom=_symptom(found, target),
        candidates=rank(found, target, Signals.of(stream)),
        failed=tuple(failed),
    )


class Signals:
    """What the events say besides files: monitor alerts on a step, and retries by
    another approach (an agent's new conversation, a human's edit or retry)."""

    def __init__(self) -> None:
        self.alerts: dict[str, list[tuple[str, str]]] = {}  # step: (severity, message)
        self.new_approach: dict[str, list[str]] = {}  # step: why

    @classmethod
    def of(cls, events: Sequence[AnyEvent | StoredEvent]) -> Signals:
        signals = cls()
        asked: dict[int, str] = {}
        for item in events:
            event = item.event if isinstance(item, StoredEvent) else item
            match event:
                case AlertRaised(alert=alert) if alert.step is not None:
                    signals.alerts.setdefault(alert.step, []).append(
                        (alert.severity, f"{alert.monitor}/{alert.kind}: {alert.message}")
                    )
                case RoundOpened(step=sid, round=n, failure=why) if why is not None and n > 1:
                    signals.new_approach.setdefault(sid, []).append(
                        f"a new conversation (round {n}) after: {_clip(why)}"
                    )
                case ApprovalRequested(approval=n, step=sid) if sid is not None:
                    asked[n] = sid
                case ApprovalDecided(approval=n, verdict="modify") if n in asked:
                    signals.new_approach.setdefault(asked[n], []).append(
                        "a human edited its action"
                    )
                case StepReopened(step=sid, by=by) if by:
                    signals.new_approach.setdefault(sid, []).append(f"{by} asked to retry it")
        return signals


def rank(found: Lineage, target: str, signals: Signals | None = None) -> tuple[Candidate, ...]:
    """Score every step upstream of ``target`` (itself included) and sort them: most
    suspect first; among equals the one that started first, then by id."""
    signals = signals or Signals()
    upstream = found.upstream(target)
    failing = _failing_checks(found, target)
    order = {sid: i for i, sid in enumerate(found.steps)}
    out: list[Candidate] = []
    for sid, (hops, strength) in upstream.items():
        trace = found.current(sid)
        if trace is None and sid != target:
            continue  # it never produced anything
        evidence = _evidence(found, sid, target, trace, hops, strength, failing, signals)
        score = round(sum(e.weight for e in evidence), 2)
        link: Literal["read", "needs", "possible"] = (
            "read" if strength == 3 else "needs" if strength == 2 else "possible"
        )
        out.append(
            Candidate(
                step=sid,
                score=score,
                distance=hops,
                link=link,
                attempt=trace.attempt if trace else None,
                evidence=tuple(sorted(evidence, key=lambda e: -abs(e.weight))),
            )
        )
    start = {c.step: (t.start if (t := found.current(c.step)) else 1 << 62) for c in out}
    return tuple(sorted(out, key=lambda c: (-c.score, start[c.step], order.get(c.step, 0))))


def _evidence(
    found: Lineage,
    sid: str,
    target: str,
    trace: AttemptTrace | None,
    hops: int,
    strength: int,
    failing: Sequence[tuple[str, CheckResult, Check | None, int]],
    signals: Signals,
) -> list[Evidence]:
    step = found.steps[sid]
    factor = DISCOUNT[strength]
    items: list[Evidence] = []

    def add(kind: EvidenceKind, weight: float, text: str, *, direct: bool = False) -> None:
        w = weight if direct or weight <= 0 else weight * factor
        items.append(Evidence(kind=kind, weight=round(w, 2), text=text))

    if sid == target:
        for owner, result, _, _ in failing:
            if owner == sid:
                add("symptom", W_SYMPTOM, f"its check failed: {_result(result)}", direct=True)
                break
        else:
            if trace is not None and trace.ok is False:
                why = trace.error or "its action failed"
                add("symptom", W_SYMPTOM, f"it failed: {_clip(why)}", direct=True)
    else:
        add("upstream", W_LINK, _link_text(found, sid, target, hops, strength))
        if hops > 1:
            add(
                "upstream",
                min(W_HOP * (hops - 1), W_HOP_MAX),
                f"{hops} steps upstream of {target!r}: wrong output could first enter here",
            )
    if trace is None:
        return items
    wrote = _written(trace)
    if sid != target:
        _checks(step, trace, wrote, add)
        for owner, result, check, end in failing:
            if owner == sid or end <= (trace.end or 0):
                continue
            named = sorted(_check_files(check, result) & wrote) if check else []
            for path in named:
                add(
                    "contradicted",
                    W_CONTRADICTED,
                    f"{owner!r}'s check failed on {path}, which it wrote last: {_result(result)}",
                    direct=True,
                )
    _inputs(found, sid, trace, add)
    alerts = signals.alerts.get(sid, [])
    total = 0.0
    for severity, message in alerts:
        w = min(W_ALERT.get(severity, 0.25), W_ALERT_MAX - total)
        if w > 0:
            total += w
            add("alert", w, f"monitor alert ({severity}) {_clip(message)}")
    _retries(found, sid, trace, signals, add)
    if trace.wrote is None:
        add("unknown", 0.0, "writes unknown (no checkpoints around its attempt)")
    if not trace.reads_known:
        add("unknown", 0.0, "reads beyond the files it names unknown")
    return items


def _link_text(found: Lineage, sid: str, target: str, hops: int, strength: int) -> str:
    direct = [e for e in found.out_of(sid) if e.target in found.upstream(target)]
    reads = sorted({f"{e.path} read by {e.target!r}" for e in direct if e.kind == "read"})
    if reads:
        return "its output reaches the failure: " + "; ".join(reads[:3])
    return f"upstream of {target!r} by {LINK_WORDS[strength]}"


def _checks(step: Step, trace: AttemptTrace, wrote: set[str], add: Any) -> None:
    """How well the step's own checks verified what it wrote."""
    if not step.verify:
        add("no_checks", W_NO_CHECKS, "no checks: nothing verified its output")
        return
    looked: set[str] = set()
    opaque = False
    for check in step.verify:
        if isinstance(check, CallableCheck):
            opaque = True
        elif not isinstance(check, FileExistsCheck):
            looked |= _check_files(check, None)
    seen = sorted(looked & wrote)
    if seen and trace.ok:
        add("verified", W_VERIFIED, f"its checks looked at {', '.join(seen[:3])} and passed")
    elif opaque:
        add("weak_checks", W_OPAQUE, "its checks are Python callables: what they read is unknown")
    elif trace.wrote is None and looked:
        add("weak_checks", W_OPAQUE, f"its checks look at {', '.join(sorted(looked)[:3])}")
    else:
        what = ", ".join(describe_check(c) for c in step.verify[:2])
        add("weak_checks", W_WEAK, f"weak checks: none looked at what it wrote ({_clip(what)})")


def _inputs(found: Lineage, sid: str, trace: AttemptTrace, add: Any) -> None:
    """An input not as its writer left it, or not the same across the step's attempts."""
    for path, digest in sorted(trace.read.items()):
        writer = _last_writer(found, path, trace.start)
        if writer is None or not digest or writer.wrote is None:
            continue
        left = writer.wrote.get(path, "")
        if left and left != digest and not (left == DELETED and digest == ABSENT):
            add(
                "changed_input",
                W_CHANGED,
                f"{path} changed after {writer.step!r} wrote it, before this step read it",
            )
    earlier = [a for a in found.attempts.get(sid, []) if a is not trace and a.ended]
    for path, digest in sorted(trace.read.items()):
        before = {a.read.get(path) for a in earlier} - {None, "", digest}
        if digest and before:
            add("changed_input", W_CHANGED / 2, f"{path} was different in an earlier attempt")


def _retries(found: Lineage, sid: str, trace: AttemptTrace, signals: Signals, add: Any) -> None:
    failures = [a for a in found.attempts.get(sid, []) if a.ended and a.ok is False]
    if not trace.ok or not failures:
        return
    why = signals.new_approach.get(sid, [])
    if why:
        add(
            "retried",
            W_NEW_APPROACH,
            f"passed on attempt {trace.attempt} after {len(failures)} failed, "
            f"by a different approach: {_clip(why[-1])}",
        )
    else:
        add(
            "retried",
            W_RETRIED,
            f"passed on attempt {trace.attempt} after {len(failures)} failed attempt(s)",
        )


def _last_writer(found: Lineage, path: str, before: int) -> AttemptTrace | None:
    wrote = [
        a
        for traces in found.attempts.values()
        for a in traces
        if a.ended and not a.abandoned and (a.end or 0) < before and path in (a.wrote or {})
    ]
    return max(wrote, key=lambda a: a.end or 0, default=None)


def _written(trace: AttemptTrace) -> set[str]:
    return {p for p, d in (trace.wrote or {}).items() if d != DELETED}


def _failing_checks(
    found: Lineage, target: str
) -> list[tuple[str, CheckResult, Check | None, int]]:
    """Every failed check of a live attempt: (its step, the result, the check, when)."""
    out: list[tuple[str, CheckResult, Check | None, int]] = []
    for sid, traces in found.attempts.items():
        step = found.steps.get(sid)
        for a in traces:
            if a.abandoned or not a.ended:
                continue
            for i, result in enumerate(a.checks):
                if not result.passed:
                    check = step.verify[i] if step and i < len(step.verify) else None
                    out.append((sid, result, check, a.end or 0))
    # the target's own first: it is the symptom
    return sorted(out, key=lambda f: (f[0] != target, -f[3]))


def _check_files(check: Check | None, result: CheckResult | None) -> set[str]:
    """The workspace paths a check names: its file, or the words of its command."""
    match check:
        case FileExistsCheck(file_exists=path) | FileContainsCheck(file_contains=path):
            return {_norm(path)}
        case CommandCheck(command=command):
            script = parse(command)
            words = [
                w.value
                for simple in (*script.commands, *script.nested)
                for w in (*simple.words[1:], *(r.target for r in simple.redirects))
                if w.literal
            ]
            return {_norm(w) for w in words if w and not w.startswith("-")}
    return set()


def _failed(events: Sequence[AnyEvent | StoredEvent]) -> list[str]:
    """The steps that failed, in the order of their last failure, still failed now."""
    order: dict[str, int] = {}
    for index, item in enumerate(events):
        event = item.event if isinstance(item, StoredEvent) else item
        if isinstance(event, StepFailed):
            order[event.step] = index
        elif isinstance(event, StepReopened):
            order.pop(event.step, None)
        elif isinstance(event, RunRewound):
            for sid in event.reopened:
                order.pop(sid, None)
    return sorted(order, key=order.__getitem__)


def _symptom(found: Lineage, target: str) -> str:
    trace = found.current(target)
    if trace is None:
        return "it never ran"
    for result in trace.checks:
        if not result.passed:
            return f"check failed: {_result(result)}"
    if trace.ok is False:
        return f"failed: {_clip(trace.error or 'its action failed')}"
    return ""


def _result(result: CheckResult) -> str:
    return _clip(f"{result.check}: expected {result.expected}, got {result.actual}")


def _clip(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _norm(path: str) -> str:
    return posixpath.normpath(path).lstrip("/")


def as_json(found: Blame) -> dict[str, Any]:
    """The ranking as JSON data (``trestle blame --json``)."""
    return found.model_dump(mode="json")
