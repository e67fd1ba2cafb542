"""The approval gate: under which tier may a step's next attempt start, and does a human
have to approve it first?

Pure. The decider asks :func:`judge` before every attempt (first runs, retries and
re-runs alike). A step whose tier needs a human starts only with a recorded approval
of the *exact* action: the approval stores a hash of the action, and an action that
changed since (a human's edit, a plan revision) hashes differently and is asked again.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from trestle.core.approvers import similar_reaches
from trestle.core.events import Gate
from trestle.core.invocations import SHELLS, WRAPPERS
from trestle.core.memo import ByIdentity
from trestle.core.plan import Step
from trestle.core.policy import ActionFacts, Nature, TierDecision, action_hash, classify
from trestle.core.shellparse import parse as parse_shell
from trestle.core.state import RunState
from trestle.core.step_state import StepState

NATURES: dict[str, Nature] = {
    "run": "command",
    "write": "write",
    "python": "call",
    "agent": "call",
    "delegate": "call",  # the child's own actions pass its own gate
}


def step_facts(step: Step, st: StepState, alerts: int = 0) -> ActionFacts:
    """What the policy judges a plan step by; ``alerts`` are the open monitor alerts
    on it (:meth:`~trestle.core.state.RunState.open_alerts`), which lower its
    confidence as its failed attempts do."""
    return ActionFacts(
        nature=NATURES[step.action_kind],
        name=step.id,
        command=step.run,
        paths=(step.write.path,) if step.write is not None else (),
        irreversible=step.irreversible,
        tags=step.tags,
        cost=step.cost,
        confidence=step.confidence,
        failed_attempts=st.failed_attempts,
        alerts=alerts,
        tier=step.approval,
    )


# ``action_hash`` of a step's action: the decider and the engine both hash an attempt's
# action, and a step is frozen, so it is computed once per step object
action_digest: ByIdentity[Step, str] = ByIdentity(
    lambda step: action_hash(step.action_payload()), size=100_000
)


NOT_SIMILAR = "once"
"""The head of a similar-key that ``--similar`` never extends to (see :func:`similar_key`)."""

_MESSAGE_OPTIONS = frozenset({"-m", "--message"})
_MESSAGE_SUBCOMMANDS = frozenset({"commit", "tag", "merge", "notes", "stash"})
_LAUNCHERS = frozenset({*WRAPPERS, *SHELLS, "eval", "find", "exec", "source", ".", "coproc"})


def command_signature(command: str) -> tuple[str, ...] | None:
    """The words of ``command`` that ``--similar`` holds fixed, or None if it cannot.

    Only one simple command, with no wrapper, substitution, assignment, here-document,
    redirection to a file or expansion, has a signature: its program as written and
    every word in order, except that a git commit or tag message (``-m``,
    ``--message``) becomes ``<message>``. Anything else is approved one action at a time.
    """
    script = parse_shell(command)
    if script.unknown or script.substitutions or len(script.commands) != 1:
        return None
    (simple,) = script.commands
    if simple.assignments or simple.heredoc or not simple.words:
        return None
    for redirect in simple.redirects:
        if redirect.writes and redirect.target.value not in ("/dev/null", "&1", "1", "2"):
            return None
        if not redirect.writes and redirect.op != ">&":
            return None
    if any(w.dynamic or w.tilde for w in simple.words):
        return None
    words = [w.value for w in simple.words]
    if PurePosixPath(words[0]).name in _LAUNCHERS:
        return None
    if PurePosixPath(words[0]).name == "git" and _MESSAGE_SUBCOMMANDS & set(words[1:]):
        words = _without_messages(words)
    return tuple(words)


def _without_messages(words: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        short = word.startswith("-m") or (
            word.startswith("-") and not word.startswith("--") and "m" in word[1:]
        )
        if word in _MESSAGE_OPTIONS or (short and word.endswith("m")):
            out += [word, "<message>"]
            i += 2
            continue
        if word.startswith("--message="):
            out.append("--message=<message>")
        elif short and not word.endswith("m"):
            out.append(word[: word.index("m", 1) + 1] + "<message>")  # '-qmtext'
        else:
            out.append(word)
        i += 1
    return out


def moved_files(approved: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The paths whose content differs between two records of the files a command
    names (``trestle.execution.named_files``): changed, appeared or gone."""
    return sorted(p for p in {*approved, *now} if approved.get(p) != now.get(p))


