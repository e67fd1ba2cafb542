"""The watchdog that kills a dead driver's sandboxes: a real helper process, real
processes carrying tokens, a driver killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from trestle.execution.watchdog import TOKEN_VAR, carrying

# A driver that registers two commands, loses its helper to a stray kill, registers a
# third (which starts a new helper), then waits to be killed.
DRIVER = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    from trestle.execution.watchdog import WATCHDOG
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


# A driver that registers a command which takes its token only a moment later (a shell
# that sleeps, then execs with it), then waits to be killed: /proc shows a process's new
# environment only once its exec is done, so the helper's first look finds nothing.
LATE_DRIVER = textwrap.dedent(
    """
    import subprocess, time
    from trestle.execution.watchdog import WATCHDOG
    guard = WATCHDOG.guard({})
    env = guard.__enter__()
    script = f"sleep 0.2; exec env TRESTLE_CELL_ID={env['TRESTLE_CELL_ID']} sleep 60"
    subprocess.Popen(["sh", "-c", script], start_new_session=True)
    print(env["TRESTLE_CELL_ID"], flush=True)
    time.sleep(60)
    """
)


def test_a_command_that_takes_its_token_just_after_the_driver_died_is_killed() -> None:
    driver = subprocess.Popen(
        [sys.executable, "-c", LATE_DRIVER], stdout=subprocess.PIPE, text=True
    )
    assert driver.stdout is not None
    token = driver.stdout.readline().strip()
    driver.send_signal(signal.SIGKILL)  # its sandbox still registered, not yet carrying it
    driver.wait()
    try:
        time.sleep(0.3)  # the command has taken its token by now, or been killed
        end = time.monotonic() + 10
        while carrying({token}) and time.monotonic() < end:
            time.sleep(0.05)
        assert not carrying({token}), "a command that took its token late survived"
    finally:
        for pid in carrying({token}):
            os.kill(pid, signal.SIGKILL)


def test_the_token_marks_the_environment_exactly() -> None:
    marked = subprocess.Popen(["sleep", "30"], env={TOKEN_VAR: "abc"})
    try:
        # Popen returns once the exec has begun; the new environment shows a moment later
        end = time.monotonic() + 10
        while not carrying({"abc"}) and time.monotonic() < end:
            time.sleep(0.01)
        assert carrying({"abc"}) == {marked.pid}
        assert carrying({"ab"}) == set()  # a prefix is another token
    finally:
        marked.kill()
        marked.wait()
