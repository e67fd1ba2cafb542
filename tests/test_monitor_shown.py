"""What an attempt was shown, remembered within bounds and once for the monitors that
share it, and monitors whose state stops growing with a long attempt (their state is
saved with every snapshot of an agent run)."""

from __future__ import annotations

import pickle

from trestle.monitors import saved
from trestle.monitors.alerts import Monitor
from trestle.monitors.loops import CycleMonitor, RepeatMonitor, behaviour_monitors
from trestle.monitors.progress import ProgressMonitor
from trestle.monitors.shown import LineMemory, ShownLines
from trestle.monitors.trace import Action, Observation, RunFacts, StepEnd, Turn

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


def look(path: str, seq: int, first: int = 1, last: int = 30) -> Action:
    """A view of lines ``first`` to ``last`` of ``path``."""
    output = "\n".join(f"{path} says {_letters(n)}" for n in range(first, last + 1))
    return Action(seq=seq, tool="view", kind="read", arguments=path, target=path, output=output)


def wandering() -> list[Observation]:
    """Two steps' attempts going round their files, a turn of two views, a turn given
    twice, a step's end and its next round looking at the same files again."""
    items: list[Observation] = []
    for step, files in (("s", ("a.py", "b.py")), ("t", ("c.py", "d.py", "e.py"))):
        for index in range(30):
            seq = 1000 * len(items) + 1
            path = files[index % len(files)]
            actions = [look(path, seq + 1, 1 + index % 2)]
            if index % 7 == 3:  # the same file again in the same turn, further down
                actions.append(look(path, seq + 2, 20, 60))
            turn = Turn(index=index, seq=seq, step=step, actions=tuple(actions))
            items += [turn, turn] if index == 10 else [turn]
    items.insert(40, StepEnd(seq=40_000, step="s", attempt=1, ok=False, seconds=1.0))
    again = [look("a.py", 90_001 + i) for i in range(8)]
    items += [
        Turn(index=30 + i, seq=90_000 + i, step="s", round=2, actions=(again[i],)) for i in range(8)
    ]
    return items


def test_monitors_sharing_what_was_shown_say_what_each_with_its_own_memory_says() -> None:
    shown = ShownLines()
    shared: list[Monitor] = [CycleMonitor(shown=shown), ProgressMonitor(shown=shown)]
    alone: list[Monitor] = [CycleMonitor(), ProgressMonitor()]
    said: list[list[str]] = [[], []]
    for item in wandering():
        for monitors, out in zip((shared, alone), said, strict=True):
            out += [a.key + a.severity for m in monitors for a in m.observe(item, FACTS)]
    assert said[0] == said[1]
    assert {key.split("/")[0] for key in said[0]} == {"cycle", "progress"}


def test_the_default_set_holds_and_saves_one_memory_of_what_was_shown() -> None:
    monitors = behaviour_monitors()
    for item in wandering()[:40]:  # the step's attempt still open
        for monitor in monitors:
            monitor.observe(item, FACTS)
    cycle, progress = (next(m for m in monitors if m.name == n) for n in ("cycle", "progress"))
    assert vars(cycle)["_shown"] is vars(progress)["_shown"]
    memory = vars(progress)["_shown"]._memories.of(wandering()[0])
    assert isinstance(memory, LineMemory) and len(memory) > 30
    data = pickle.dumps([saved._state_of(m) for m in monitors])
    assert data.count(memory.__getstate__()["lines"]) == 1  # its digests, saved once
    again = pickle.loads(data)
    states = dict(zip([m.name for m in monitors], again, strict=True))
    assert states["cycle"]["_shown"] is states["progress"]["_shown"]
