"""A process killed while it writes a file beneath the workspace (a plan's ``write:``
step, the agent's ``write_file``) leaves the file as it was and nothing beside it.

The writer is a real process, killed by the kernel in the middle of its write: past
its file-size limit a write raises SIGXFSZ, whose default action ends the process as
a SIGKILL would. Before, the half-written temporary file stayed in the workspace under
a random name that no later write reuses, and a later ``git add -A`` took it along.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

WRITER = """
import resource, signal, sys
from pathlib import Path
from trestle.workspace.beneath import write_replacing

signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the kernel's default
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
write_replacing(Path(sys.argv[1]), sys.argv[2], b"x" * (4 << 20))
print("written")
"""


def killed_writer(writer: str, workspace: Path, path: str, by: signal.Signals) -> None:
    """Run ``writer`` (Python code writing ``path`` beneath ``workspace``) in a process of
    its own, which the kernel must end with ``by``."""
    done = subprocess.run(
        [sys.executable, "-c", writer, str(workspace), path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -by, done.stdout + done.stderr


def kill_while_writing(workspace: Path, path: str) -> None:
    killed_writer(WRITER, workspace, path, signal.SIGXFSZ)


def test_a_writer_killed_mid_write_leaves_the_old_file_and_nothing_else(
    tmp_path: Path,
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("as it was\n")

    kill_while_writing(tmp_path, "out/notes.txt")

    assert sorted(os.listdir(tmp_path / "out")) == ["notes.txt"]
    assert (tmp_path / "out" / "notes.txt").read_text() == "as it was\n"


def test_a_writer_killed_mid_write_of_a_new_file_leaves_no_file(tmp_path: Path) -> None:
    kill_while_writing(tmp_path, "new/notes.txt")

    assert os.listdir(tmp_path / "new") == []
