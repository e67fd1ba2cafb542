"""Semantic monitors: writes outside the scope, actions off the objective, false claims.

- :class:`ScopeMonitor`: a write (or a write the tool gate refused) outside the run's
  declared scope;
- :class:`RelevanceMonitor`: a run of actions with nothing to do with the current step's
  objective or the goal, judged by a pluggable :class:`~trestle.monitors.similarity.Embedder`;
- :class:`ClaimMonitor`: a step that called ``finish`` but failed its verification.

:func:`semantic_cost_timing_monitors` gives fresh instances of these and of the cost and
timing monitors, with their defaults.
"""

from __future__ import annotations

import posixpath
import re
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import ClassVar

from trestle.core.policy import path_glob_matches
from trestle.core.records.monitors import Alert, Severity
from trestle.core.safetext import loads_bounded
from trestle.monitors.alerts import Monitor
from trestle.monitors.attempt import Attempts
from trestle.monitors.cost import CostMonitor
from trestle.monitors.embedworker import send_ahead
from trestle.monitors.similarity import Embedder, HashingEmbedder, Ready, cosine, has_words
from trestle.monitors.timing import DurationMonitor, StallMonitor
from trestle.monitors.trace import Action, Observation, RunFacts, StepEnd, Turn

_TEXT_LIMIT = 2000  # characters of an action (and again of its reasoning) compared
# Trestle's in-process file tools: a turn of only these is judged about half a
# millisecond after its answer, sooner than the embedding worker makes a vector of
# 1,000 characters (about 0.7 ms), so sending its text ahead would only make the turn
# wait for it (measured slower on a busy 2-core machine: BENCHMARKS.md, section 1b)
QUICK_TOOLS = frozenset({"read_file", "list_files", "write_file", "edit_file", "finish"})

# What the tool gate (trestle.agent.toolgate) answers a write outside the scope with:
# "'docs/x.md' is outside the scope this run may change ['src/**']".
# the quoted path holds no quote: a lazy ``.+?`` here backtracks quadratically on long output
_GATE_REFUSAL = re.compile(
    r"""(['"])(?P<path>[^'"\n]+)\1 is outside the scope this run may change"""
)


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ScopeMonitor:
    """Writes outside ``RunFacts.scope``: a warning the first time, critical the second.

    A write counts when an action's ``writes`` name a path no scope glob matches, or
    when the tool gate refused a call because its path is outside the scope (the
    attempt shows the intent even though nothing changed). Globs match as the gate
    matches them (:func:`trestle.core.policy.path_glob_matches`). An empty scope allows
    everything.
    """

    name = "scope"

    def __init__(self) -> None:
        self._offences = 0

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if not isinstance(item, Turn) or not facts.scope:
            return []
        alerts: list[Alert] = []
        for action in item.actions:
            found = self._outside(action, facts.scope)
            if found is not None and self._offences < 2:
                self._offences += 1
                alerts.append(self._alert(item, action, *found, scope=facts.scope))
        return alerts

    def _alert(
        self, turn: Turn, action: Action, path: str, refused: bool, *, scope: tuple[str, ...]
    ) -> Alert:
        globs = ", ".join(scope)
        verb = "tried to write" if refused else "wrote"
        said = f"{action.tool} {verb} {path!r}, outside the run's scope ({globs})"
        if refused:
            said += "; the tool gate refused it"
        if self._offences > 1:
            said += f"; {self._offences} writes outside the scope so far"
        undo = f"do not try {path} again" if refused else f"undo your change to {path}"
        return Alert(
            monitor=self.name,
            kind="out_of_scope",
            severity="warning" if self._offences == 1 else "critical",
            message=said,
            evidence=tuple(sorted({turn.seq, action.seq})),
            suggestion=f"Change only files matching {globs}; {undo}.",
            step=turn.step or None,
            round=turn.round,
            turn=turn.index,
        )

    @staticmethod
    def _outside(action: Action, scope: tuple[str, ...]) -> tuple[str, bool] | None:
        """The first path ``action`` wrote (False) or tried to write (True) outside ``scope``."""
        for written in action.writes:
            path = written.removeprefix("./")
            if not any(path_glob_matches(glob, path) for glob in scope):
                return path, False
        for said in (action.error or "", action.output):
            match = _GATE_REFUSAL.search(said)
            if match:
                return match.group("path"), True
        return None


def _argument_text(arguments: str) -> str:
    """The values of JSON arguments (their keys say nothing about the topic), else the text."""
    try:
        parsed = loads_bounded(arguments)
    except ValueError:
        return arguments
    values: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)
        elif isinstance(node, str):
            values.append(node)

    collect(parsed)
    return " ".join(values)


