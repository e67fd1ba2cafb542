"""The garbage collector's pause while a resume loads: counted, and never left off; what
a driving command loaded, set aside once its work begins."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from trestle.support import collector


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_the_collector_waits_inside_a_pause_and_runs_again_after_it() -> None:
    with collector.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads_end_with_the_last() -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def second() -> None:
        first_in.wait()
        with collector.paused():
            second_in.set()
            first_out.wait()
            seen.append(gc.isenabled())  # the first pause has ended, this one has not

    thread = threading.Thread(target=second)
    thread.start()
    with collector.paused():
        first_in.set()
        second_in.wait()
    first_out.set()
    thread.join()
    assert seen == [False]
    assert gc.isenabled()


def test_a_program_that_turned_the_collector_off_keeps_it_off() -> None:
    gc.disable()
    with collector.paused(), collector.paused():
        pass
    assert not gc.isenabled()


def test_an_error_inside_a_pause_still_ends_it() -> None:
    with pytest.raises(RuntimeError), collector.paused():
        raise RuntimeError("loading failed")
    assert gc.isenabled()


def _in_a_fresh_interpreter(code: str, cwd: Path) -> list[str]:
    """The lines ``code`` writes to stderr, run by a Python of its own: a freeze lasts
    as long as the process, which must not be this test worker."""
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def test_what_was_loaded_is_set_aside_and_garbage_made_after_is_still_collected(
    tmp_path: Path,
) -> None:
    said = _in_a_fresh_interpreter(
        "import gc, sys, weakref\n"
        "from trestle.support import collector\n"
        "class Node: pass\n"
        "before = Node(); before.me = before; seen_before = weakref.ref(before); del before\n"
        "collector.set_aside_loaded()\n"
        "after = Node(); after.me = after; seen_after = weakref.ref(after); del after\n"
        "gc.collect()\n"
        "print(gc.get_freeze_count() > 0, seen_before() is not None, seen_after() is None,"
        " file=sys.stderr)\n",
        tmp_path,
    )
    # a cycle that was already garbage is set aside with the rest (so it is called once
    # what exists is what the command loaded); one made after is collected as ever
    assert said == ["True True True"]


def test_a_driving_command_sets_aside_what_it_loaded_before_its_work(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(
        "version: 1\ngoal: one\nsteps:\n  - id: a\n    run: 'true'\n"
    )
    said = _in_a_fresh_interpreter(
        "import gc, sys\n"
        "from trestle.cli.app import main\n"
        "sys.argv = ['trestle', 'run', 'plan.yaml']\n"
        "print(gc.get_freeze_count(), file=sys.stderr)\n"
        "try:\n    main()\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print(gc.get_freeze_count(), file=sys.stderr)\n",
        tmp_path,
    )
    # nothing is set aside by importing the command line; by its end the run's driver
    # has set aside the engine, the events and the rest it imported to drive
    assert int(said[0]) == 0 and int(said[-1]) > 30_000, said
