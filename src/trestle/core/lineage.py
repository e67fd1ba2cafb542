"""A run's data dependencies, read from its events: which step's output another used.

Declared ``needs`` say what must finish first; they do not say what a step used. The
runtime records what each attempt read and wrote (:class:`AttemptFiles` on
``step_attempt_ended``; an agent's ``read_file``, ``write_file`` and ``edit_file``
calls on ``tool_call_ended``), and :func:`lineage` folds that into edges between steps:

=============  ======================================================================
``read``       B read a file whose last writer before B began was A
``needs``      B declares that it needs A (weaker: it may use nothing A made)
``workspace``  B's reads are unknown (a command, a callable) and the workspace it began
               in held a file A wrote last: B may have read it
``unknown``    A's writes are unknown (no checkpoints around it) and B read something
               after A ended: B may have read something A wrote
``overwrite``  B wrote a file A wrote before it (not a use; a rewind that undoes one
               undoes the other)
=============  ======================================================================

Nothing is guessed: an edge that rests on what could not be seen says so by its kind.
Cascade tracing (:mod:`trestle.core.blame`) walks these edges back from a failure; a
rewind (:func:`rewind_scope`) walks them forward to re-run only what depended on a step.
Pure: events in, data out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from trestle.core.events import (
    AnyEvent,
    CheckResult,
    PlanExtended,
    RunCreated,
    RunRewound,
    StepAttemptEnded,
    StepStarted,
    StoredEvent,
    ToolCallEnded,
)
from trestle.core.plan import Step
from trestle.core.records.lineage import DELETED
from trestle.core.shellparse import parse

EdgeKind = Literal["read", "needs", "workspace", "unknown", "overwrite"]
# how surely an edge carries data: a read seen, then a declared need, then a possibility
STRENGTH: dict[EdgeKind, int] = {"read": 3, "needs": 2, "workspace": 1, "unknown": 1}
READ_TOOLS = frozenset({"read_file"})
WRITE_TOOLS = frozenset({"write_file", "edit_file"})
# tools whose reads are not named by one path: a command, a search over many files
OPAQUE_TOOLS = frozenset({"run_command", "run_tests", "search_text", "list_files"})
UNKNOWN_DIGEST = ""  # a path touched whose content was not hashed (an agent's call)


@dataclass
class AttemptTrace:
    """One attempt of a step as the events show it. ``start`` and ``end`` are positions
    in the run's events (the seq when the events came stored)."""

    step: str
    attempt: int
    start: int
    end: int | None = None
    ok: bool | None = None
    checks: tuple[CheckResult, ...] = ()
    error: str | None = None
    wrote: dict[str, str] | None = None  # None: unknown
    read: dict[str, str] = field(default_factory=dict)
    reads_known: bool = False
    abandoned: bool = False  # a rewind undid it
    claimed: set[str] = field(default_factory=set)  # paths its agent's calls wrote

    @property
    def ended(self) -> bool:
        return self.end is not None


@dataclass(frozen=True)
class Edge:
    """``target`` may have used what ``source`` made: how, and through which file."""

    source: str
    target: str
    kind: EdgeKind
    path: str | None = None


@dataclass
class Lineage:
    """A run's steps, their attempts and the data edges between their latest ones."""

    run_id: str
    steps: dict[str, Step]
    attempts: dict[str, list[AttemptTrace]]
    edges: list[Edge]

    def current(self, step: str) -> AttemptTrace | None:
        """The step's latest attempt that ended and was not undone by a rewind."""
        live = [a for a in self.attempts.get(step, []) if a.ended and not a.abandoned]
        return live[-1] if live else None

    def into(self, step: str) -> list[Edge]:
        return [e for e in self.edges if e.target == step]

    def out_of(self, step: str) -> list[Edge]:
        return [e for e in self.edges if e.source == step]

    def upstream(self, step: str) -> dict[str, tuple[int, int]]:
        """Every step ``step`` may have used, directly or not: ``{step: (hops, strength)}``
        where hops is the shortest way back and strength the surest (the weakest edge
        on the surest path, :data:`STRENGTH`). ``step`` itself is ``(0, 3)``."""
        uses = [e for e in self.edges if e.kind != "overwrite"]
        return _walk(uses, step, backward=True)

    def downstream(self, step: str, *, overwrites: bool = True) -> set[str]:
        """Every step that may have used what ``step`` made, transitively; with
        ``overwrites``, also the steps that wrote over its files."""
        edges = [e for e in self.edges if overwrites or e.kind != "overwrite"]
        return set(_walk(edges, step, backward=False)) - {step}