def _passages(text: str, max_words: int = 40) -> list[str]:
    """``text`` and, when it is long, its runs of lines of about ``max_words`` words.

    A long goal (an issue with a traceback) dilutes any one action's similarity to it;
    comparing with each passage lets an action about one part of it score as related.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if len(text.split()) <= max_words:
        return [text]
    out, current, count = [text], [], 0
    for line in lines:
        current.append(line)
        count += len(line.split())
        if count >= max_words:
            out.append("\n".join(current))
            current, count = [], 0
    if current:
        out.append("\n".join(current))
    return out


# Starts only where a run of path characters starts, and never gives back what it took:
# otherwise a long word with no slash is rescanned from each of its characters.
_PATH = re.compile(r"(?<![\w.-])(?:[\w.-]++/)++[\w.-]*+")
TARGET_LIMIT = 4096  # characters of one action's target looked at for folders


def _folders(target: str) -> set[str]:
    """The folders of the paths in ``target`` (a file, or a command naming files)."""
    found = set()
    for path in _PATH.findall(target[:TARGET_LIMIT]):
        folder = path.rstrip("/") if path.endswith("/") else posixpath.dirname(path)
        folder = folder.removeprefix("./")
        if folder not in ("", ".", "/"):
            found.add(folder)
    return found


def _compared(action: Action, reasoning: str) -> tuple[str, str]:
    """What is compared with the objective: the action alone, and with its reasoning."""
    # the head of a long text (a whole file being written) says what it is about and
    # keeps the cost of embedding bounded
    core = f"{action.target} {_argument_text(action.arguments)}".strip()[:_TEXT_LIMIT]
    return core, f"{core}\n{reasoning}".strip()[: 2 * _TEXT_LIMIT]


class _Streak:
    """One step attempt's current run of unrelated actions (the latest ``window`` kept)."""

    def __init__(self, window: int) -> None:
        self.recent: deque[tuple[Action, float]] = deque(maxlen=window)
        self.length = 0
        self.raised: Severity | None = None  # what this streak has raised so far
        self.near: set[str] = set()  # folders of the files this attempt found relevant

    def end(self) -> None:
        self.recent.clear()
        self.length = 0
        self.raised = None


