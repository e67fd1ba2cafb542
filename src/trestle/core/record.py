"""The base of every piece of plan and policy data."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """Immutable; unknown fields and non-finite numbers (``.inf``, ``.nan``) are errors.

    JSON has no infinity: one accepted here would be recorded as ``null`` and make the
    run unreadable afterwards.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def untitled_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without pydantic's generated titles: they repeat the field names and
    cost a model tokens on every call. Property names themselves are kept."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            out[key] = {name: untitled_schema(sub) for name, sub in value.items()}
        elif isinstance(value, dict):
            out[key] = untitled_schema(value)
        elif isinstance(value, list):
            out[key] = [untitled_schema(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out