def lineage(events: Iterable[AnyEvent | StoredEvent]) -> Lineage:
    """Fold a run's events (``run_created`` first) into its :class:`Lineage`."""
    run_id = ""
    steps: dict[str, Step] = {}
    attempts: dict[str, list[AttemptTrace]] = {}
    agent_io: dict[tuple[str, int], AttemptTrace] = {}
    for index, item in enumerate(events, start=1):
        event, pos = (item.event, item.seq) if isinstance(item, StoredEvent) else (item, index)
        match event:
            case RunCreated(run_id=rid, plan=plan):
                run_id = rid
                steps.update((s.id, s) for s in plan.steps)
            case PlanExtended(steps=added, needs_added=more):
                steps.update((s.id, s) for s in added)
                for sid, needs in more.items():
                    if sid in steps:
                        old = steps[sid]
                        merged = (*old.needs, *(n for n in needs if n not in old.needs))
                        steps[sid] = old.model_copy(update={"needs": merged})
            case StepStarted(step=sid, attempt=n):
                trace = AttemptTrace(sid, n, pos)
                spec = steps.get(sid)
                if spec is not None and spec.agent is not None and spec.agent.role != "validate":
                    # an agent's reads and writes are its calls, until one is opaque;
                    # ``validate`` runs the test command outside any call, so, like a
                    # command's, its reads are unknown and its writes the checkpoints'
                    trace.wrote, trace.reads_known = {}, True
                attempts.setdefault(sid, []).append(trace)
                agent_io[(sid, n)] = trace
            case StepAttemptEnded(step=sid, attempt=n):
                trace = agent_io.get((sid, n)) or AttemptTrace(sid, n, pos)
                if trace not in attempts.setdefault(sid, []):
                    attempts[sid].append(trace)
                _ended(trace, event, pos, steps.get(sid))
            case ToolCallEnded(step=sid, tool=tool, ok=ok, data=data):
                live = attempts.get(sid)
                if live and live[-1].end is None:
                    _tool_call(live[-1], tool, ok, data)
            case RunRewound(reopened=reopened):
                for sid in reopened:
                    for trace in attempts.get(sid, []):
                        trace.abandoned = True
    found = Lineage(run_id, steps, attempts, [])
    _disentangle(found)
    found.edges = _edges(found)
    return found


def _disentangle(found: Lineage) -> None:
    """Attempts that ran at the same time each see the others' writes in their own
    checkpoints' diff (whole, or half done). A path changed in the diffs of attempts
    that overlapped goes to those of them that name it (a ``write`` step's path, an
    agent's write, a word or redirect of a command); when none does, each keeps it:
    who wrote it is not known."""
    ended = [t for ts in found.attempts.values() for t in ts if t.ended and t.wrote]
    for x in ended:
        assert x.wrote is not None
        for path in list(x.wrote):
            alike = [
                y
                for y in ended
                if y is not x
                and y.start < (x.end or 0)
                and x.start < (y.end or 0)
                and path in (y.wrote or {})
            ]
            if not alike:
                continue
            claim = [t for t in (x, *alike) if path in _claims(found.steps.get(t.step), t)]
            if claim and x not in claim:
                del x.wrote[path]


def _claims(step: Step | None, trace: AttemptTrace) -> set[str]:
    """The paths an attempt names as its own: see :func:`_disentangle`."""
    if step is None:
        return set(trace.claimed)
    if step.write is not None:
        return {_norm(step.write.path)}
    if step.run is not None:
        script = parse(step.run)
        words = {
            w.value
            for simple in (*script.commands, *script.nested)
            for w in (*simple.words, *(r.target for r in simple.redirects))
            if w.literal
        }
        return {_norm(w) for w in words if w}
    return set(trace.claimed)


def _ended(trace: AttemptTrace, event: StepAttemptEnded, pos: int, step: Step | None) -> None:
    trace.end, trace.ok, trace.checks = pos, event.ok, event.checks
    trace.error = event.action.error
    files = event.files
    if files is None:
        return  # an agent's calls, if any; else nothing is known
    if files.wrote is not None:  # the checkpoints saw every write, an agent's too
        trace.wrote = {**{p: UNKNOWN_DIGEST for p in trace.wrote or {}}, **files.wrote}
    trace.read = {**files.read, **trace.read}
    if step is None or step.agent is None:
        trace.reads_known = files.reads_known


def _tool_call(trace: AttemptTrace, tool: str, ok: bool, data: Mapping[str, object]) -> None:
    """An agent's call: a read or a write of one path, or an opaque one."""
    path = data.get("path")
    if tool in OPAQUE_TOOLS:
        trace.reads_known = False
        if tool in ("run_command", "run_tests"):
            trace.wrote = None  # a command may write anything; the checkpoints say what
        return
    if not ok or not isinstance(path, str):
        return
    if tool in READ_TOOLS:
        trace.read.setdefault(_norm(path), UNKNOWN_DIGEST)
    elif tool in WRITE_TOOLS:
        trace.claimed.add(_norm(path))
        if trace.wrote is not None:
            trace.wrote[_norm(path)] = UNKNOWN_DIGEST


def _norm(path: str) -> str:
    return posixpath.normpath(path).lstrip("/") if path else path


def _edges(found: Lineage) -> list[Edge]:
    """The edges into each step's latest live attempt (see the module)."""
    # every live attempt that ended, by when it ended: the workspace's writers in order
    writers = sorted(
        (t for ts in found.attempts.values() for t in ts if t.ended and not t.abandoned),
        key=lambda t: t.end or 0,
    )
    edges: list[Edge] = []
    for sid in found.steps:
        b = found.current(sid)
        if b is not None:
            edges += _edges_into(found.steps[sid], b, writers)
    return edges