class RelevanceMonitor:
    """A streak of actions unrelated to the step's objective and the goal: drifting.

    Each action (its target, its arguments and the turn's reasoning) is compared with
    the current step's objective (``facts.objectives[turn.step]``) and the goal, passage
    by passage for long ones; its relevance is the best cosine. When the last ``window``
    scored actions of a step attempt all fall under the threshold, after the run's first
    ``warmup`` scored actions, the run is drifting: a warning, then critical once the
    streak reaches ``critical_after`` actions. One relevant action ends the streak, and
    each step attempt (steps may run side by side) keeps its own.

    A file in the same folder as one the step attempt found relevant earlier is relevant
    too (``textkit/text.py`` once ``textkit/slug.py`` was): looking around the code being
    changed is exploring, not drifting. Only directly relevant files lend their folder,
    so nearness does not spread, and the top folder is nobody's neighbour.

    Test runs and ``finish`` are not scored: they serve any objective. Neither are
    actions with no content words at all (``ls``, ``list_files {}``), which say nothing
    either way.

    Args:
        embedder: how texts become vectors; its ``unrelated_below`` is the threshold
            unless ``threshold`` is given.
        window: how many unrelated actions in a row make a drift.
        warmup: scored actions at the start of the run that never alert.
        critical_after: unrelated actions in a row that make it critical.
        threshold: the relevance under which an action counts as unrelated.
    """

    name = "drift"
    # rebuilt from the run's settings, not saved with a snapshot (trestle.monitors.saved)
    TRANSIENT: ClassVar[frozenset[str]] = frozenset({"embedder", "_references"})

    def __init__(
        self,
        embedder: Embedder,
        *,
        window: int = 6,
        warmup: int = 8,
        critical_after: int = 18,
        threshold: float | None = None,
    ) -> None:
        self.embedder = embedder
        self.window = window
        self.warmup = warmup
        self.critical_after = critical_after
        self.threshold = embedder.unrelated_below if threshold is None else threshold
        self._references: dict[str, list[Sequence[float]]] = {}
        self._scored = 0
        self._streaks = Attempts(partial(_Streak, window))  # a partial pickles

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        turn = self._streaks.turn_of(item)
        if turn is None:
            return []
        objective = facts.objectives.get(turn.step, "") or facts.goal
        if not objective.strip():
            return []
        streak = self._streaks.of(turn)
        references = self._reference_vectors(objective, facts.goal)
        alerts: list[Alert] = []
        for action in turn.actions:
            relevance = self._relevance(action, turn.text, references)
            if relevance is None:
                continue
            self._scored += 1
            folders = _folders(action.target)
            if relevance >= self.threshold:
                streak.near |= folders
                streak.end()
                continue
            if folders & streak.near:
                streak.end()  # a neighbour of a relevant file: exploring, not drifting
                continue
            streak.recent.append((action, relevance))
            streak.length += 1
            alert = self._judge(turn, objective, streak)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _judge(self, turn: Turn, objective: str, streak: _Streak) -> Alert | None:
        if self._scored <= self.warmup or streak.length < self.window:
            return None
        if streak.length >= self.critical_after and streak.raised != "critical":
            streak.raised = "critical"
        elif streak.raised is None:
            streak.raised = "warning"
        else:
            return None
        best = max(relevance for _, relevance in streak.recent)
        shown = "; ".join(_short(a.target or a.arguments, 40) for a, _ in streak.recent)
        where = f"the objective of step {turn.step!r}" if turn.step else "the goal"
        return Alert(
            monitor=self.name,
            kind="drifting",
            severity=streak.raised,
            message=(
                f"the last {streak.length} actions have nothing to do with {where} "
                f"{_short(objective)!r} (best similarity {best:.2f} < {self.threshold:.2f}): "
                f"{shown}"
            ),
            evidence=tuple(a.seq for a, _ in streak.recent),
            suggestion=(
                f"Return to the objective: {_short(objective, 120)}. Say how your next "
                "action serves it, or finish if it is done."
            ),
            step=turn.step or None,
            round=turn.round,
            turn=turn.index,
        )

    def _reference_vectors(self, objective: str, goal: str) -> list[Sequence[float]]:
        key = f"{objective}\x00{goal}"
        if key not in self._references:
            texts = _passages(objective) + (_passages(goal) if goal and goal != objective else [])
            self._references[key] = self.embedder.embed(texts)
        return self._references[key]

    def foresee(self, turn: Turn, facts: RunFacts) -> None:
        """Have ``turn``'s longer texts embedded ahead, elsewhere, while its tool calls
        run (``turn`` as the model answered it, before any call ended): when
        :meth:`observe` judges the turn, the vectors may be there already
        (:mod:`trestle.monitors.embedworker`). Only a turn that calls a tool outside
        ``QUICK_TOOLS`` (a command, the tests, a search, another's tool) gives the worker
        the time to. Nothing here changes what it decides."""
        embedder = self.embedder
        if not isinstance(embedder, HashingEmbedder) or not turn.text.strip():
            return
        if all(action.tool in QUICK_TOOLS for action in turn.actions):
            return  # judged before the worker could be done: embedded then, as without it
        objective = facts.objectives.get(turn.step, "") or facts.goal
        if not objective.strip():
            return
        references = self._reference_vectors(objective, facts.goal)
        for action in turn.actions:
            if action.kind in ("test", "finish"):
                continue
            core, whole = _compared(action, turn.text)
            if not has_words(whole):
                continue
            # the action alone is cheap to embed, and says whether the reasoning will
            # be: kept for observe, it is not embedded twice
            (alone,) = embedder.embed([core])
            embedder.foresee(core, Ready(alone))
            if max(cosine(alone, r) for r in references) < self.threshold:
                send_ahead(embedder, whole)

    def _relevance(
        self, action: Action, reasoning: str, references: list[Sequence[float]]
    ) -> float | None:
        if action.kind in ("test", "finish"):
            return None
        core, whole = _compared(action, reasoning)
        if not has_words(whole):
            return None
        best = max(cosine(v, r) for v in self.embedder.embed([core]) for r in references)
        if best >= self.threshold or not reasoning.strip():
            # related on its own: the reasoning could only raise the score, and only
            # whether it passes the threshold counts (a related action's score is not
            # shown), so the longer text is not embedded
            return best
        return max(best, *(cosine(v, r) for v in self.embedder.embed([whole]) for r in references))


class ClaimMonitor:
    """A step that claimed it was done but failed its checks: hallucinated success.

    The first in a run is a warning, the second critical; the step's own verification
    already makes it retry, so this is about the agent's reliability, not the step.
    """

    name = "claims"

    def __init__(self) -> None:
        self._claims = 0

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if not isinstance(item, StepEnd) or not item.claimed_done or not item.failed_checks:
            return []
        self._claims += 1
        if self._claims > 2:
            return []
        checks = ", ".join(item.failed_checks)
        count = "" if self._claims == 1 else " (the second false claim in this run)"
        return [
            Alert(
                monitor=self.name,
                kind="hallucinated_success",
                severity="warning" if self._claims == 1 else "critical",
                message=(
                    f"step {item.step!r} (attempt {item.attempt}) claimed done, "
                    f"check failed: {checks}{count}"
                ),
                evidence=(item.seq,),
                suggestion=(
                    f"Do not finish until {checks} passes: run it yourself, read its "
                    "output, and fix what it reports."
                ),
                step=item.step,
            )
        ]


def semantic_cost_timing_monitors(embedder: Embedder | None = None) -> list[Monitor]:
    """Fresh scope, drift, claim, cost, duration and stall monitors for one run.

    Args:
        embedder: for the drift monitor; the :class:`HashingEmbedder` when None.
    """
    return [
        ScopeMonitor(),
        RelevanceMonitor(embedder or HashingEmbedder()),
        ClaimMonitor(),
        CostMonitor(),
        DurationMonitor(),
        StallMonitor(),
    ]
