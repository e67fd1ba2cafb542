"""A writer killed between naming its written file and renaming it over the target
(the two steps of a write that readers see as one) leaves a temporary file, which the
next write of the same file takes over: nothing stays beside the file for ever.

Found by ``tests/test_crash_moments.py`` (the driver killed during a ``write:`` step):
the temporary name was random, so the write run again on resume left the first one in
the workspace, where a later ``git add -A`` took it along. The writer here is a real
process, killed by the kernel where the rename would be."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from test_write_killed import killed_writer
from trestle.workspace.beneath import Refused, write_replacing

WRITER = """
import os, signal, sys
from pathlib import Path
from trestle.workspace.beneath import write_replacing

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

os.replace = killed  # the written file is named; the kill lands before the rename
write_replacing(Path(sys.argv[1]), sys.argv[2], b"half of it")
"""


def _killed_before_the_rename(workspace: Path, path: str) -> None:
    killed_writer(WRITER, workspace, path, signal.SIGKILL)


@pytest.mark.parametrize("existed", [True, False])
def test_the_next_write_of_the_file_takes_over_what_a_killed_writer_left(
    tmp_path: Path, existed: bool
) -> None:
    (tmp_path / "out").mkdir()
    if existed:
        (tmp_path / "out" / "notes.txt").write_text("as it was\n")

    _killed_before_the_rename(tmp_path, "out/notes.txt")
    left = sorted(os.listdir(tmp_path / "out"))
    assert any(name.endswith(".trestle-tmp") for name in left), left

    write_replacing(tmp_path, "out/notes.txt", b"whole\n")  # the write run again

    assert sorted(os.listdir(tmp_path / "out")) == ["notes.txt"]
    assert (tmp_path / "out" / "notes.txt").read_text() == "whole\n"


def test_a_directory_at_the_temporary_name_refuses_the_write_saying_so(tmp_path: Path) -> None:
    (tmp_path / ".notes.txt.trestle-tmp").mkdir()

    with pytest.raises(Refused, match="directory stands at its temporary name"):
        write_replacing(tmp_path, "notes.txt", b"text\n")

    assert sorted(os.listdir(tmp_path)) == [".notes.txt.trestle-tmp"]
