"""pydantic's validation errors in the words of whoever wrote the file.

Plan files (``planfile.py``) and ``trestle.toml`` (``policyfile.py``) both report
through here, so a problem reads the same in either:

- the field's path as the user wrote it (``rules[1].tier``, ``verify[0].command``):
  without the tags pydantic adds for a tagged union or the names of validators;
- what is wrong, said plainly (``must be a whole number, not 'many'`` rather than
  ``Input should be a valid integer, unable to parse string as an integer``);
- for an unknown field, the closest known field at that place (``did you mean``).
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Tag
from pydantic.fields import FieldInfo

Loc = Sequence[str | int]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def field_path(loc: Loc) -> str:
    """``['policy', 'rules', 1, 'tier']`` as ``policy.rules[1].tier``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def user_loc(model: type[BaseModel], loc: Loc) -> tuple[list[str | int], list[str]]:
    """An error's location with pydantic's own levels dropped, and the fields known at
    the place its last part names (what an unknown field was probably meant to be).

    pydantic puts a tagged union's tag into the location (``verify, 0, command,
    command``) and sometimes a validator's name (``function-after[...]``); the user
    wrote neither. The model's types are followed along the location to tell a tag
    from a field of the same name.
    """
    kept: list[str | int] = []
    here: list[Any] = [model]
    known: list[str] = _fields(here)
    for part in loc:
        if isinstance(part, str) and part.startswith(("function-", "union[")):
            continue
        tagged = _tagged_arms(here)
        if isinstance(part, str) and part in tagged:
            here = [tagged[part]]
            continue
        known = _fields(here)
        here = _inside(here, part)
        kept.append(part)
    return kept, known


def _arms(tp: Any) -> list[Any]:
    """The types a value of ``tp`` may have: ``Annotated``, ``Optional`` and unions
    unwrapped."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _arms(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [arm for arg in get_args(tp) for arm in _arms(arg)]
    return [tp]


def _tagged_arms(here: list[Any]) -> dict[str, Any]:
    tagged: dict[str, Any] = {}
    for tp in here:
        inner = get_args(tp)[0] if get_origin(tp) is Annotated else tp
        if get_origin(inner) is not Union and get_origin(inner) is not types.UnionType:
            continue
        for arm in get_args(inner):
            if get_origin(arm) is Annotated:
                for meta in arm.__metadata__:
                    if isinstance(meta, Tag):
                        tagged[meta.tag] = arm
        tagged |= _discriminated_arms(tp, get_args(inner))
    return tagged


def _discriminated_arms(tp: Any, arms: Sequence[Any]) -> dict[str, Any]:
    """For a union discriminated by a field (``Field(discriminator="type")``), each
    arm by its field's literal value: pydantic puts that value into the location."""
    metadata = tp.__metadata__ if get_origin(tp) is Annotated else ()
    field = next((m.discriminator for m in metadata if isinstance(m, FieldInfo)), None)
    if not isinstance(field, str):
        return {}
    found: dict[str, Any] = {}
    for arm in arms:
        if isinstance(arm, type) and issubclass(arm, BaseModel) and field in arm.model_fields:
            literal = arm.model_fields[field].annotation
            found |= {str(value): arm for value in get_args(literal)}
    return found


def _models(here: list[Any]) -> list[type[BaseModel]]:
    return [
        arm
        for tp in here
        for arm in _arms(tp)
        if isinstance(arm, type) and issubclass(arm, BaseModel)
    ]


def _fields(here: list[Any]) -> list[str]:
    return sorted({name for model in _models(here) for name in model.model_fields})


def _inside(here: list[Any], part: str | int) -> list[Any]:
    """The types found one level down, at ``part``."""
    found: list[Any] = []
    for tp in here:
        for arm in _arms(tp):
            origin, args = get_origin(arm), get_args(arm)
            if isinstance(arm, type) and issubclass(arm, BaseModel):
                field = arm.model_fields.get(str(part))
                if field is not None:
                    found.append(field.annotation)
            elif origin in (tuple, list, set, frozenset) and args and isinstance(part, int):
                found.append(args[0])
            elif origin is dict and len(args) == 2:
                found.append(args[1])
    return found


