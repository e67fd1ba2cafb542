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
``weak_checks``     its checks did not look at what it wrote (or only that it exists),
                    or looked at its form only: a wrong value passes them
``verified``        a check that passed compared what it wrote with what it read, or
                    with its exact expected content (counts against)
``no_output``       it is known to have written nothing: no value of its could be wrong
                    in a file, so its checks and its place say nothing (weight 0)
``changed_input``   a file it read was not as its writer left it, or differed between
                    its attempts
``alert``           a monitor raised an alert on it
``retried``         it passed only after failed attempts (more so after a different
                    approach: an agent's new conversation, a human's edit)
``upstream``        how its output reaches the target, and the unverified steps it lies
                    ahead of on the way: the first wrong step is the earliest of them
``unknown``         what could not be seen (reads or writes unknown), weight 0
==================  ==============================================================

Positive evidence of a step reached only by a possible edge (its reads or writes not
seen) or a declared need counts for less. The same events always give the same ranking.
Pure: no IO; the CLI (``trestle blame``) and the dashboard read the events and call it.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from trestle.core.counting import counted
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
    "no_output",
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
# a check that read what it wrote but only as a form (a number, a key present, part of
# it): a wrong value passes most such checks, though some hold an expected value in
# their own words (a `grep` for a number) that cannot be told apart from a form
W_SHAPE = 1.25
W_OPAQUE = 0.75  # a Python check: what it looked at is unknown
W_VERIFIED = -1.0
W_CHANGED = 1.0
W_ALERT = {"info": 0.25, "warning": 1.0, "critical": 1.5}
W_ALERT_MAX = 2.0
W_RETRIED = 0.5
W_NEW_APPROACH = 1.5
W_LINK = 0.5
W_HOP = 0.5  # per unverified step it lies ahead of: the first wrong step is the earliest
W_HOP_MAX = 1.5
# positive evidence of a step that reaches the target only by these counts for less
DISCOUNT = {3: 1.0, 2: 0.6, 1: 0.3}
LINK_WORDS = {3: "a file read", 2: "a declared need", 1: "a possible read (reads or writes unseen)"}
# programs whose first operand is the code they run: a check's script is not its data
_RUNS_FILE = re.compile(
    r"(python|pypy|perl|ruby|node|php|lua|Rscript|tclsh|bun|deno|sh|bash|dash|zsh|ksh)[0-9.]*"
)


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
    suspect first; among equals the one earlier in the plan, then the one that started
    first (plan order first: steps run side by side start in whichever order their
    threads reach the loop, so a tie broken by start would not rank the same twice)."""
    signals = signals or Signals()
    upstream = found.upstream(target)
    failing = _failing_checks(found, target)
    order = {sid: i for i, sid in enumerate(found.steps)}
    grades = {
        sid: _grade(found.steps[sid], trace)
        for sid in upstream
        if sid != target and (trace := found.current(sid)) is not None
    }
    ahead = _ahead(found, upstream, target, grades)
    out: list[Candidate] = []
    for sid, (hops, strength) in upstream.items():
        trace = found.current(sid)
        if trace is None and sid != target:
            continue  # it never produced anything
        evidence = _evidence(
            found, sid, target, trace, (hops, strength), failing, signals, grades, ahead
        )
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
    return tuple(sorted(out, key=lambda c: (-c.score, order.get(c.step, 0), start[c.step])))


@dataclass(frozen=True)
class _Grade:
    """How well a step's own checks verified what it wrote: one line of evidence.
    ``pinned``: a check found its whole content as the plan gave it, so no wrong value
    from further up passed through it."""

    kind: EvidenceKind
    weight: float
    text: str
    pinned: bool = False

    @property
    def unverified(self) -> bool:
        """It wrote something (or what it wrote is unknown) that no check verified:
        a wrong value could have entered or passed here unnoticed."""
        return self.kind not in ("verified", "no_output")


def _evidence(
    found: Lineage,
    sid: str,
    target: str,
    trace: AttemptTrace | None,
    where: tuple[int, int],
    failing: Sequence[tuple[str, CheckResult, Check | None, int]],
    signals: Signals,
    grades: dict[str, _Grade],
    ahead: dict[str, list[str]],
) -> list[Evidence]:
    hops, strength = where
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
        later = ahead.get(sid, [])
        grade = grades.get(sid)
        if later and grade is not None and grade.unverified:
            names = ", ".join(map(repr, later[:3])) + (", ..." if len(later) > 3 else "")
            add(
                "upstream",
                min(W_HOP * len(later), W_HOP_MAX),
                f"ahead of {counted(len(later), 'unverified step')} on the way to {target!r} "
                f"({names}): the first wrong step is the earliest of them",
            )
    if trace is None:
        return items
    wrote = _written(trace)
    if sid != target:
        grade = grades[sid]
        add(grade.kind, grade.weight, grade.text)
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


def _ahead(
    found: Lineage, upstream: dict[str, tuple[int, int]], target: str, grades: dict[str, _Grade]
) -> dict[str, list[str]]:
    """For each step, the unverified steps it lies ahead of on the way to ``target``:
    those its output reaches by a file read or a declared need, directly or through
    other steps, before the target.

    A wrong value enters once; if it entered at a step, every unverified step after it
    on its way passed it on unnoticed, so among a path's suspects the earliest is the
    likeliest first. Only the steps after it count: a correct branch beside the
    culprit's, however deep, lies ahead of none of the culprit's steps. A possible
    edge (reads or writes unseen) does not count, as it links nearly every step to
    every later one; and the walk stops at a step whose check pinned its whole content,
    since no wrong value passed through it."""
    nxt: dict[str, set[str]] = {}
    for e in found.edges:
        if e.kind in ("read", "needs") and e.target in upstream and e.target != target:
            nxt.setdefault(e.source, set()).add(e.target)
    out: dict[str, list[str]] = {}
    for sid in grades:
        seen: set[str] = set()
        todo = [sid]
        while todo:
            for d in nxt.get(todo.pop(), ()):
                grade = grades.get(d)
                if d in seen or grade is None:
                    continue
                seen.add(d)
                if not grade.pinned:
                    todo.append(d)
        out[sid] = sorted(d for d in seen - {sid} if grades[d].unverified)
    return out


def _grade(step: Step, trace: AttemptTrace) -> _Grade:
    """How well the step's own checks verified what it wrote.

    - Its writes are known and there are none: no value of its is in a file a later
      step could read, so whether it was checked says nothing (an agent's
      ``understand``, ``plan`` and ``review``; a command that only tests).
    - ``verified`` needs a check that passed and compared what it wrote with something
      that would differ if the value were wrong: a command check that names both a
      file it wrote and a file it read (a recomputation, a cross-check), or a
      ``file_contains`` whose text is the file's whole content (its SHA-256, with or
      without a final newline, is the one recorded), an exact expected value.
    - A check that read what it wrote but only that (``calc.py isint total.txt``, a
      ``file_contains`` of a key or of part of it) tests its form, which a wrong value
      passes: weak, though less so than none (some hold an expected value in their
      own words, which cannot be told from a form).
    """
    if trace.wrote is not None and not trace.wrote:
        return _Grade("no_output", 0.0, "it wrote nothing (its writes are known)")
    if not step.verify:
        return _Grade("no_checks", W_NO_CHECKS, "no checks: nothing verified its output")
    wrote = _written(trace)
    looked: set[str] = set()
    opaque = False
    for check in step.verify:
        if isinstance(check, CallableCheck):
            opaque = True
        elif not isinstance(check, FileExistsCheck):
            looked |= _check_files(check, None)
    seen = sorted(looked & wrote)
    if trace.ok:
        for check in step.verify:
            tie = _tie(check, trace, wrote)
            if tie is not None:
                return _Grade("verified", W_VERIFIED, tie[0], pinned=tie[1])
    if opaque:
        return _Grade(
            "weak_checks", W_OPAQUE, "its checks are Python callables: what they read is unknown"
        )
    if seen and trace.ok:
        return _Grade(
            "weak_checks",
            W_SHAPE,
            f"its checks read {', '.join(seen[:3])} but compared it with neither what it "
            "read nor an exact content: a wrong value of the right form passes them",
        )
    if trace.wrote is None and looked:
        return _Grade(
            "weak_checks", W_OPAQUE, f"its checks look at {', '.join(sorted(looked)[:3])}"
        )
    what = ", ".join(describe_check(c) for c in step.verify[:2])
    return _Grade(
        "weak_checks", W_WEAK, f"weak checks: none looked at what it wrote ({_clip(what)})"
    )


def _tie(check: Check, trace: AttemptTrace, wrote: set[str]) -> tuple[str, bool] | None:
    """Why a passing check verified the value written (see :func:`_grade`), and whether
    it pinned the whole content; None when it did not."""
    if isinstance(check, FileContainsCheck) and check.text is not None:  # a regex: a form
        path = _norm(check.file_contains)
        digest = (trace.wrote or {}).get(path)
        exact = {_sha256(check.text), _sha256(check.text + "\n")}
        if path in wrote and digest in exact:
            return (
                f"its check found the whole of {path} as expected ({_clip(check.text, 40)!r})",
                True,
            )
    elif isinstance(check, CommandCheck):
        named = _check_files(check, None) - _check_code(check.command)
        outputs = sorted(named & wrote)
        inputs = sorted((named & set(trace.read)) - wrote)
        if outputs and inputs:
            return (
                f"its check compared {', '.join(outputs[:3])} with {', '.join(inputs[:3])}, "
                "which it read, and passed",
                False,
            )
    return None


def _check_code(command: str) -> set[str]:
    """The scripts a check command runs (``python check.py ...``: ``check.py``): its
    code, not data it compares."""
    script = parse(command)
    code: set[str] = set()
    for simple in (*script.commands, *script.nested):
        words = [w.value for w in simple.words if w.literal]
        if words and _RUNS_FILE.fullmatch(posixpath.basename(words[0])):
            rest = [w for w in words[1:] if not w.startswith("-")]
            if rest:
                code.add(_norm(rest[0]))
    return code


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
            f"passed on attempt {trace.attempt} after {counted(len(failures), 'failed attempt')}",
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
