"""The watchdog that kills a dead driver's sandboxes: a real helper process, real
processes carrying tokens, a driver killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from trestle.watchdog import TOKEN_VAR, carrying

# A driver that registers two commands, loses its helper to a stray kill, registers a
# third (which starts a new helper), then waits to be killed.
DRIVER = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    from trestle.watchdog import WATCHDOG
    first, second, third = WATCHDOG.guard({}), WATCHDOG.guard({}), WATCHDOG.guard({})
    tokens = []
    for guard in (first, second):
        env = guard.__enter__()
        tokens.append(env["TRESTLE_CELL_ID"])
        subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    second.__exit__(None, None, None)  # reaped, as far as the helper knows: not killed
    os.kill(WATCHDOG._proc.pid, signal.SIGKILL)
    WATCHDOG._proc.wait()
    env = third.__enter__()
    tokens.append(env["TRESTLE_CELL_ID"])
    subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    print(" ".join(tokens), flush=True)
    time.sleep(60)
    """
)


def test_a_dead_drivers_registered_commands_are_killed_even_after_its_helper_died() -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert driver.stdout is not None
    first, second, third = driver.stdout.readline().split()
    try:
        end = time.monotonic() + 10  # each child shows its token once it has exec'd
        while not all(carrying({t}) for t in (first, second, third)):
            assert time.monotonic() < end, "the commands never started"
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        end = time.monotonic() + 10
        while carrying({first, third}) and time.monotonic() < end:
            time.sleep(0.05)
        assert not carrying({first}), "a command registered before the helper died survived"
        assert not carrying({third}), "a command registered with the new helper survived"
        assert carrying({second}), "a command the driver had dropped was killed"
    finally:
        for pid in carrying({first, second, third}):
            os.kill(pid, signal.SIGKILL)


def test_the_token_marks_the_environment_exactly() -> None:
    marked = subprocess.Popen(["sleep", "30"], env={TOKEN_VAR: "abc"})
    try:
        assert carrying({"abc"}) == {marked.pid}
        assert carrying({"ab"}) == set()  # a prefix is another token
    finally:
        marked.kill()
        marked.wait()