def plain_message(err: Mapping[str, Any], patterns: Mapping[str, str] | None = None) -> str:
    """What is wrong, without pydantic's vocabulary; the given value follows where
    the message does not already quote it.

    Args:
        err: one entry of ``ValidationError.errors()``.
        patterns: regex patterns the models use, each with the words that say what it
            asks (``"must start with a letter or digit"``).
    """
    kind = str(err["type"])
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "missing":
        return "required, but missing"
    if kind == "check_kind":
        return str(err["msg"]) + _check_key_hint(str(err["msg"]), err.get("input"))
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "union_tag_invalid":  # a discriminated union's field names no arm
        return "{discriminator} must be one of {expected_tags}, not {tag!r}".format(**ctx)
    if kind == "union_tag_not_found":
        return "{discriminator} is required, but missing".format(**ctx)
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        message = (patterns or {}).get(pattern, f"must match the pattern {pattern!r}")
    elif kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        message = "must be at least {min_length} characters long".format(**ctx)
    elif kind in ("too_short", "too_long") and isinstance(err.get("input"), Sized):
        count = len(err["input"])
        return _WORDS[kind].format(**_shown_ctx(ctx)) + f", not {count:,}"
    elif kind in _WORDS:
        message = _WORDS[kind].format(**_shown_ctx(ctx))
    else:
        return str(err["msg"])  # our own checks' messages (a check's kind) are plain already
    return message + _given(err.get("input")) + _as_a_list(kind, err.get("input"))


def _as_a_list(kind: str, value: object) -> str:
    """For one item written where a list goes (``needs: build``), the list it meant,
    written as both YAML and TOML read it."""
    if kind not in ("tuple_type", "list_type", "set_type") or not isinstance(value, str):
        return ""
    if not value or len(value) > 80 or not value.isprintable():
        return ""
    return f" (a list of one: {json.dumps([value], ensure_ascii=False)})"


def _check_key_hint(message: str, value: object) -> str:
    """For a check written with a misspelt kind (``comand:``), the kind it was meant to
    be. The kinds are read from the message, which lists them (``one of: command,
    file_exists, ...``): plan.py reports through this module, so it cannot be imported
    here. The check's other keys (``text``, ``regex``, ``timeout``) are left alone."""
    listed = re.search(r"one of: ([a-z_]+(?:, [a-z_]+)*)", message)
    if listed is None or not isinstance(value, Mapping):
        return ""
    kinds = listed.group(1).split(", ")
    for key in value:
        if isinstance(key, str) and key not in (*kinds, "text", "regex", "timeout"):
            hint = did_you_mean(key, kinds)
            if hint:
                return f"; {key!r} is not one{hint}"
    return ""


_WORDS = {
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "set_type": "must be a list",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "greater_than": "must be more than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "too_short": "must list at least {min_length}",
    "too_long": "must list at most {max_length}",
    "string_too_long": "must be at most {max_length} characters long",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
}


def _shown_ctx(ctx: Mapping[str, Any]) -> dict[str, Any]:
    shown = dict(ctx)
    for key in ("min_length", "max_length"):
        count = shown.get(key)
        if isinstance(count, int):
            shown[key] = f"{count} item" if count == 1 else f"{count:,} items"
    for key in ("gt", "ge", "lt", "le"):
        if isinstance(shown.get(key), float) and float(shown[key]).is_integer():
            shown[key] = int(shown[key])  # 'at most 1', not 'at most 1.0'
    expected = shown.get("expected")
    if isinstance(expected, str) and (" or " in expected or "," in expected):
        shown["expected"] = f"one of {expected}"
    return shown


def _given(value: object) -> str:
    """``, not <value>`` in the file's own terms (a list, a mapping, null)."""
    if value is None:
        return ", not null (nothing)"
    if isinstance(value, bool):
        return f", not {str(value).lower()}"
    if isinstance(value, str | int | float):
        shown = repr(value)
        return f", not {shown if len(shown) <= 80 else shown[:80] + '...'}"
    if isinstance(value, list | tuple):
        return ", not a list"
    if isinstance(value, Mapping):
        return ", not a mapping"
    return ""


def only_items_failed(err: Any) -> bool:
    """pydantic calls a tuple too short when its items fail, though enough were given."""
    given = err.get("input")
    return (
        err["type"] == "too_short"
        and isinstance(given, Sized)
        and len(given) >= err.get("ctx", {}).get("min_length", 0)
    )
