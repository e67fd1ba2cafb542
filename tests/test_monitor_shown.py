"""What an attempt was shown, remembered within bounds, and monitors whose state stops
growing with a long attempt (their state is saved with every snapshot of an agent run)."""

from __future__ import annotations

import pickle

from trestle.monitors import saved
from trestle.monitors.alerts import Monitor
from trestle.monitors.loops import CycleMonitor, RepeatMonitor
from trestle.monitors.progress import ProgressMonitor
from trestle.monitors.shown import LineMemory
from trestle.monitors.trace import Action, RunFacts, Turn

FACTS = RunFacts(goal="read the notes")


def test_lines_count_as_new_until_shown_and_the_oldest_are_forgotten_first() -> None:
    memory = LineMemory(capacity=4)
    assert memory.show([1, 2, 3]) == 3
    assert memory.show([2, 3, 4]) == 1
    assert memory.show([1]) == 0  # shown again: now the newest
    assert memory.show([5]) == 1  # 2 is the oldest, and goes
    assert len(memory) == 4
    assert memory.show([1, 3, 4, 5]) == 0
    assert memory.show([2]) == 1


def test_a_memory_saved_and_read_back_forgets_in_the_same_order() -> None:
    memory = LineMemory(capacity=4)
    memory.show([2**64 - 1, 0, 7])
    memory.show([2**64 - 1])  # the newest now; 0 is the oldest
    again = pickle.loads(pickle.dumps(memory))
    assert again.capacity == 4 and list(again._lines) == [0, 7, 2**64 - 1]
    for kept in (memory, again):
        assert kept.show([8, 9]) == 2  # 0 goes
        assert kept.show([0, 7]) == 1
    assert list(again._lines) == list(memory._lines)


def _letters(number: int) -> str:
    """``number`` spelt in letters: numbers are all alike to the monitors."""
    return "".join("abcdefghij"[int(d)] for d in str(number))


def read(index: int, lines: int = 50) -> Turn:
    """Turn ``index`` reads a file of its own: every line new."""
    output = "\n".join(f"part {_letters(index * 1000 + i)} of the notes" for i in range(lines))
    action = Action(
        seq=10 * index + 1,
        tool="read_file",
        kind="read",
        arguments=f'{{"path": "notes/n{index}.txt"}}',
        target=f"notes/n{index}.txt",
        ok=True,
        output=output,
    )
    return Turn(index=index, seq=10 * index, step="s", round=1, text="", actions=(action,))


def test_a_long_reading_attempts_monitor_state_stops_growing() -> None:
    monitors: list[Monitor] = [ProgressMonitor(), CycleMonitor(), RepeatMonitor()]
    sizes = []
    for index in range(1, 2401):
        for monitor in monitors:
            assert monitor.observe(read(index), FACTS) == []  # reading on: nothing to say
        if index in (1200, 2400):
            sizes.append([len(pickle.dumps(saved._state_of(m))) for m in monitors])
    half, whole = sizes
    for monitor, a, b in zip(monitors, half, whole, strict=True):
        assert b < a * 1.1, (monitor.name, a, b)
