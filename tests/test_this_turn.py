"""``ThisTurn``: a value made once per turn of the running event loop, for every caller in
that turn; made again in the next turn, in another loop, and by a caller with no loop."""

from __future__ import annotations

import asyncio
import functools
import threading

from trestle.support.this_turn import ThisTurn


def _counting() -> tuple[ThisTurn[int], list[str]]:
    made: list[str] = []
    return ThisTurn(), made


def test_callers_in_one_turn_share_what_the_first_made_and_the_next_turn_makes_it_again() -> None:
    turn, made = _counting()

    def make(label: str) -> int:
        made.append(label)
        return len(made)

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        seen: list[int] = []
        # three callbacks of one turn, then one of the next (scheduled by the first)
        loop.call_soon(lambda: seen.append(turn.get("ws", lambda: make("a"))))
        loop.call_soon(lambda: seen.append(turn.get("ws", lambda: make("b"))))
        loop.call_soon(lambda: seen.append(turn.get("other", lambda: make("c"))))
        await asyncio.sleep(0)  # the three run
        await asyncio.sleep(0)  # the turn after them
        seen.append(turn.get("ws", lambda: make("d")))
        return seen

    assert asyncio.run(main()) == [1, 1, 2, 3]
    assert made == ["a", "c", "d"]


def test_in_the_next_turn_only_what_was_queued_before_the_value_was_made_shares_it() -> None:
    """What runs in the next turn before the value is let go was queued before it was
    made, so it can know nothing newer than the value; what was queued after (a thread's
    answer, a process's exit) runs after the let-go and makes its own."""
    turn, made = _counting()

    def make(label: str) -> int:
        made.append(label)
        return len(made)

    async def main() -> tuple[int, list[tuple[str, int]]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, int]] = []
        loop.call_soon(lambda: seen.append(("before", turn.get("ws", lambda: make("b")))))
        value = turn.get("ws", lambda: make("here"))
        loop.call_soon(lambda: seen.append(("after", turn.get("ws", lambda: make("a")))))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return value, seen

    assert asyncio.run(main()) == (1, [("before", 1), ("after", 2)])
    assert made == ["here", "a"]


def test_without_a_running_loop_every_caller_makes_its_own() -> None:
    turn, made = _counting()

    def make(label: str) -> int:
        made.append(label)
        return len(made)

    assert [turn.get("ws", functools.partial(make, label)) for label in "ab"] == [1, 2]


def test_loops_on_two_threads_do_not_share() -> None:
    turn: ThisTurn[str] = ThisTurn()
    both = threading.Barrier(2)
    got: dict[str, str] = {}

    def drive(name: str) -> None:
        async def main() -> str:
            value = turn.get("ws", lambda: name)
            await asyncio.to_thread(both.wait, 10)  # both have made theirs in a turn
            return value

        got[name] = asyncio.run(main())

    threads = [threading.Thread(target=drive, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert got == {"one": "one", "two": "two"}


def test_a_loop_closed_before_its_next_turn_is_let_go_of_past_the_limit() -> None:
    turn: ThisTurn[int] = ThisTurn()
    for n in range(100):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(_made_then_stopped(turn, loop, n))
        loop.close()
    assert len(turn._held) <= 64


async def _made_then_stopped(turn: ThisTurn[int], loop: asyncio.AbstractEventLoop, n: int) -> None:
    turn.get("ws", lambda: n)
    loop.stop()  # the loop ends with this turn: the value is never let go by a next one
