"""Real agents' text for the scripted agent loop, in place of its random characters.

The loop's turns (:func:`agentturns.turn_text`) are random characters drawn from a
67-letter alphabet: every word is new, which is the drift monitor's costliest case,
and the text compresses to 0.76 of its size whatever zlib is asked for, so the time
compression takes on real output (source files, test logs, diffs: a third of their
size and more work to find it) never shows. :func:`use_real_text` makes turn ``i``
the ``i``-th turn of the shared trajectories that has both reasoning and an
observation (the model's text and what its first action printed, as the importers
keep them: an observation at most 8,000 characters), each observation once.
"""

from __future__ import annotations

from pathlib import Path

import agentturns

ROOT = Path(__file__).resolve().parents[2] / "shared" / "trajectories"
MIN_CHARS = 200  # a turn with less reasoning or observation than this is passed over


def real_turns(root: Path = ROOT, limit: int = 2_000) -> list[tuple[str, str]]:
    """Up to ``limit`` (reasoning, observation) pairs from the runs under ``root``, in
    the order of the runs' names and their turns; no observation twice (a file read
    twice would be stored once, and the loop reads each note once).

    Raises:
        ValueError: ``root`` is no folder, or a file under it is no trajectory."""
    from trestle.core.errors import ConfigError
    from trestle.monitors.corpus import load_runs
    from trestle.monitors.trace import Turn

    if not root.is_dir():
        raise ValueError(f"{root}: no such folder of trajectories")
    try:
        runs = load_runs([root]).runs
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for run in sorted(runs, key=lambda run: run.name):
        for turn in run.observations:
            if not isinstance(turn, Turn) or not turn.actions:
                continue
            said, shown = turn.text, turn.actions[0].output
            if len(said) < MIN_CHARS or len(shown) < MIN_CHARS or shown in seen:
                continue
            seen.add(shown)
            pairs.append((said, shown))
            if len(pairs) == limit:
                return pairs
    return pairs


def use_real_text(root: Path = ROOT, turns: int = 2_000) -> None:
    """From now on (and in children forked after), turn ``i`` is a real turn's text.

    Raises:
        ValueError: ``root`` is no folder, or holds fewer than ``turns`` such turns."""
    pairs = real_turns(root, turns)
    if len(pairs) < turns:
        raise ValueError(
            f"{root}: {len(pairs)} turns with {MIN_CHARS} characters or more of both "
            f"reasoning and observation, {turns} wanted"
        )
    agentturns.use_texts(pairs)
