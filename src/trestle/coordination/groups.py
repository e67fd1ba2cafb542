"""Groups of runs: who belongs to which group, and what the group's records may hold.

A group shares a blackboard (versioned keys, compare-and-set writes) and mailboxes
(durable messages between its members). This module is pure: it decides a run's
group, checks names and values before anything is written, and derives message ids.
The store keeps the records (:mod:`trestle.store.groups`), :mod:`trestle.coordination.board`
is the Python API over it, and :mod:`trestle.tools.group` the agents' tools.

A run's group is :func:`group_of`, and only that function decides it: the plan's
``group:`` when it names one, else the run's own id (a group of one).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import TYPE_CHECKING, Any

from trestle.core.errors import ConfigError
from trestle.core.safetext import MAX_DEPTH

if TYPE_CHECKING:
    from trestle.core.state import RunState

NAME_MAX = 200  # characters of a group, key or address
MAX_VALUE = 256 * 1024  # characters of a board value's or a message body's JSON
MAX_WAIT = 3600.0  # seconds a watch or an awaited reply may wait at most
MAX_VERSION = 1 << 62  # a version the store's 64-bit integers hold, with room to count on
_PRINTABLE = re.compile(r"[^\x00-\x1f\x7f-\x9f]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # tab, LF, CR pass


def group_of(state: RunState) -> str:
    """The group ``state``'s run belongs to: its plan's ``group:``, else its own id."""
    return state.plan.group or state.run_id


def named_group(state: RunState) -> str | None:
    """The group the run was put in, when it was put in one: a run alone in a group of
    its own has nobody to share a board or mail with (the agent is not offered the
    group's tools then)."""
    group = group_of(state)
    return None if group == state.run_id else group


def check_name(name: object, what: str) -> str:
    """A group's, key's or address's name: 1 to 200 printable characters.

    Raises:
        ConfigError: naming ``what`` and the problem.
    """
    if not isinstance(name, str):
        raise ConfigError(f"{what} must be text, not {type(name).__name__}")
    if not name.strip():
        raise ConfigError(f"{what} is empty")
    if len(name) > NAME_MAX:
        raise ConfigError(f"{what} is {len(name):,} characters, more than {NAME_MAX}")
    if not _PRINTABLE.fullmatch(name):
        bad = next(c for c in name if not _PRINTABLE.fullmatch(c))
        raise ConfigError(f"{what} {name!r} holds a control character ({_char(bad)})")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{what} {name!r} is not valid text (character {exc.start + 1} is an unpaired "
            "surrogate)"
        ) from None
    return name


def value_json(value: Any, what: str) -> str:
    """``value`` (JSON: dicts, lists, text, numbers, booleans, null) as the JSON text a
    board or a message keeps.

    Refused with a :class:`ConfigError` naming ``what`` and where in the value: a
    non-finite number, text with an unpaired surrogate or a control character other
    than tab and newline, a key that is not text, nesting past 64 levels, or more than
    256 KiB of JSON. Checked without recursion, so a hostile value costs a scan.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    seen = 0
    while stack:
        item, where, depth = stack.pop()
        at = f"{what}{where}"
        if depth > MAX_DEPTH:
            raise ConfigError(f"{what} nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, bool) or item is None:
            continue
        seen += 1
        if seen > MAX_VALUE:
            raise ConfigError(f"{what} holds more than {MAX_VALUE:,} values")
        if isinstance(item, int):
            if item.bit_length() > 63:
                raise ConfigError(
                    f"{at}: an integer of {item.bit_length()} bits does not fit in 64"
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ConfigError(f"{at}: {item!r} is not a finite number (JSON has none)")
        elif isinstance(item, str):
            _check_text(item, at)
        elif isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise ConfigError(f"{at}: the key {key!r} is not text (JSON keys are)")
                _check_text(key, f"{at}: the key {key[:40]!r}")
                stack.append((sub, f"{where}[{key[:40]!r}]", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((sub, f"{where}[{i}]", depth + 1) for i, sub in enumerate(item))
        else:
            raise ConfigError(f"{at}: a {type(item).__name__} is not a JSON value")
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if len(text) > MAX_VALUE:
        raise ConfigError(
            f"{what} is {len(text):,} characters of JSON, more than the {MAX_VALUE:,} a "
            "board value or a message may hold"
        )
    return text


def check_version(version: object, what: str) -> int:
    """A version a writer expects or a watcher waits past: a whole number from 0."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"{what} must be a whole number from 0, not {version!r}")
    if not 0 <= version <= MAX_VERSION:
        raise ConfigError(f"{what} must be from 0 to {MAX_VERSION}, not {version}")
    return version


def check_wait(seconds: float, what: str) -> float:
    """A timeout: a finite number of seconds, 0 to an hour."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigError(f"{what} must be a number of seconds, not {seconds!r}")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_WAIT:
        raise ConfigError(f"{what} must be between 0 and {MAX_WAIT:g} seconds, not {seconds!r}")
    return float(seconds)


def message_id(key: str) -> str:
    """A message's id derived from what sent it (a tool call's idempotency key): the
    same call sending again after a crash sends the same message, deduplicated."""
    return "m-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _check_text(text: str, at: str) -> None:
    if len(text) > MAX_VALUE:
        raise ConfigError(f"{at}: text of {len(text):,} characters, more than {MAX_VALUE:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{at}: text with an unpaired surrogate at character {exc.start + 1}"
        ) from None
    control = _CONTROL.search(text)
    if control is not None:
        raise ConfigError(f"{at}: text holds a control character ({_char(control.group())})")


def _char(char: str) -> str:
    return f"U+{ord(char):04X}"
