"""Running verify checks: each records what it expected, what it found, and a verdict.

Checks are meant to be reads. They run after every attempt, before every retry, and
after a crash to learn whether an attempt with no recorded outcome took effect.
"""

from __future__ import annotations

import os
import re

from trestle.core.events import CheckResult
from trestle.core.plan import (
    CallableCheck,
    Check,
    CommandCheck,
    FileContainsCheck,
    FileExistsCheck,
    Step,
    describe_check,
)
from trestle.execution.actions import (
    StepContext,
    call_python,
    in_thread,
    jailed,
    run_shell,
    step_env,
)
from trestle.support.regex_child import search_within
from trestle.support.step_threads import StepThreads
from trestle.workspace.beneath import Refused, exists_beneath, read_regular

ACTUAL_LIMIT = 500
REGEX_SECONDS = 20.0  # a file_contains regex's search, in a child stopped past it
# the most of a file a file_contains check reads: the file is the step's to make, and
# one of 100 GB (sparse, made in an instant) was read whole into the driver's memory
MAX_CHECKED_BYTES = 64 << 20


async def run_check(
    check: Check, ctx: StepContext, env: dict[str, str], pool: StepThreads | None = None
) -> CheckResult:
    what = describe_check(check)
    match check:
        case CommandCheck(command=cmd, timeout=timeout):
            result = await run_shell(
                cmd, cwd=ctx.workspace, env=env, timeout=timeout, cell=ctx.cell
            )
            actual = (
                f"exit {result.exit_code}"
                if result.status in ("ok", "failed")
                else (result.error or result.status)
            )
            tail = result.output.strip()[-ACTUAL_LIMIT:]
            if result.status != "ok" and tail:
                actual += f": {tail}"
            return CheckResult(
                check=what, expected="exit 0", actual=actual, passed=result.status == "ok"
            )
        case FileExistsCheck(file_exists=path):
            found = await in_thread(pool, _exists, ctx, path)
            return CheckResult(
                check=what, expected="exists", actual=found, passed=found == "exists"
            )
        case FileContainsCheck():
            return await in_thread(pool, _contains, ctx, check, what)
        case CallableCheck(python=ref):
            result = await call_python(ref, ctx, None, pool)
            actual = result.error or result.output or "true"
            return CheckResult(
                check=what,
                expected="true",
                actual=actual[:ACTUAL_LIMIT],
                passed=result.status == "ok",
            )
    raise AssertionError(f"unhandled check {check!r}")  # pragma: no cover


def _exists(ctx: StepContext, path: str) -> str:
    try:
        root = ctx.workspace.resolve()
        relative = os.path.relpath(jailed(root, path, follow_links=False), root)
        return "exists" if exists_beneath(root, relative) else "missing"
    except Refused as exc:
        return f"refused: {path}: {exc}"
    except (OSError, ValueError) as exc:
        return str(exc)


def _contains(ctx: StepContext, check: FileContainsCheck, what: str) -> CheckResult:
    expected = f"contains {check.text!r}" if check.text is not None else f"matches /{check.regex}/"
    try:
        root = ctx.workspace.resolve()
        path = jailed(root, check.file_contains, follow_links=False)
        # read as the tools read: beneath the workspace, no link followed out of it, a
        # regular file only. The step's commands make the file, and the driver reads
        # it unconfined: a link to /proc/self/environ or a secret elsewhere made the
        # check an oracle on it, a FIFO held the driver for ever
        data = read_regular(root, os.path.relpath(path, root), MAX_CHECKED_BYTES)
    except Refused as exc:
        why = f"{check.file_contains}: {exc}"
        return CheckResult(check=what, expected=expected, actual=f"unreadable: {why}", passed=False)
    except (OSError, ValueError) as exc:
        return CheckResult(check=what, expected=expected, actual=f"unreadable: {exc}", passed=False)
    text = data.decode("utf-8", errors="replace")
    if check.text is not None:
        found: bool | None = check.text in text
    else:  # in a child the driver can stop: the text is the step's to make
        found = search_within(check.regex or "", text, flags=re.MULTILINE, seconds=REGEX_SECONDS)
    if found is None:
        actual = (
            f"still searching after {REGEX_SECONDS:g} s, stopped (repeats side by side, "
            f"such as \\d+\\.\\d+, backtrack on long text): not found in {len(text)} characters"
        )
        return CheckResult(check=what, expected=expected, actual=actual, passed=False)
    actual = "found" if found else f"not found in {len(text)} characters"
    return CheckResult(check=what, expected=expected, actual=actual, passed=found)


async def run_checks(
    step: Step, ctx: StepContext, pool: StepThreads | None = None
) -> tuple[CheckResult, ...]:
    """All of a step's checks, in order (every one runs, so the record is complete)."""
    if not step.verify:
        return ()
    env = step_env(ctx, step.env)
    return tuple([await run_check(c, ctx, env, pool) for c in step.verify])
