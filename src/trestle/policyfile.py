"""Loading the operator's approval policy (and monitor settings) from ``trestle.toml``.

The ``[policy]`` table parses into the same :class:`~trestle.policy.Policy` model as a
plan file's ``policy:`` mapping; only the file format differs. Problems are reported as
:class:`~trestle.errors.ConfigError`, one line each, naming the file and the field::

    trestle.toml: policy.rules[1].commands[0]: invalid regex '(': missing ), ...
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trestle.errors import ConfigError, PlanError
from trestle.monitors.policy import MonitorSettings
from trestle.planfile import read_text_file
from trestle.policy import Policy, Rule, Scope

POLICY_FILE = "trestle.toml"
MAX_CONFIG_BYTES = 1024 * 1024
TABLE = "policy"
MONITORS_TABLE = "monitors"

_KNOWN_FIELDS = sorted({name for model in (Policy, Rule, Scope) for name in model.model_fields})


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
        known = sorted(MonitorSettings.model_fields)
        problems = [f"{found}: {problem_text(err, MONITORS_TABLE, known)}" for err in exc.errors()]
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


def problem_text(err: Mapping[str, Any], prefix: str, known: Sequence[str] = _KNOWN_FIELDS) -> str:
    """One pydantic error as ``policy.rules[1].tier: <what is wrong>``; an unknown
    field gets the closest of ``known`` as a suggestion."""
    where = field_path([prefix, *err["loc"]])
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{where}: unknown field{hint}"
    message = str(err["msg"]).removeprefix("Value error, ")
    given = err.get("input")
    # our own validators already quote the value; pydantic's built-in messages do not
    if kind not in ("value_error", "missing") and isinstance(given, str | int | float):
        shown = repr(given)
        message += f", not {shown if len(shown) <= 80 else shown[:80] + '...'}"
    return f"{where}: {message}"


def field_path(loc: list[Any]) -> str:
    """``['policy', 'rules', 1, 'tier']`` as ``policy.rules[1].tier``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith(("function-", "union[")):
            continue  # pydantic's own bookkeeping, not a field the user wrote
        else:
            out += f".{part}" if out else str(part)
    return out
