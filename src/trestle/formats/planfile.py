"""Loading plan files: YAML in, a validated :class:`Plan` out, or every problem named.

Nothing here touches the store: a plan that fails to load leaves no trace.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import posixpath
import re
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError

from trestle.core.errors import PlanError
from trestle.core.field_problems import (
    did_you_mean,
    field_path,
    only_items_failed,
    plain_message,
    user_loc,
)
from trestle.core.plan import (
    PYTHON_REF_PATTERN,
    STEP_ID_PATTERN,
    Plan,
    graph_problems,
)
from trestle.formats.exec_limits import limit_problems
from trestle.formats.text_files import MAX_PLAN_BYTES, read_text_file

MAX_DEPTH = 64  # nested YAML collections; real plans need about eight
MAX_NODES = 1_000_000  # values once aliases are expanded (``*a`` repeats ``&a``'s tree)


MAX_INCLUDE_DEPTH = 8  # plan files a delegation names, one inside another


def load_plan(
    path: str | Path, *, read: list[Path] | None = None, _including: tuple[Path, ...] = ()
) -> Plan:
    """Read and validate a plan file, or raise :class:`PlanError` naming every problem.

    A delegation's ``plan:`` may name another plan file (relative to this one): it is
    read here, so the run records the child's whole plan and never reads it again.
    ``read``, where given, gets the real path of each such file appended.
    """
    path = Path(path)
    text = read_text_file(path, MAX_PLAN_BYTES)
    return parse_plan(
        text,
        source=str(path),
        base_dir=path.parent,
        _including=(*_including, path.resolve()),
        _read=read,
    )


def plan_workspace(plan: Plan, path: str | Path) -> Path:
    """The directory the plan at ``path`` names as its workspace (relative to the plan
    file), or a :class:`PlanError` at the ``workspace:`` line when it is not one."""
    path = Path(path)
    workspace = path.parent / plan.workspace
    if workspace.is_dir():
        return workspace
    why = "does not exist" if not workspace.exists() else "is not a directory"
    problem = f"field 'workspace': {str(workspace)!r} {why} (or run with -w DIR)"
    try:
        line = _Lines(read_text_file(path, MAX_PLAN_BYTES)).of(["workspace"])
    except PlanError:  # the file changed since it was loaded: no line, same problem
        line = None
    raise PlanError(str(path), [problem], [line])


# libyaml when present: the pure-Python parser takes seconds per 100,000 list items
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# what stands for a key or a value in a mapping
_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)


def _load_yaml(text: str) -> Any:
    """Safe YAML, once its nesting is known to stay within :data:`MAX_DEPTH` (deeper
    documents exhaust the recursion of the constructor and of every later reader), and
    no mapping gives a key twice: YAML keeps the last, so a reader who saw ``approval:
    confirm`` above a later ``approval: auto`` read a plan that was not the one run."""
    too_deep = f"nested more than {MAX_DEPTH} levels deep"
    # for each collection open: a mapping's keys so far and whether a key comes next;
    # None for a sequence
    open_: list[tuple[set[str], list[bool]] | None] = []
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if open_ and open_[-1] is not None and isinstance(event, _NODE_EVENTS):
                keys, at_key = open_[-1]
                if at_key[0] and isinstance(event, yaml.ScalarEvent):
                    if event.value in keys and event.value != "<<":
                        twice = f"the key {_short(repr(event.value), 60)} is given twice"
                        raise yaml.MarkedYAMLError(problem=twice, problem_mark=event.start_mark)  # type: ignore[arg-type]
                    keys.add(event.value)
                at_key[0] = not at_key[0]
            if isinstance(event, yaml.CollectionStartEvent):
                open_.append((set(), [True]) if isinstance(event, yaml.MappingStartEvent) else None)
                if len(open_) > MAX_DEPTH:
                    raise yaml.MarkedYAMLError(
                        problem=too_deep,
                        problem_mark=event.start_mark,  # type: ignore[arg-type]
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                open_.pop()
    except yaml.MarkedYAMLError as exc:
        # libyaml (from PyYAML 6.0.4) refuses 1,000 levels itself, often while it scans
        # ahead, before the count above has seen them: the same refusal, said the same way
        if "maximum nesting depth" not in str(exc.problem):
            raise
        raise yaml.MarkedYAMLError(problem=too_deep, problem_mark=exc.problem_mark) from None
    return yaml.load(text, Loader=_LOADER)


def parse_plan(
    text: str,
    *,
    source: str = "<plan>",
    base_dir: Path | None = None,
    _including: tuple[Path, ...] = (),
    _read: list[Path] | None = None,
) -> Plan:
    """Validate plan text. Nothing in it is imported or run: a ``python:`` callable is
    only looked for on disk (``base_dir`` and the workspace) and loaded when it runs.

    Raises:
        PlanError: every problem at once, each with its line in the file.
    """
    try:
        raw = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is None:
            raise PlanError(source, [f"invalid YAML: {problem}"]) from None
        where = f"invalid YAML at column {mark.column + 1}"
        raise PlanError(source, [f"{where}: {problem}"], [mark.line + 1]) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # e.g. an integer longer than Python converts (4,300 digits), a float too big
        raise PlanError(source, [f"invalid value: {_short(str(exc))}"]) from None
    if _expanded_size(raw) > MAX_NODES:
        raise PlanError(source, [f"more than {MAX_NODES:,} values once aliases are expanded"])
    bad_text = _bad_text_at(raw)
    if bad_text is not None:
        # the rest is not looked at: messages quote values, and these must not be shown
        loc, problem = bad_text
        raise PlanError(source, [problem], [_Lines(text).of(loc)])
    if raw is None:  # an empty file, or only comments: say that, not what is missing
        raise PlanError(source, ["the file holds no plan (it is empty, or only comments)"], [1])
    if not isinstance(raw, dict):
        raise PlanError(source, ["the top level must be a mapping with a 'steps' list"], [1])
    found: list[_Problem] = _child_plan_files(raw, base_dir or Path.cwd(), _including, _read)
    unread = {p.loc for p in found}  # a plan file named there: its problem says it all
    outside = _writes_outside(raw) + _checks_outside(raw)
    unread |= {p.loc for p in outside}  # said once, by the problem that quotes the path
    plan: Plan | None = None
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        schema = [_schema_problem(err) for err in exc.errors() if not only_items_failed(err)]
        found += [p for p in schema if not any(p.loc[: len(u)] == u for u in unread)]
    found += _graph_problems(raw)
    found += outside
    found += _missing_modules(raw, base_dir or Path.cwd())
    found += _unpriced_under_cost(raw)
    found += _bad_agent_urls(raw)
    found += _bad_ignore_globs(raw)
    # what would fail every start of a command, refused now rather than then
    found += [_Problem(loc, message) for loc, message in limit_problems(raw)]
    if found or plan is None:
        lines = _Lines(text)
        # in file order: what the user reads top to bottom and fixes in one pass
        placed = sorted(
            ((lines.of(p.loc), i, _described(p, raw)) for i, p in enumerate(found)),
            key=lambda item: (item[0] or 0, item[1]),
        )
        raise PlanError(source, [m for _, _, m in placed], [line for line, _, _ in placed])
    return plan


class _Problem(NamedTuple):
    """A problem at ``loc`` in the raw document (``("steps", 2, "needs", 0)``); ``field``
    is how much of it the message names (a need is named by the message itself)."""

    loc: tuple[str | int, ...]
    message: str
    field: tuple[str | int, ...] | None = None


_PATTERN_WORDS = {
    STEP_ID_PATTERN: "must start with a letter or digit and hold only those, '_', '.' and '-'",
    PYTHON_REF_PATTERN: "must be 'module:function' (such as 'checks.db:ready')",
}


def _schema_problem(err: Any) -> _Problem:
    loc, known = user_loc(Plan, err["loc"])
    message = plain_message(err, _PATTERN_WORDS)
    if err["type"] == "extra_forbidden" and loc:
        message += did_you_mean(str(loc[-1]), known)
    return _Problem(tuple(loc), message)


def _described(problem: _Problem, raw: dict[str, Any]) -> str:
    """``step 'build', field 'verify[0].command': <message>``: the step by its id (its
    position when it has none), then the field within it."""
    loc = list(problem.loc if problem.field is None else problem.field)
    where = []
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        where.append(_step_name(raw, loc[1]))
        loc = loc[2:]
    if loc:
        where.append(f"field {field_path(loc)!r}")
    return f"{', '.join(where)}: {problem.message}" if where else problem.message


def _step_name(raw: dict[str, Any], index: int) -> str:
    steps = raw.get("steps")
    step = steps[index] if isinstance(steps, list) and index < len(steps) else None
    step_id = step.get("id") if isinstance(step, dict) else None
    return f"step {_short(repr(step_id), 80)}" if isinstance(step_id, str) else f"step #{index + 1}"


def _raw_steps(raw: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    steps = raw.get("steps")
    if not isinstance(steps, list):
        return []
    return [(i, step) for i, step in enumerate(steps) if isinstance(step, dict)]


def _graph_problems(raw: dict[str, Any]) -> list[_Problem]:
    """The graph's problems among the steps that have an id, whatever else is wrong:
    a bad ``needs`` is reported with the rest, not in a later round."""
    graph: list[_Node] = []
    index: list[int] = []
    for i, step in _raw_steps(raw):
        step_id, needs = step.get("id"), step.get("needs", [])
        if isinstance(step_id, str):
            usable = isinstance(needs, list) and all(isinstance(n, str) for n in needs)
            graph.append(_Node(step_id, needs if usable else []))  # else refused by type
            index.append(i)
    problems = []
    for problem in graph_problems(graph):
        loc = ("steps", index[problem.step], *problem.field)
        field = loc[:3] if problem.field else ()
        problems.append(_Problem(loc, problem.message, field))
    return problems


class _Node(NamedTuple):
    id: str
    needs: Sequence[str]


def _child_plan_files(
    raw: dict[str, Any], base_dir: Path, including: tuple[Path, ...], read: list[Path] | None
) -> list[_Problem]:
    """Read the plan files delegations name (``delegate: plan: research.yaml``) into
    ``raw``, in place; a file that cannot be read or names itself is a problem here,
    and one with problems of its own raises its own :class:`PlanError`."""
    problems: list[_Problem] = []
    for i, step in _raw_steps(raw):
        delegate = step.get("delegate")
        if not isinstance(delegate, dict) or not isinstance(delegate.get("plan"), str):
            continue
        loc = ("steps", i, "delegate", "plan")
        named = base_dir / delegate["plan"]
        try:
            child = named.resolve()
            regular = child.is_file()
        except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append(_Problem(loc, f"plan file {_short(repr(str(named)), 120)}: {why}"))
            continue
        if child in including:
            problems.append(_Problem(loc, f"{str(child)!r} is delegated to from inside itself"))
        elif len(including) >= MAX_INCLUDE_DEPTH:
            why = f"plan files nest more than {MAX_INCLUDE_DEPTH} deep through delegations"
            problems.append(_Problem(loc, why))
        elif not regular:
            why = "does not exist" if not child.exists() else "is not a regular file"
            problems.append(_Problem(loc, f"plan file {str(child)!r} {why}"))
        else:
            plan = load_plan(child, read=read, _including=including)
            if read is not None:
                read.append(child)
            delegate["plan"] = plan.model_dump(mode="json", exclude_defaults=True)
    return problems


def _writes_outside(raw: dict[str, Any]) -> list[_Problem]:
    """A ``write:`` whose path is absolute or climbs out with ``..``: refused here, not
    after a human approved it. (A symlink inside the workspace that leads out is the
    run's to refuse: it may not exist yet.)"""
    problems = []
    for i, step in _raw_steps(raw):
        write = step.get("write")
        path = write.get("path") if isinstance(write, dict) else None
        if not isinstance(path, str) or not path:
            continue
        normal = posixpath.normpath(path)
        if path.startswith("/") or normal == ".." or normal.startswith("../"):
            problems.append(
                _Problem(
                    ("steps", i, "write", "path"),
                    f"{_short(repr(path), 80)} leads outside the workspace: "
                    "give a path relative to the workspace, without '..'",
                )
            )
    return problems


def _unpriced_under_cost(raw: dict[str, Any]) -> list[_Problem]:
    """A delegated agent on a provider's model that has no price, under a cost budget
    (the delegation's, which a plan that limits cost must give every delegation): its
    calls' cost is unknown, so the limit could never be reached, as ``trestle agent``
    refuses for its own options."""
    from trestle.models.pricing import DEFAULT_PRICES
    from trestle.models.spec import PROVIDERS

    problems = []
    for i, step in _raw_steps(raw):
        delegate = step.get("delegate")
        agent = delegate.get("agent") if isinstance(delegate, dict) else None
        model = agent.get("model") if isinstance(agent, dict) else None
        budget = delegate.get("budget") if isinstance(delegate, dict) else None
        if not isinstance(model, str) or not isinstance(budget, dict) or "cost" not in budget:
            continue
        provider, _, name = model.partition(":")
        if provider in PROVIDERS and DEFAULT_PRICES.price_for(name) is None:
            problems.append(
                _Problem(
                    ("steps", i, "delegate", "agent", "model"),
                    f"{_short(repr(model), 80)} has no price in Trestle's price table, so "
                    "what its calls cost is unknown and a cost budget could never be "
                    "reached: limit its tokens instead",
                )
            )
    return problems


def _bad_agent_urls(raw: dict[str, Any]) -> list[_Problem]:
    """A delegated agent's ``base_url`` that is no server's address (``http://[::1``, a
    port past 65535): its model could not be built, and the run crashed at the child's
    start, then at every resume."""
    from trestle.support.urls import url_problem

    problems = []
    for i, step in _raw_steps(raw):
        delegate = step.get("delegate")
        agent = delegate.get("agent") if isinstance(delegate, dict) else None
        url = agent.get("base_url") if isinstance(agent, dict) else None
        wrong = url_problem(url) if isinstance(url, str) else None
        if wrong is not None:
            loc = ("steps", i, "delegate", "agent", "base_url")
            problems.append(
                _Problem(loc, f"{_short(repr(url), 80)} is not a server's address: {wrong}")
            )
    return problems


def _bad_ignore_globs(raw: dict[str, Any]) -> list[_Problem]:
    """A ``checkpoint_ignore`` glob the checkpoints cannot use (empty, ``/``, negated):
    refused at the first snapshot, after the run had begun, naming no file."""
    globs = raw.get("checkpoint_ignore")
    if not isinstance(globs, list):
        return []
    problems = []
    for i, glob in enumerate(globs):
        if not isinstance(glob, str):
            continue
        text = glob.strip()
        if not text or text == "/":
            problems.append(_Problem(("checkpoint_ignore", i), f"ignore glob {glob!r} is empty"))
        elif text.startswith("!"):
            why = f"ignore glob {glob!r}: negation is not supported"
            problems.append(_Problem(("checkpoint_ignore", i), why))
    return problems


def _checks_outside(raw: dict[str, Any]) -> list[_Problem]:
    """A ``file_exists`` or ``file_contains`` check whose path is absolute or climbs out
    with ``..``: such a check reads only inside the workspace, so it could never pass
    (and a file a command wrote to the sandbox's private /tmp is gone anyway)."""
    problems = []
    for i, step in _raw_steps(raw):
        checks = step.get("verify")
        for j, check in enumerate(checks if isinstance(checks, list) else []):
            for key in ("file_exists", "file_contains"):
                path = check.get(key) if isinstance(check, dict) else None
                if not isinstance(path, str) or not path:
                    continue
                normal = posixpath.normpath(path)
                if path.startswith("/") or normal == ".." or normal.startswith("../"):
                    problems.append(
                        _Problem(
                            ("steps", i, "verify", j, key),
                            f"{_short(repr(path), 80)} leads outside the workspace, and a "
                            "file check reads only inside it: give a path relative to the "
                            "workspace, without '..'",
                        )
                    )
    return problems


class _Lines:
    """Lines of places in a YAML document, from its composed nodes (parsed once, and
    only when there is a problem to place)."""

    def __init__(self, text: str) -> None:
        self._root: yaml.Node | None
        try:
            self._root = yaml.compose(text, Loader=_LOADER)
        except (yaml.YAMLError, ValueError, RecursionError):
            self._root = None
        self._keys: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}

    def of(self, loc: Sequence[str | int]) -> int | None:
        """The line of the deepest part of ``loc`` found: the key of a mapping entry,
        the start of a list item; the enclosing one for what is missing."""
        node, line = self._root, None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                entry = self._entries(node).get(str(part))
                if entry is None:
                    break
                line, node = entry[0].start_mark.line + 1, entry[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def _entries(self, node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        found = self._keys.get(id(node))
        if found is None:
            found = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    found.setdefault(str(key.value), (key, value))
            self._keys[id(node)] = found
        return found


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


def _bad_text_at(raw: object) -> tuple[tuple[str | int, ...], str] | None:
    """Where a string holds what is not text (an unpaired surrogate: it cannot be stored
    or printed) or a control character, as one problem; None when all is well. A file's
    ``write.content`` may hold control characters: it is data, not shown raw."""
    todo: list[tuple[object, tuple[str | int, ...], bool]] = [(raw, (), False)]
    while todo:
        node, loc, is_key = todo.pop()
        if isinstance(node, str):
            where = field_path([_SURROGATE.sub("?", p) if isinstance(p, str) else p for p in loc])
            place = f"{'key' if is_key else 'value'} at {where or 'the top level'!r}"
            if _SURROGATE.search(node):
                return loc, f"{place}: contains an unpaired surrogate (not text)"
            control = _CONTROL.search(node)
            if control and loc[-2:] != ("write", "content"):
                return loc, f"{place}: contains control character U+{ord(control.group()):04X}"
        elif isinstance(node, dict):
            for key, value in node.items():
                name: str | int = key if isinstance(key, str | int) else repr(key)
                todo.append((key, (*loc, name), True))
                todo.append((value, (*loc, name), False))
        elif isinstance(node, list):
            todo.extend((item, (*loc, i), False) for i, item in enumerate(node))
    return None


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _missing_modules(raw: dict[str, Any], base_dir: Path) -> list[_Problem]:
    """Callables whose top-level module cannot be found. Found without importing: a
    module's code (even a package's ``__init__``) runs only when its step or check runs."""
    workspace = raw.get("workspace")
    search = [str(base_dir), str(base_dir / (workspace if isinstance(workspace, str) else "."))]
    search += sys.path
    problems = []
    for i, step in _raw_steps(raw):
        refs: list[tuple[tuple[str | int, ...], object]] = [(("python",), step.get("python"))]
        checks = step.get("verify")
        for at, check in enumerate(checks if isinstance(checks, list) else []):
            if isinstance(check, dict):
                refs.append((("verify", at, "python"), check.get("python")))
        for field, ref in refs:
            if not isinstance(ref, str) or not re.fullmatch(PYTHON_REF_PATTERN, ref):
                continue  # absent, or already refused by its pattern
            top = ref.partition(":")[0].partition(".")[0]
            if top in sys.builtin_module_names or top in sys.modules:
                continue
            if importlib.machinery.PathFinder.find_spec(top, search) is None:
                message = f"cannot load {ref}: no module named {top!r}"
                problems.append(_Problem(("steps", i, *field), message))
    return problems


def plan_json_schema() -> dict[str, Any]:
    """The JSON Schema shipped with the package (generated from :class:`Plan`)."""
    text = resources.files("trestle").joinpath("schema/plan.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def generate_plan_json_schema() -> dict[str, Any]:
    """Build the schema from the models; a test keeps the shipped copy in step with it."""
    schema = Plan.model_json_schema()
    # in a file, a delegation's plan may also be the path of another plan file
    child_plan = schema["$defs"]["Delegation"]["properties"]["plan"]
    child_plan["anyOf"].insert(0, {"type": "string", "description": "a plan file's path"})
    # the file itself is a plan: its fields at the top, as editors read them best
    # (``$defs`` keeps Plan too, for a delegation's inline plan)
    top = {k: v for k, v in schema["$defs"]["Plan"].items() if k != "title"}
    # approver groups and rules are the operator's (trestle.toml): a plan is refused them
    for field in ("groups", "approvers"):
        schema["$defs"]["Policy"]["properties"].pop(field, None)
    for name in ("ApproverRule",):
        schema["$defs"].pop(name, None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Trestle plan file",
        **top,
        "$defs": schema["$defs"],
    }
