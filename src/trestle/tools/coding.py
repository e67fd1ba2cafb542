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

Given the store, the set also holds ``fetch_artifact`` (read): a run started with a
handoff packet pulls what the packet references (:mod:`trestle.tools.artifacts`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trestle.tools.base import Tool
from trestle.tools.commands import RunCommand, RunTests
from trestle.tools.edits import EditFile, WriteFile
from trestle.tools.files import ListFiles, ReadFile, SearchText
from trestle.tools.finish import Finish
from trestle.tools.gitdiff import GitDiff
from trestle.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from trestle.store.base import Store


def coding_tools(store: Store | None = None) -> list[Tool[Any]]:
    """Fresh instances of the coding tools, read-only ones first; with ``store``, also
    ``fetch_artifact``, which reads handoff artifacts from it."""
    reads: list[Tool[Any]] = [ReadFile(), ListFiles(), SearchText(), GitDiff()]
    if store is not None:
        from trestle.tools.artifacts import FetchArtifact  # the event types: load on use

        reads.append(FetchArtifact(store))
    return [*reads, WriteFile(), EditFile(), RunCommand(), RunTests(), Finish()]


def coding_registry(store: Store | None = None) -> ToolRegistry:
    """A new registry holding the coding tools (see :func:`coding_tools`); register
    extra tools on it as needed."""
    return ToolRegistry(coding_tools(store))
