"""Loading the operator's approval policy (and monitor settings) from ``trestle.toml``.

The ``[policy]`` table parses into the same :class:`~trestle.core.policy.Policy` model as a
plan file's ``policy:`` mapping; only the file format differs. Problems are reported as
:class:`~trestle.core.errors.ConfigError`, one line each, naming the file, the line
(:mod:`.toml_lines` finds it) and the field::

    trestle.toml:12: policy.rules[1].commands[0]: invalid regex '(': missing ), ...
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from trestle.core.errors import ConfigError, PlanError
from trestle.core.field_problems import did_you_mean, field_path, plain_message, user_loc
from trestle.core.policy import Policy, Rule
from trestle.core.records.mcp import McpServer
from trestle.core.records.monitors import ALERT_KINDS, MonitorSettings
from trestle.formats.exec_limits import too_many_reads
from trestle.formats.text_files import read_text_file
from trestle.formats.toml_lines import key_lines, line_of, syntax_problem

POLICY_FILE = "trestle.toml"
MAX_CONFIG_BYTES = 1024 * 1024
TABLE = "policy"
MONITORS_TABLE = "monitors"
TABLES = (TABLE, MONITORS_TABLE, "mcp")  # the top-level tables a trestle.toml may hold


def find_policy_file(start: Path, *, resolved: bool = True) -> Path | None:
    """The nearest ``trestle.toml`` in ``start`` or its parents, or None.

    The search stops after the first directory that holds ``.git`` (the repository's
    root), so a file further up, outside the project, is never picked up by surprise.
    ``resolved=False`` walks up ``start`` as named, its links not followed first.
    """
    here = start.resolve() if resolved else Path(os.path.abspath(start))
    for directory in (here, *here.parents):
        candidate = directory / POLICY_FILE
        if candidate.is_file():
            return candidate
        if (directory / ".git").exists():
            return None
    return None


def operator_policy(workspace: Path, path: Path | None = None) -> Policy | None:
    """The operator's policy: from ``path`` if given (it must exist), else the nearest
    ``trestle.toml`` above ``workspace``; None when there is none.

    This trusts the file: it is for a caller that knows who wrote it. The CLI obeys a
    file a step could have written only once a human accepted it
    (:func:`trestle.trust.policy_trust.trusted_settings`)."""
    if path is not None:
        return load_policy(path)
    found = find_policy_file(workspace)
    return load_policy(found) if found is not None else None


def load_policy(path: str | Path) -> Policy:
    """Read ``[policy]`` from a TOML file; a file without that table gives the defaults.
    Like :func:`operator_policy`, it trusts the file.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid TOML (the message
            gives the line and column), or its policy is invalid (one line per problem).
    """
    return read_policy_file(Path(path)).policy()


def monitor_settings(workspace: Path, path: Path | None = None) -> MonitorSettings | None:
    """The ``[monitors]`` table of the operator's file (found as for the policy), or
    None when there is no file or it has no such table: the defaults then apply."""
    found = path if path is not None else find_policy_file(workspace)
    return read_policy_file(found).monitors() if found is not None else None


@dataclass(frozen=True)
class PolicyFile:
    """One read of an operator's file: the SHA-256 of the bytes read and the TOML they
    hold. Its policy and monitor settings come from this one read, so what is checked
    against an accepted hash is what is obeyed, however the file changes meanwhile."""

    path: Path
    text: str
    sha256: str
    document: Mapping[str, Any]

    def policy(self) -> Policy:
        """The ``[policy]`` table (the defaults without one), or a ConfigError."""
        table = self._table(TABLE)
        try:
            policy = Policy.model_validate(table)
        except ValidationError as exc:
            raise Where(str(self.path), self.text).error(exc, TABLE) from None
        too_many = too_many_reads(len(policy.sandbox.read))
        if too_many is not None:  # every command's start would fail (exec_limits)
            where = Where(str(self.path), self.text).at([TABLE, "sandbox", "read"])
            raise ConfigError(f"{where}: {TABLE}.sandbox.read: {too_many}")
        return policy

    def monitors(self) -> MonitorSettings | None:
        """The ``[monitors]`` table, None without one, or a ConfigError."""
        table = self._table(MONITORS_TABLE)
        if not table:
            return None
        try:
            settings = MonitorSettings.model_validate(table)
        except ValidationError as exc:
            where = Where(str(self.path), self.text)
            raise where.error(exc, MONITORS_TABLE, MonitorSettings) from None
        for kind in table.get("kinds", {}):
            if kind not in ALERT_KINDS:
                line = Where(str(self.path), self.text).at([MONITORS_TABLE, "kinds", kind])
                close = difflib.get_close_matches(kind, sorted(ALERT_KINDS), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"{line}: {MONITORS_TABLE}.kinds: no monitor raises {kind!r}{hint} "
                    f"(the kinds: {', '.join(sorted(ALERT_KINDS))})"
                )
        return settings

    def mcp_servers(self) -> tuple[tuple[McpServer, ...], tuple[Rule, ...]]:
        """The ``[mcp.servers.NAME]`` tables (:mod:`trestle.formats.mcp_servers`), and
        the operator rules their ``tier`` fields make, or a ConfigError."""
        from trestle.formats.mcp_servers import file_servers

        return file_servers(self.document, self.text, str(self.path))

    def _table(self, name: str) -> dict[str, Any]:
        """One top-level table ({} when absent), or a ConfigError."""
        table = self.document.get(name, {})
        if not isinstance(table, dict):
            where = Where(str(self.path), self.text).at([name])
            raise ConfigError(f"{where}: {name}: must be a table ([{name}]), not a value")
        return table


def read_toml_file(path: Path) -> tuple[str, dict[str, Any]]:
    """An operator's TOML file (``trestle.toml``, ``notify.toml``) read once: its text
    and document, or a ConfigError saying why not (the same refusals as a plan file's:
    not a regular file, too large, not UTF-8; invalid TOML, with its line and column)."""
    source = str(path)
    try:
        text = read_text_file(path, MAX_CONFIG_BYTES)
    except PlanError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        what, line = syntax_problem(str(exc))
        where = source if line is None else f"{source}:{line}"
        raise ConfigError(f"{where}: invalid TOML: {what}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5,000 digits
        raise ConfigError(f"{source}: invalid value: {str(exc)[:200]}") from None


def read_policy_file(path: Path) -> PolicyFile:
    """Read and hash an operator's file once, or raise a ConfigError saying why not
    (:func:`read_toml_file`; a top-level table Trestle does not read)."""
    source = str(path)
    text, document = read_toml_file(path)
    # strict UTF-8 decodes and encodes back to the very bytes read
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    unknown = [name for name in document if name not in TABLES]
    if unknown:
        where = Where(source, text).at([unknown[0]])
        raise ConfigError(f"{where}: {_unknown_table(unknown[0])}")
    return PolicyFile(path, text, sha256, document)


def _unknown_table(name: str) -> str:
    """What to say of a top-level table Trestle does not read: it would be ignored,
    and a setting ignored in silence (``[sandbox]`` for ``[policy.sandbox]``) is a
    policy the operator believes holds and does not."""
    hint = f"; did you mean [policy.{name}]?" if name in Policy.model_fields else ""
    known = ", ".join(f"[{t}]" for t in TABLES)
    return f"unknown table [{name}]: a trestle.toml holds only {known}{hint}"


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


@dataclass(frozen=True)
class Where:
    """A file's name and text, to name a problem's place in it as ``file:line``."""

    source: str
    text: str

    def at(self, path: Sequence[str | int]) -> str:
        """``file:line`` for the key at ``path`` (or the nearest holding it), else ``file``."""
        line = line_of(key_lines(self.text), path)
        return self.source if line is None else f"{self.source}:{line}"

    def error(
        self, exc: ValidationError, prefix: str, model: type[BaseModel] = Policy
    ) -> ConfigError:
        """One line per problem, each as ``file:line: policy.rules[1].tier: what``
        (``prefix`` "": the model is the whole file)."""
        lines = key_lines(self.text)
        problems = []
        for err in exc.errors():
            line = line_of(lines, [*([prefix] if prefix else []), *user_loc(model, err["loc"])[0]])
            where = self.source if line is None else f"{self.source}:{line}"
            problems.append(f"{where}: {problem_text(err, prefix, model)}")
        return ConfigError("\n".join(problems))


def problem_text(err: Mapping[str, Any], prefix: str, model: type[BaseModel] = Policy) -> str:
    """One pydantic error as ``policy.rules[1].tier: <what is wrong>``, in the user's
    words (see :mod:`trestle.core.field_problems`); an unknown field gets the closest field
    known at its place as a suggestion."""
    loc, known = user_loc(model, err["loc"])
    message = plain_message(err)
    if err["type"] == "extra_forbidden" and loc:
        message += did_you_mean(str(loc[-1]), known)
    return f"{field_path([prefix, *loc])}: {message}"