def _edges_into(step: Step, b: AttemptTrace, writers: Sequence[AttemptTrace]) -> list[Edge]:
    found: dict[tuple[str, EdgeKind, str | None], Edge] = {}

    def add(source: str, kind: EdgeKind, path: str | None) -> None:
        if source != step.id:
            found.setdefault((source, kind, path), Edge(source, step.id, kind, path))

    last: dict[str, AttemptTrace] = {}
    unknown_before: list[AttemptTrace] = []
    for a in writers:
        if (a.end or 0) >= b.start:
            break
        if a.wrote is None:
            unknown_before.append(a)
        else:
            for path in a.wrote:
                last[path] = a
    for path, a in sorted(last.items()):
        if a.wrote is None or a.wrote.get(path) == DELETED:
            continue
        if path in b.read:
            add(a.step, "read", path)
        elif not b.reads_known:
            add(a.step, "workspace", path)
    if b.read or not b.reads_known:
        for a in unknown_before:
            add(a.step, "unknown", None)
    for need in step.needs:
        add(need, "needs", None)
    for path in sorted(b.wrote or {}):
        earlier = last.get(path)
        if earlier is not None:
            add(earlier.step, "overwrite", path)
    return list(found.values())


def _walk(edges: Sequence[Edge], start: str, *, backward: bool) -> dict[str, tuple[int, int]]:
    """From ``start`` along (or against) ``edges``: each step reached, its strength (the
    weakest edge on its surest path) and its hops (the shortest way by edges that
    sure)."""
    nxt: dict[str, list[Edge]] = {}
    for e in edges:
        nxt.setdefault(e.target if backward else e.source, []).append(e)
    reached: dict[str, tuple[int, int]] = {}
    for level in (3, 2, 1):  # the surest first: a step keeps the first level it is found at
        hops = {start: 0}
        frontier = [start]
        while frontier:
            after: list[str] = []
            for node in frontier:
                for e in nxt.get(node, ()):
                    other = e.source if backward else e.target
                    if STRENGTH.get(e.kind, 1) >= level and other not in hops:
                        hops[other] = hops[node] + 1
                        after.append(other)
            frontier = sorted(after)
        for node, n in hops.items():
            reached.setdefault(node, (n, level))
    return reached


@dataclass(frozen=True)
class RewindScope:
    """What a rewind to a step undoes: the steps to reopen, and ``keep``, the files
    written since by the steps that stay done, which the rewind leaves as they are
    (everything else goes back to the checkpoint). ``keep`` is None when some write
    since could not be seen (``why`` says whose): then the whole workspace goes back,
    and every step started since is reopened."""

    reopen: tuple[str, ...]
    keep: tuple[str, ...] | None
    why: str = ""


def rewind_scope(found: Lineage, step: str, attempt: int) -> RewindScope:
    """The step, the steps that depended on it (data and declared, transitively), and
    the steps that wrote over what those wrote since, re-run; nothing else."""
    order = list(found.steps)
    origin = next((t.start for t in found.attempts.get(step, []) if t.attempt == attempt), None)
    since = [
        t
        for ts in found.attempts.values()
        for t in ts
        if origin is not None and t.start >= origin and not t.abandoned
    ]
    blind = sorted({t.step for t in since if t.ended and t.wrote is None} | _running(since))
    if origin is None or blind:
        started = {t.step for t in since} | {step}
        chosen = _closure(found, started, data=False)
        why = f"the writes of {', '.join(map(repr, blind))} are not known" if blind else ""
        return RewindScope(tuple(s for s in order if s in chosen), None, why)
    chosen = _closure(found, {step})
    while True:  # a step outside that wrote over the files put back goes too
        files = {p for t in since if t.step in chosen for p in (t.wrote or {})}
        more = {t.step for t in since if t.step not in chosen and files & set(t.wrote or {})}
        if not more:
            break
        chosen = _closure(found, chosen | more)
    keep = {p for t in since if t.step not in chosen for p in (t.wrote or {})}
    return RewindScope(tuple(s for s in order if s in chosen), tuple(sorted(keep)))


def _running(traces: Sequence[AttemptTrace]) -> set[str]:
    return {t.step for t in traces if not t.ended}


def _closure(found: Lineage, steps: set[str], *, data: bool = True) -> set[str]:
    """``steps`` and everything downstream of them: by the data edges (with ``data``)
    and by every declared need, of steps that ran or not."""
    needed_by: dict[str, set[str]] = {}
    for s in found.steps.values():
        for need in s.needs:
            needed_by.setdefault(need, set()).add(s.id)
    if data:
        for e in found.edges:
            needed_by.setdefault(e.source, set()).add(e.target)
    chosen, todo = set(steps), list(steps)
    while todo:
        for d in needed_by.get(todo.pop(), ()):
            if d not in chosen:
                chosen.add(d)
                todo.append(d)
    return chosen
