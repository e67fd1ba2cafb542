"""Loading the operator's approval policy (and monitor settings) from ``trestle.toml``.

The ``[policy]`` table parses into the same :class:`~trestle.core.policy.Policy` model as a
plan file's ``policy:`` mapping; only the file format differs. Problems are reported as
:class:`~trestle.core.errors.ConfigError`, one line each, naming the file and the field::

    trestle.toml: policy.rules[1].commands[0]: invalid regex '(': missing ), ...
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from trestle.core.errors import ConfigError, PlanError
from trestle.core.field_problems import did_you_mean, field_path, plain_message, user_loc
from trestle.core.policy import Policy
from trestle.core.records.monitors import MonitorSettings
from trestle.planfile import read_text_file

POLICY_FILE = "trestle.toml"
MAX_CONFIG_BYTES = 1024 * 1024
TABLE = "policy"
MONITORS_TABLE = "monitors"


def find_policy_file(start: Path) -> Path | None:
    """The nearest ``trestle.toml`` in ``start`` or its parents, or None.

    The search stops after the first directory that holds ``.git`` (the repository's
    root), so a file further up, outside the project, is never picked up by surprise.
    """
    here = start.resolve()
    for directory in (here, *here.parents):
        candidate = directory / POLICY_FILE
        if candidate.is_file():
            return candidate
        if (directory / ".git").exists():
            return None
    return None


def operator_policy(workspace: Path, path: Path | None = None) -> Policy | None:
    """The operator's policy: from ``path`` if given (it must exist), else the nearest
    ``trestle.toml`` above ``workspace``; None when there is none."""
    if path is not None:
        return load_policy(path)
    found = find_policy_file(workspace)
    return load_policy(found) if found is not None else None


def load_policy(path: str | Path) -> Policy:
    """Read ``[policy]`` from a TOML file; a file without that table gives the defaults.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid TOML (the message
            gives the line and column), or its policy is invalid (one line per problem).
    """
    return parse_policy(_table(Path(path), TABLE), source=str(path))


def monitor_settings(workspace: Path, path: Path | None = None) -> MonitorSettings | None:
    """The ``[monitors]`` table of the operator's file (found as for the policy), or
    None when there is no file or it has no such table: the defaults then apply."""
    found = path if path is not None else find_policy_file(workspace)
    if found is None:
        return None
    table = _table(found, MONITORS_TABLE)
    if not table:
        return None
    try:
        return MonitorSettings.model_validate(table)
    except ValidationError as exc:
        problems = [
            f"{found}: {problem_text(err, MONITORS_TABLE, MonitorSettings)}" for err in exc.errors()
        ]
        raise ConfigError("\n".join(problems)) from None


def _table(path: Path, name: str) -> dict[str, Any]:
    """One top-level table of a TOML file ({} when absent), or a ConfigError."""
    source = str(path)
    try:
        text = read_text_file(path, MAX_CONFIG_BYTES)
    except PlanError as exc:  # the same refusals as a plan file's, for a config file
        raise ConfigError(str(exc)) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
        raise ConfigError(f"{source}: invalid value: {str(exc)[:200]}") from None
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {name}: must be a table ([{name}]), not a value")
    return table


def parse_policy(data: Mapping[str, Any], *, source: str, prefix: str = TABLE) -> Policy:
    """Validate a policy mapping, or raise :class:`ConfigError` naming every problem.

    Args:
        data: the ``[policy]`` table (or any mapping of the same shape).
        source: the file it came from, for messages.
        prefix: how the mapping is addressed in that file.
    """
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [f"{source}: {problem_text(err, prefix)}" for err in exc.errors()]
        raise ConfigError("\n".join(problems)) from None


def problem_text(err: Mapping[str, Any], prefix: str, model: type[BaseModel] = Policy) -> str:
    """One pydantic error as ``policy.rules[1].tier: <what is wrong>``, in the user's
    words (see :mod:`trestle.core.field_problems`); an unknown field gets the closest field
    known at its place as a suggestion."""
    loc, known = user_loc(model, err["loc"])
    message = plain_message(err)
    if err["type"] == "extra_forbidden" and loc:
        message += did_you_mean(str(loc[-1]), known)
    return f"{field_path([prefix, *loc])}: {message}"