def similar_key(decision: TierDecision, facts: ActionFacts, call: str | None) -> str:
    """What "approve similar" extends to: actions asked for the same rule, of the same
    nature, and with the same command signature (:func:`command_signature`: program,
    subcommand, options and arguments; only a commit message may differ) run in the
    same directory (``git push`` in another of the workspace's repositories is another
    push), folder (a write) or module (a call). A command without a signature gets a key
    headed :data:`NOT_SIMILAR`, which no later action is matched against."""
    if facts.command is not None:
        signature = command_signature(facts.command)
        head = NOT_SIMILAR if signature is None else json.dumps(signature)
        if facts.cwd is not None and signature is not None:
            head = f"{json.dumps(facts.cwd)}:{head}"
    elif facts.paths:
        head = str(PurePosixPath(facts.paths[0]).parent)
    elif call is not None:
        head = call.partition(":")[0]
    else:
        head = facts.name
    return f"{decision.source}|{facts.nature}|{head}"


def similar_approval(approved: Mapping[str, int], key: str) -> int | None:
    """The ``--similar`` approval (of a run's ``similar_approved``) that covers an action
    with similar-key ``key``, if any."""
    if key.rsplit("|", 1)[-1] == NOT_SIMILAR:
        return None
    return approved.get(key)


def similar_scope(facts: ActionFacts, call: str | None) -> str:
    """What ``approve --similar`` would also approve, in words, for the approval card."""
    if facts.command is not None:
        signature = command_signature(facts.command)
        if signature is None:
            return (
                "approves nothing more: this command is not one plain simple command (it chains, "
                "wraps, substitutes or redirects), so each such command is asked on its own"
            )
        shown = " ".join(shlex.quote(w) if w != "<message>" else w for w in signature)
        free = " with any message" if "<message>" in signature else ""
        where = f" run in {facts.cwd!r}" if facts.cwd is not None else ""
        return (
            f"also approves later commands asked for the same reason that are exactly "
            f"`{shown}`{free}{where}"
        )
    if facts.paths:
        folder = str(PurePosixPath(facts.paths[0]).parent)
        return f"also approves later writes asked for the same reason in the folder {folder!r}"
    if call is not None:
        module = call.partition(":")[0]
        return f"also approves later calls asked for the same reason into the module {module!r}"
    return f"also approves later actions asked for the same reason named {facts.name!r}"


@dataclass(frozen=True)
class Judgement:
    """``gate`` when the attempt may start now; otherwise a human must be asked."""

    decision: TierDecision
    action_hash: str
    similar_key: str
    gate: Gate | None

    @property
    def needs_human(self) -> bool:
        return self.gate is None


def judge(state: RunState, sid: str, attempt: int) -> Judgement:
    step, st = state.step_spec(sid), state.steps[sid]
    facts = step_facts(step, st, state.open_alerts(sid))
    decision = classify(
        facts,
        plan=state.plan.policy,
        operator=state.operator_policy,
        run_id=state.run_id,
        action_key=f"{sid}/{attempt}",
    )
    digest = action_digest(step)
    key = similar_key(decision, facts, step.python)
    if decision.tier != "confirm" and decision.audit != "before":
        return Judgement(decision, digest, key, Gate(decision=decision, action_hash=digest))
    approval = (
        st.approval if st.approved_hash == digest else similar_approval(state.similar_approved, key)
    )
    if (
        approval is not None
        and st.approved_hash != digest
        and not similar_reaches(state, approval, sid, None, facts, decision.tier)
    ):
        approval = None  # an approver rule covers it that the similar one's did not
    if approval is None:
        return Judgement(decision, digest, key, None)
    gate = Gate(decision=decision, action_hash=digest, approval=approval)
    return Judgement(decision, digest, key, gate)
