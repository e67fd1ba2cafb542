"""The coding tool set: everything an agent needs to read, change and check a repository.

=============  ========  =====================================================
tool           nature    what it does
=============  ========  =====================================================
read_file      read      a file, whole or a line range, capped with a note
list_files     read      entries under a directory, by pattern and depth
search_text    read      regex or literal matches as ``path:line:text``
git_diff       read      changes since the last commit, new files included
write_file     write     create or replace a file (parents created)
edit_file      write     exact-match replace; zero or several matches are errors
run_command    command   a shell command: timeout, group kill, capped output
run_tests      test      the run's configured test command
finish         read      the claim that the step is done (checks then judge it)
=============  ========  =====================================================
"""

from __future__ import annotations

from typing import Any

from trestle.tools.base import Tool
from trestle.tools.commands import RunCommand, RunTests
from trestle.tools.edits import EditFile, WriteFile
from trestle.tools.files import ListFiles, ReadFile, SearchText
from trestle.tools.finish import Finish
from trestle.tools.gitdiff import GitDiff
from trestle.tools.registry import ToolRegistry


def coding_tools() -> list[Tool[Any]]:
    """Fresh instances of the coding tools, read-only ones first."""
    return [
        ReadFile(),
        ListFiles(),
        SearchText(),
        GitDiff(),
        WriteFile(),
        EditFile(),
        RunCommand(),
        RunTests(),
        Finish(),
    ]


def coding_registry() -> ToolRegistry:
    """A new registry holding the coding tools; register extra tools on it as needed."""
    return ToolRegistry(coding_tools())
