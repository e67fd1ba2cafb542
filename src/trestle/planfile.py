"""Loading plan files: YAML in, a validated :class:`Plan` out, or every problem named.

Nothing here touches the store: a plan that fails to load leaves no trace.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import re
import stat
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

MAX_PLAN_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64  # nested YAML collections; real plans need about eight
MAX_NODES = 1_000_000  # values once aliases are expanded (``*a`` repeats ``&a``'s tree)


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file, or raise :class:`PlanError` naming every problem."""
    path = Path(path)
    text = read_text_file(path, MAX_PLAN_BYTES)
    return parse_plan(text, source=str(path), base_dir=path.parent)


def read_text_file(path: Path, limit: int) -> str:
    """A regular file's UTF-8 text, at most ``limit`` bytes, or a PlanError saying why not.

    A FIFO, device, socket or directory is refused by its type before anything is read
    (a FIFO would block, ``/dev/zero`` never ends); it is opened non-blocking besides,
    in case it is swapped between the look and the open.
    """
    source = str(path)
    try:
        kind = path.stat().st_mode
        if not stat.S_ISREG(kind):
            raise PlanError(source, [f"not a regular file ({_file_type(kind)})"])
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise PlanError(source, ["not a regular file"])
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise PlanError(source, ["file not found"]) from None
    except OSError as exc:
        raise PlanError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    if len(data) > limit:
        raise PlanError(source, [f"larger than {limit:,} bytes"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(source, [f"cannot read: not UTF-8 text (byte {exc.start})"]) from None


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


# libyaml when present: the pure-Python parser takes seconds per 100,000 list items
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(text: str) -> Any:
    """Safe YAML, once its nesting is known to stay within :data:`MAX_DEPTH` (deeper
    documents exhaust the recursion of the constructor and of every later reader)."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(
                    problem=f"nested more than {MAX_DEPTH} levels deep",
                    problem_mark=event.start_mark,  # type: ignore[arg-type]
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return yaml.load(text, Loader=_LOADER)


def parse_plan(text: str, *, source: str = "<plan>", base_dir: Path | None = None) -> Plan:
    """Validate plan text. Nothing in it is imported or run: a ``python:`` callable is
    only looked for on disk (``base_dir`` and the workspace) and loaded when it runs."""
    try:
        raw = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlanError(source, [f"{where}invalid YAML: {problem}"]) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # e.g. an integer longer than Python converts (4,300 digits), a float too big
        raise PlanError(source, [f"invalid value: {_short(str(exc))}"]) from None
    if _expanded_size(raw) > MAX_NODES:
        raise PlanError(source, [f"more than {MAX_NODES:,} values once aliases are expanded"])
    bad_text = _bad_text_at(raw)
    if bad_text is not None:
        raise PlanError(source, [bad_text])
    if not isinstance(raw, dict):
        raise PlanError(source, ["the top level must be a mapping with a 'steps' list"])
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        errors = [err for err in exc.errors() if not only_items_failed(err)]
        raise PlanError(source, [_locate(err, raw) for err in errors]) from None
    problems = graph_problems(plan.steps)
    problems += _missing_modules(plan, base_dir or Path.cwd())
    if problems:
        raise PlanError(source, problems)
    return plan


def _expanded_size(raw: object) -> int:
    """How many values ``raw`` holds counting each alias use, stopping past the limit."""
    count, todo = 0, [raw]
    while todo and count <= MAX_NODES:
        node = todo.pop()
        count += 1
        if isinstance(node, dict):
            todo.extend(node.keys())
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return count


# C0 and C1 control characters but tab, newline and carriage return; YAML refuses them
# written raw, and lets them in through escapes ("\e", "\x07"), where they would drive
# the terminal of whoever reads the plan, its report or its approval card
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_text_at(raw: object) -> str | None:
    """Where a string holds what is not text (an unpaired surrogate: it cannot be stored
    or printed) or a control character, as one problem; None when all is well. A file's
    ``write.content`` may hold control characters: it is data, not shown raw."""
    todo: list[tuple[object, str]] = [(raw, "")]
    while todo:
        node, where = todo.pop()
        if isinstance(node, str):
            place = f"value at {where or 'the top level'!r}"
            if _SURROGATE.search(node):
                return f"{place}: contains an unpaired surrogate (not text)"
            control = _CONTROL.search(node)
            if control and not where.endswith(".write.content"):
                return f"{place}: contains control character U+{ord(control.group()):04X}"
        elif isinstance(node, dict):
            for key, value in node.items():
                name = _SURROGATE.sub("?", key) if isinstance(key, str) else repr(key)
                todo.append((key, f"{where}(key)"))
                todo.append((value, f"{where}.{name}" if where else name))
        elif isinstance(node, list):
            todo.extend((item, f"{where}[{i}]") for i, item in enumerate(node))
    return None


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
        prefix = f"step {_short(repr(step_id), 80)}" if isinstance(step_id, str) else ""
        prefix = prefix or f"step #{index + 1}"
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


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _missing_modules(plan: Plan, base_dir: Path) -> list[str]:
    """Callables whose top-level module cannot be found. Found without importing: a
    module's code (even a package's ``__init__``) runs only when its step or check runs."""
    search = [str(base_dir), str(base_dir / plan.workspace), *sys.path]
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
            top = ref.partition(":")[0].partition(".")[0]
            if top in sys.builtin_module_names or top in sys.modules:
                continue
            if importlib.machinery.PathFinder.find_spec(top, search) is None:
                problems.append(
                    f"step {step.id!r}, field {field!r}: cannot load {ref}: no module named {top!r}"
                )
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
