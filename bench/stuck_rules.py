"""OpenHands' stuck detector, as its documentation describes it, as a Trestle monitor.

Written here from the published description of the rules (the OpenHands SDK guide
"Stuck Detector" and the thresholds its issue tracker lists), not from its code, so
that ``bench/monitors_real.py`` can run it beside Trestle's monitors on the same
imported runs. Each rule looks at the tail of the run, as OpenHands does, and flags
(critical: OpenHands stops the run) when:

1. the same action got the same observation 4 times in a row;
2. the same action ended in an error 3 times in a row (an error observation: a tool
   refusing the call or a timeout, not a command's non-zero exit, which OpenHands
   reports as ordinary command output);
3. the agent sent 3 messages in a row with no action or observation between them;
4. two different action-observation pairs alternated over the last 6 steps
   (A, B, A, B, A, B);
5. the context window overflowed again and again. None of the imported formats
   records a condensation or a context-window error as an event, so this rule never
   fires here; it is listed so that its absence is visible.

Actions are compared by tool and arguments, observations by their text, as exactly
as the files give them (OpenHands ignores only ids and timestamps).
"""

from __future__ import annotations

from dataclasses import dataclass

from trestle.core.records.monitors import Alert
from trestle.monitors.trace import Observation, RunFacts, Turn

SAME_PAIR_TIMES = 4
SAME_ERROR_TIMES = 3
MONOLOGUE_MESSAGES = 3
ALTERNATION_STEPS = 6


@dataclass(frozen=True)
class _Step:
    """One event pair of the run: an action and its observation, or a bare message."""

    action: str  # "" for an agent message with no action
    observation: str
    error: bool


def _is_error(error: str | None) -> bool:
    return error is not None and not error.startswith("exit code")


class StuckRules:
    """OpenHands' documented stuck rules (see the module); flags once, critical."""

    name = "openhands_stuck"

    def __init__(self) -> None:
        self._steps: list[_Step] = []
        self._fired = False

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if not isinstance(item, Turn) or self._fired:
            return []
        if not item.actions and item.text.strip() and item.problem is None:
            self._steps.append(_Step("", "", False))
        for action in item.actions:
            self._steps.append(
                _Step(
                    f"{action.tool}\0{action.arguments}",
                    f"{action.output}\0{action.error or ''}",
                    _is_error(action.error),
                )
            )
        rule = self._rule()
        if rule is None:
            return []
        self._fired = True
        return [
            Alert(
                monitor=self.name,
                kind=rule,
                severity="critical",
                message=f"stuck: {rule}",
                evidence=(item.seq,),
                suggestion="OpenHands stops the run here.",
                turn=item.index,
            )
        ]

    def _rule(self) -> str | None:
        steps = self._steps
        tail = steps[-SAME_PAIR_TIMES:]
        if len(tail) == SAME_PAIR_TIMES and tail[0].action and all(s == tail[0] for s in tail):
            return "repeating_action_observation"
        tail = steps[-SAME_ERROR_TIMES:]
        if (
            len(tail) == SAME_ERROR_TIMES
            and tail[0].action
            and all(s.action == tail[0].action and s.error for s in tail)
        ):
            return "repeating_action_error"
        tail = steps[-MONOLOGUE_MESSAGES:]
        if len(tail) == MONOLOGUE_MESSAGES and all(not s.action for s in tail):
            return "monologue"
        tail = steps[-ALTERNATION_STEPS:]
        if (
            len(tail) == ALTERNATION_STEPS
            and tail[0].action
            and tail[1].action
            and tail[0] != tail[1]
            and all(tail[i] == tail[i % 2] for i in range(ALTERNATION_STEPS))
        ):
            return "alternating_pattern"
        return None
