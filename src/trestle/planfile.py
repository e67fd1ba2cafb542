"""Loading plan files: YAML in, a validated :class:`Plan` out, or every problem named.

Nothing here touches the store: a plan that fails to load leaves no trace.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator, Sized
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trestle.errors import PlanError
from trestle.plan import CallableCheck, Plan, graph_problems


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file, or raise :class:`PlanError` naming every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(str(path), [f"cannot read: {exc}"]) from None
    return parse_plan(text, source=str(path), base_dir=path.parent)


def parse_plan(text: str, *, source: str = "<plan>", base_dir: Path | None = None) -> Plan:
    """Validate plan text; callables are resolved with ``base_dir`` on the import path."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlanError(source, [f"{where}invalid YAML: {problem}"]) from None
    if not isinstance(raw, dict):
        raise PlanError(source, ["the top level must be a mapping with a 'steps' list"])
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        errors = [err for err in exc.errors() if not only_items_failed(err)]
        raise PlanError(source, [_locate(err, raw) for err in errors]) from None
    problems = graph_problems(plan.steps)
    problems += _unresolvable_callables(plan, base_dir or Path.cwd())
    if problems:
        raise PlanError(source, problems)
    return plan


def only_items_failed(err: Any) -> bool:
    """pydantic calls a tuple too short when its items fail, though enough were given."""
    given = err.get("input")
    return (
        err["type"] == "too_short"
        and isinstance(given, Sized)
        and len(given) >= err.get("ctx", {}).get("min_length", 0)
    )


def _locate(err: Any, raw: dict[str, Any]) -> str:
    """Turn a pydantic error location into 'step 'x', field 'a.b': message'."""
    loc = list(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    prefix = ""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        index = loc[1]
        steps = raw.get("steps")
        step_raw = steps[index] if isinstance(steps, list) and index < len(steps) else None
        step_id = step_raw.get("id") if isinstance(step_raw, dict) else None
        prefix = f"step {step_id!r}" if isinstance(step_id, str) else f"step #{index + 1}"
        loc = loc[2:]
    # pydantic adds union tags (e.g. 'command') and function names to the location
    loc = [p for p in loc if not (isinstance(p, str) and p in {"function-after"})]
    field = _dotted(loc)
    parts = [p for p in (prefix, f"field {field!r}" if field else "") if p]
    return f"{', '.join(parts)}: {msg}" if parts else msg


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@contextmanager
def _import_path(*dirs: Path) -> Iterator[None]:
    added = [str(d.resolve()) for d in dirs if str(d.resolve()) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for d in added:
            sys.path.remove(d)


def resolve_callable(ref: str, *search: Path) -> Any:
    """Import ``module:attr`` (with ``search`` dirs on the path) and return the object."""
    module_name, _, attr = ref.partition(":")
    with _import_path(*search):
        obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj


def _unresolvable_callables(plan: Plan, base_dir: Path) -> list[str]:
    problems = []
    for step in plan.steps:
        refs = [("python", step.python)] if step.python else []
        refs += [
            (f"verify[{i}].python", c.python)
            for i, c in enumerate(step.verify)
            if isinstance(c, CallableCheck)
        ]
        for field, ref in refs:
            assert ref is not None
            try:
                resolve_callable(ref, base_dir, base_dir / plan.workspace)
            except Exception as exc:  # any import-time failure is the plan's problem
                problems.append(f"step {step.id!r}, field {field!r}: cannot load {ref}: {exc}")
    return problems


def plan_json_schema() -> dict[str, Any]:
    """The JSON Schema shipped with the package (generated from :class:`Plan`)."""
    text = resources.files("trestle").joinpath("schema/plan.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def generate_plan_json_schema() -> dict[str, Any]:
    """Build the schema from the models; a test keeps the shipped copy in step with it."""
    schema = Plan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Trestle plan file"
    return schema
