"""A tool call as a human edits it before approving it (``trestle approve --edit``): its
arguments checked against the tool's schema, and what a file-changing call would do to
the workspace as it is now, as a unified diff."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trestle.core.errors import ConfigError
from trestle.lifecycle.approvals import text_now
from trestle.presentation.diffs import unified
from trestle.presentation.wording import counted
from trestle.tools.coding import coding_registry
from trestle.workspace.beneath import Refused

# the tools whose edited call shows the diff it would make
FILE_CHANGES = ("edit_file", "write_file")


def checked_arguments(tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The edited arguments as the call will run with them (defaults filled in), or a
    ConfigError naming what is wrong with them."""
    registry = coding_registry()
    if tool not in registry:
        raise ConfigError(
            f"the {tool} call cannot be edited here: its schema is not known to the command "
            "line (only the coding tools' are); approve it as asked, or reject it with a reason"
        )
    try:
        return registry.validated(tool, arguments)
    except ConfigError as exc:
        raise ConfigError(f"the edited {tool} call is invalid: {exc}") from None


def call_diff(tool: str, arguments: Mapping[str, Any], workspace: Path) -> str | None:
    """What the ``edit_file`` or ``write_file`` call would change in ``workspace`` now,
    as a unified diff; a sentence when it would fail; None for other tools."""
    path = arguments.get("path")
    if tool not in FILE_CHANGES or not isinstance(path, str):
        return None
    try:
        # the path is the model's: read beneath the workspace only, as the call would
        before = text_now(workspace, path)
    except Refused as exc:
        return f"({path} is not shown: {exc})"
    except (OSError, UnicodeDecodeError):
        return f"({path} exists but is not readable text)"
    if tool == "write_file":
        after = str(arguments.get("content", ""))
    else:
        if before is None:
            return f"(the edit would fail: {path} does not exist)"
        after_or_why = _edited(before, arguments)
        if after_or_why[1] is not None:
            return f"(the edit would fail: {after_or_why[1]} in {path})"
        after = after_or_why[0]
    diff = unified(
        before or "",
        after,
        fromfile=f"a/{path}" if before is not None else "/dev/null",
        tofile=f"b/{path}",
    )
    return diff or "(no change: the file already has this content)"


def _edited(text: str, arguments: Mapping[str, Any]) -> tuple[str, str | None]:
    """``text`` with ``old`` replaced by ``new`` as edit_file replaces it, or why not."""
    old, new = str(arguments.get("old", "")), str(arguments.get("new", ""))
    wanted = arguments.get("count") or 1
    found = text.count(old) if old else 0
    if found != wanted:
        return text, f"the old text occurs {counted(found, 'time')}, not {wanted}"
    return text.replace(old, new), None
