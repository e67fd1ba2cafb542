"""The look for an attempt's leftover processes reads each process's whole environment
from ``/proc``, however long: a key after 100 KB of other variables is found."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from trestle.execution.processes import KEY_VAR, leftovers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_key_after_a_long_environment_is_found() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "LONG": "x" * 100_000, KEY_VAR: "run/step/1"}
    nested = {**env, KEY_VAR: "run/step/1/tool-2"}  # a tool call's key under the step's
    other = {**env, KEY_VAR: "run/step/10"}  # another step's: not a leftover of this one
    procs = [subprocess.Popen(["sleep", "30"], env=e) for e in (env, nested, other)]
    try:
        assert leftovers("run/step/1", None) == {procs[0].pid, procs[1].pid}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert leftovers("run/step/1", None) == set()
