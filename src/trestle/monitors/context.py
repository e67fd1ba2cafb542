"""The context monitor: a conversation about to outgrow the model's context window.

A run that overflows its model's context ends at once, whatever budget it has left,
often a few calls after an observation of tens of thousands of characters. What the
next call will hold is known before it is made: the context so far plus what the next
observation adds. This monitor keeps both, per step attempt (a new round is a fresh
conversation):

- the context's size in tokens: the prompt tokens of the latest call that reported
  them (:attr:`~trestle.monitors.trace.Turn.prompt_tokens`: the provider's count, or
  in a live run the offline estimate of the request as sent, recorded with the call
  whether or not the model reported usage), plus what came after it (the model's
  reply, its tool arguments, the observations). The request as sent is what the
  runtime's compression left of the conversation (:mod:`trestle.agent.context`), so
  a long run that compresses is not taken for one that holds every turn; the estimate
  is the one compression keeps under the agent's ``context`` limit (four characters a
  token), so the two agree on how full the conversation is. Where no call gave its
  prompt's size (an imported recording without usage, a run recorded before calls
  carried the estimate), the size is estimated from the start: ``base_tokens`` for
  the system prompt and the tool definitions a recording does not show, the goal, and
  everything since, compression unseen. Characters become tokens at
  :data:`CHARS_PER_TOKEN`, three a token: the conversations of real coding runs that
  report their prompt tokens hold 3.2 (OpenHands, Claude 3.5 Sonnet) and 3.4
  (mini-swe-agent, Gemini 3 Pro) characters a token at the median, 2.5 to 4.2 in all.
  That is fewer than the four a token the runtime's offline budget estimate assumes
  (:mod:`trestle.core.estimate`): code, JSON and tool output are dense, and an
  estimate that errs here should err towards seeing the overflow early;
- the likely next observation: the largest of the last ``lookback`` turns'
  observations (whole, not as an importer shortened them), since an agent paging
  through large outputs keeps doing so;
- the window: ``window`` when given (``[monitors] context_window``), else the known
  window of the run's model (:func:`~trestle.monitors.windows.window_of`), else
  :data:`~trestle.monitors.windows.DEFAULT_WINDOW`.

``warning`` once the context plus the likely next observation passes ``warn_share`` of
the window (by default the warning is told to the agent, which can still page instead
of printing); ``critical`` once it passes the whole window, so the next such call would
overflow (by default the run pauses for a human). Each level is raised once per
attempt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from trestle.core.errors import ConfigError
from trestle.core.records.monitors import Alert
from trestle.core.safetext import MAX_ARGUMENTS
from trestle.monitors.attempt import GRADES, Attempts, turn_alert
from trestle.monitors.trace import Observation, RunFacts, Turn
from trestle.monitors.windows import DEFAULT_WINDOW, window_of

# the system prompt and the tool definitions, which a recorded conversation rarely shows
BASE_TOKENS = 2_000
CHARS_PER_TOKEN = 3  # of a coding agent's conversation (see the module docstring)
OMITTED_NOTE_CHARS = 80  # the note a refused, unread oversized call is sent back as


@dataclass
class _Conversation:
    started: bool = False
    anchor: int = 0  # tokens at the latest call that reported its prompt (or the start)
    since: int = 0  # characters added after it
    recent: deque[tuple[int, int]] = field(default_factory=deque)  # (turn seq, tokens shown)
    level: int = 0  # 1: warned, 2: critical


def tokens_of(chars: int) -> int:
    """Characters as tokens, by the offline estimate (rounded up)."""
    return -(-chars // CHARS_PER_TOKEN)


def sent_chars(arguments: str) -> int:
    """Characters a call's arguments add to the conversation: a call too large to read is
    sent back as a short note, not whole (``ModelReply.to_message``)."""
    return len(arguments) if len(arguments) <= MAX_ARGUMENTS else OMITTED_NOTE_CHARS


def shown_chars(turn: Turn) -> int:
    """Characters the turn's observations added to the conversation, whole."""
    return sum(max(a.output_chars, len(a.output)) for a in turn.actions)


class ContextMonitor:
    """The context plus the likely next observation against the window (see the module).

    Args:
        window: the model's context window in tokens; None: by the run's model.
        warn_share: share of the window that, passed, makes a warning.
        lookback: turns whose largest observation is taken as the likely next one.
        base_tokens: tokens assumed before the first turn when no call reported its
            prompt (system prompt and tool definitions).
    """

    name = "context"

    def __init__(
        self,
        *,
        window: int | None = None,
        warn_share: float = 0.9,
        lookback: int = 3,
        base_tokens: int = BASE_TOKENS,
    ) -> None:
        if window is not None and window <= 0:
            raise ConfigError(f"context monitor: window must be positive, got {window!r}")
        if not 0 < warn_share < 1:
            raise ConfigError(f"context monitor: warn_share must be in (0, 1), got {warn_share!r}")
        if lookback < 1:
            raise ConfigError(f"context monitor: lookback must be at least 1, got {lookback!r}")
        self.window = window
        self.warn_share = warn_share
        self.lookback = lookback
        self.base_tokens = base_tokens
        self._attempts: Attempts[_Conversation] = Attempts(_Conversation)

    def window_for(self, facts: RunFacts) -> tuple[int, str]:
        """The window in tokens, and it described with where it comes from."""
        if self.window is not None:
            return self.window, f"the configured {self.window:,}-token window"
        known = window_of(facts.model)
        if known is not None:
            return known, f"the {known:,}-token window of {facts.model}"
        return DEFAULT_WINDOW, f"the assumed {DEFAULT_WINDOW:,}-token window"

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        current = self._attempts.current(item)
        if current is None:
            return []
        turn, talk = current
        reported = turn.prompt_tokens > 0
        if reported:
            talk.anchor, talk.since = turn.prompt_tokens, 0
        elif not talk.started:
            talk.anchor = self.base_tokens + tokens_of(len(facts.goal))
        talk.started = True
        shown = shown_chars(turn)
        talk.since += len(turn.text) + sum(sent_chars(a.arguments) for a in turn.actions) + shown
        talk.recent.append((turn.seq, tokens_of(shown)))
        while len(talk.recent) > self.lookback:
            talk.recent.popleft()
        size = talk.anchor + tokens_of(talk.since)
        # the largest recent observation (the latest of equals)
        seq_next, next_tokens = max(reversed(talk.recent), key=lambda pair: pair[1])
        window, described = self.window_for(facts)
        projected = size + next_tokens
        level = 2 if projected > window else 1 if projected > self.warn_share * window else 0
        if level <= talk.level:
            return []
        talk.level = level
        how = (
            "estimated"
            if not reported
            else "as estimated from the last request sent"
            if turn.prompt_estimated
            else "as the model counted its last prompt"
        )
        verdict = "past the window" if level == 2 else f"over {self.warn_share:.0%} of it"
        return [
            turn_alert(
                turn,
                monitor=self.name,
                kind="context_pressure",
                severity=GRADES[level],
                message=(
                    f"the context holds about {size:,} tokens ({how}) of {described} "
                    f"({size / window:.0%}); the largest of the last "
                    f"{len(talk.recent)} observations took {next_tokens:,}, so one more like "
                    f"it would bring it to {projected:,}, {verdict}"
                ),
                seqs=(seq_next,),
                suggestion=(
                    f"About {max(window - size, 0):,} tokens of context are left: do not "
                    "print whole files or long outputs again; read a line range, grep, or "
                    "pipe through head, and finish the change with what you know."
                ),
            )
        ]
