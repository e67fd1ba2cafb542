"""Plan files: valid ones load, invalid ones are refused with file, step and field named."""

from __future__ import annotations

import importlib.util
import json
import py_compile
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import trestle
from trestle.core.errors import PlanError, RunError
from trestle.core.plan import Plan, critical_path, find_cycle, topological_order, waves
from trestle.formats.planfile import (
    generate_plan_json_schema,
    load_plan,
    parse_plan,
    plan_json_schema,
)
from trestle.formats.python_code import python_sources, resolve_callable

GOOD = """
goal: build and ship
parallelism: 4
steps:
  - id: build
    run: make build
    retries: 2
    backoff: {initial: 0.5, factor: 3, max: 4}
    verify:
      - file_exists: dist/app
      - file_contains: dist/VERSION
        regex: '^\\d+\\.\\d+'
      - command: test -s dist/app
        timeout: 5
  - id: config
    write: {path: app.toml, content: "debug = false\\n"}
  - id: test
    needs: [build, config]
    run: make test
    timeout: 120
  - id: lint
    needs: [build]
    run: make lint
    optional: true
  - id: ship
    needs: [test]
    run: ./ship.sh
    irreversible: true
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_plan(text, source="plan.yaml")
    assert str(info.value).startswith("plan.yaml:")
    return info.value.problems


def test_a_valid_plan_loads_with_its_defaults_and_graph() -> None:
    plan = parse_plan(GOOD, source="plan.yaml")
    assert plan.ids == ("build", "config", "test", "lint", "ship")
    build = plan.step("build")
    assert build.retries == 2 and len(build.verify) == 3
    assert [build.backoff.delay(n) for n in (1, 2, 3)] == [0.5, 1.5, 4.0]
    assert plan.step("config").rerunnable  # writes are idempotent by default
    assert not plan.step("build").rerunnable  # commands must say so
    assert not plan.step("ship").rerunnable
    assert waves(plan) == [["build", "config"], ["test", "lint"], ["ship"]]
    assert critical_path(plan) == ["build", "test", "ship"]
    assert [s.id for s in topological_order(plan)] == ["build", "config", "test", "lint", "ship"]


def test_load_plan_reads_a_file_and_names_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(GOOD)
    assert load_plan(path).goal == "build and ship"
    with pytest.raises(PlanError, match="file not found"):
        load_plan(tmp_path / "nope.yaml")


def test_yaml_syntax_errors_give_line_and_column() -> None:
    [problem] = problems_of("steps:\n  - id: a\n    run: [unclosed\n")
    assert problem == "invalid YAML at column 1: did not find expected ',' or ']'"
    assert str(PlanError("plan.yaml", [problem], [4])).startswith("plan.yaml:4: invalid YAML")


def test_cycles_are_named_in_run_order() -> None:
    [problem] = problems_of(
        "steps:\n"
        "  - {id: a, run: x, needs: [c]}\n"
        "  - {id: b, run: x, needs: [a]}\n"
        "  - {id: c, run: x, needs: [b]}\n"
    )
    assert problem == "dependency cycle: a -> b -> c -> a"


def test_unknown_and_duplicate_ids_suggest_the_right_one() -> None:
    problems = problems_of(
        "steps:\n"
        "  - {id: build, run: x}\n"
        "  - {id: build, run: y}\n"
        "  - {id: test, run: x, needs: [biuld]}\n"
        "  - {id: self, run: x, needs: [self]}\n"
    )
    assert "step 'build', field 'id': duplicate step id" in problems
    assert "step 'test', field 'needs': unknown step 'biuld' (did you mean 'build'?)" in problems
    assert "step 'self', field 'needs': a step cannot need itself" in problems


@pytest.mark.parametrize(
    ("step_yaml", "expected"),
    [
        ("{id: a}", "step 'a': missing action: give one of 'run', 'write', 'python' or 'delegate'"),
        ("{id: a, run: x, python: 'm:f'}", "step 'a': give only one action, not 'run' and"),
        ("{id: a, run: x, retries: many}", "step 'a', field 'retries': must be a whole number"),
        ("{id: a, run: x, retries: -1}", "step 'a', field 'retries': must be at least 0, not -1"),
        ("{id: a, run: x, colour: red}", "step 'a', field 'colour': unknown field"),
        ("{id: 'bad id', run: x}", "step 'bad id', field 'id': must start with a letter or digit"),
        ("{run: x}", "step #1, field 'id': required, but missing"),
        ("{id: a, run: x, timeout: 0}", "step 'a', field 'timeout': must be more than 0, not 0"),
        (
            "{id: a, run: x, irreversible: true, idempotent: true}",
            "step 'a': an irreversible step cannot also be idempotent",
        ),
        (
            "{id: a, run: x, verify: [{file_exists: f, command: c}]}",
            "step 'a', field 'verify[0]': a check needs exactly one of",
        ),
        (
            "{id: a, run: x, verify: [{comand: ls, timeout: 5}]}",
            "step 'a', field 'verify[0]': a check needs exactly one of: command, file_exists, "
            "file_contains, python; 'comand' is not one (did you mean 'command'?)",
        ),
        (
            "{id: a, run: x, verify: [{file_contains: f}]}",
            "step 'a', field 'verify[0]': give exactly one of 'text' or 'regex'",
        ),
        (
            "{id: a, run: x, verify: [{file_contains: f, regex: '('}]}",
            "step 'a', field 'verify[0]': invalid regex '('",
        ),
        ("{id: a, python: 'no colon'}", "step 'a', field 'python': must be 'module:function'"),
    ],
)
def test_step_problems_name_step_and_field(step_yaml: str, expected: str) -> None:
    problems = problems_of(f"steps:\n  - {step_yaml}\n")
    assert any(p.startswith(expected) for p in problems), problems


def test_plan_level_problems() -> None:
    assert problems_of("[1, 2]") == ["the top level must be a mapping with a 'steps' list"]
    for empty in ("", "# plan.yaml\n", "---\n"):
        assert problems_of(empty) == ["the file holds no plan (it is empty, or only comments)"]
    assert any("field 'steps'" in p for p in problems_of("goal: nothing to do\n"))
    assert any("field 'parallelism'" in p for p in problems_of("parallelism: 0\nsteps: []\n"))
    assert any("field 'version'" in p for p in problems_of("version: 2\nsteps: [{id: a, run: x}]"))


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        "steps:\n  - {id: a, retries: x}\n  - {id: b, run: x, timeout: -1}\n  - {run: y}\n"
    )
    assert len(problems) >= 3


def test_python_callables_are_found_but_never_imported_while_validating(tmp_path: Path) -> None:
    """A missing module is named up front; the module's code runs only with its step
    (its import here once let ``raise SystemExit(0)`` pass an invalid plan with exit 0)."""
    (tmp_path / "hooks.py").write_text("raise SystemExit(0)\n")
    text = "steps:\n  - {id: a, python: 'hooks:go', verify: [{python: 'hooks:go'}]}\n"
    parse_plan(text, base_dir=tmp_path)
    problems = problems_of_dir(
        "steps:\n  - {id: a, python: 'hooks:go'}\n  - {id: c, python: 'no_such_module:f'}\n"
        "  - {id: d, needs: [missing], run: x}\n",
        tmp_path,
    )
    assert problems == [  # in file order
        "step 'c', field 'python': cannot load no_such_module:f: no module named 'no_such_module'",
        "step 'd', field 'needs': unknown step 'missing'",
    ]


def problems_of_dir(text: str, base: Path) -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_plan(text, source="plan.yaml", base_dir=base)
    return info.value.problems


def test_find_cycle_on_a_dag_is_none() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None


def test_the_shipped_json_schema_matches_the_models() -> None:
    shipped = plan_json_schema()
    assert shipped == json.loads(json.dumps(generate_plan_json_schema()))
    assert shipped["title"] == "Trestle plan file"


def test_the_public_surface_is_complete_and_sorted() -> None:
    exported = set(trestle.__all__)
    assert trestle.__all__ == sorted(trestle.__all__, key=lambda n: (not n.isupper(), n))
    for name in exported:
        assert hasattr(trestle, name), name
    public = {n for n in vars(trestle) if not n.startswith("_") and n[0].isupper()}
    public_modules = {n for n in vars(trestle) if not n.startswith("_") and n.islower()}
    assert public - exported == set(), "public classes not in __all__"
    assert {"decide", "fold", "load_plan", "create_run"} <= exported
    assert public_modules  # submodules stay importable
    assert set(trestle._EXPORTS) | {"__version__"} == exported


def test_import_trestle_loads_nothing_until_a_name_is_used() -> None:
    code = "import sys, trestle; print(sorted(m for m in sys.modules if m.startswith('trestle')))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    # the package and its loader (in a package that loads nothing else)
    assert loaded.stdout.strip() == "['trestle', 'trestle.support', 'trestle.support.lazy']"


# --- python: modules are pinned when the run starts ---------------------------------------


@pytest.fixture
def module_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A module name no other test imports; forgotten afterwards."""
    name = "pinned_" + re.sub(r"\W", "_", request.node.name)
    yield name
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]


def _plan_calling(ref: str, base: Path) -> Plan:
    return parse_plan(
        f"steps:\n  - {{id: a, python: '{ref}', verify: [{{python: '{ref}'}}]}}\n", base_dir=base
    )


def test_a_module_is_imported_from_the_bytes_recorded_when_the_run_started(
    tmp_path: Path, module_name: str
) -> None:
    (tmp_path / f"{module_name}.py").write_text("def go(ctx):\n    return 41 + ctx\n")
    pins = python_sources(_plan_calling(f"{module_name}:go", tmp_path), tmp_path)
    assert list(pins) == [str(tmp_path / f"{module_name}.py")]
    go = resolve_callable(f"{module_name}:go", tmp_path, pins=pins, step="a")
    assert go(1) == 42


def test_a_module_this_process_imported_already_is_pinned_all_the_same(
    tmp_path: Path, module_name: str
) -> None:
    """The run may be created where its module was imported before (a test, a library
    caller) and driven by another process that never did."""
    (tmp_path / f"{module_name}.py").write_text("def go(ctx):\n    return True\n")
    resolve_callable(f"{module_name}:go", tmp_path)  # imported here, unpinned
    pins = python_sources(_plan_calling(f"{module_name}:go", tmp_path), tmp_path)
    assert list(pins) == [str(tmp_path / f"{module_name}.py")]


def test_a_module_a_step_rewrote_after_the_start_is_refused_not_run(
    tmp_path: Path, module_name: str
) -> None:
    source = tmp_path / f"{module_name}.py"
    source.write_text("def go(ctx):\n    return True\n")
    pins = python_sources(_plan_calling(f"{module_name}:go", tmp_path), tmp_path)
    marker = tmp_path.parent / f"{module_name}-ran"
    source.write_text(f"open({str(marker)!r}, 'w').close()\ndef go(ctx):\n    return True\n")
    with pytest.raises(RunError) as caught:
        resolve_callable(f"{module_name}:go", tmp_path, pins=pins, step="a")
    assert f"step 'a': {module_name}:go: {str(source)!r} changed after the run started" in str(
        caught.value
    )
    assert not marker.exists() and module_name not in sys.modules


def test_bytecode_planted_beside_a_pinned_module_is_never_loaded(
    tmp_path: Path, module_name: str
) -> None:
    """A .pyc whose header matches the source (size and mtime) is what a plain import
    loads; the pinned import compiles the checked source instead."""
    source = tmp_path / f"{module_name}.py"
    source.write_text("def go(ctx):\n    return 'honest'\n")
    pins = python_sources(_plan_calling(f"{module_name}:go", tmp_path), tmp_path)
    evil = tmp_path / "evil.py"
    evil.write_text("def go(ctx):\n    return 'planted'\n")
    stat = source.stat()
    cached = Path(importlib.util.cache_from_source(str(source)))
    cached.parent.mkdir(exist_ok=True)
    py_compile.compile(str(evil), cfile=str(cached))
    header = bytearray(cached.read_bytes())
    header[8:16] = struct.pack("<II", int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF)
    cached.write_bytes(bytes(header))
    assert resolve_callable(f"{module_name}:go", tmp_path, pins=pins, step="a")(None) == "honest"
    plain = f"import {module_name}; print({module_name}.go(None))"  # a plain import elsewhere
    loads = subprocess.run(
        [sys.executable, "-c", plain], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert loads.stdout == "planted\n"


def test_a_package_is_pinned_file_by_file_and_a_new_file_that_shadows_is_refused(
    tmp_path: Path, module_name: str
) -> None:
    package = tmp_path / module_name
    package.mkdir()
    (package / "__init__.py").write_text("LOADED = True\n")
    (package / "steps.py").write_text("def go(ctx):\n    return 'ok'\n")
    ref = f"{module_name}.steps:go"
    pins = python_sources(_plan_calling(ref, tmp_path), tmp_path)
    assert sorted(pins) == [str(package / "__init__.py"), str(package / "steps.py")]
    (package / "__init__.py").write_text("LOADED = 'by the step'\n")
    with pytest.raises(RunError, match=re.escape("__init__.py' changed after the run started")):
        resolve_callable(ref, tmp_path, pins=pins, step="a")
    (package / "__init__.py").write_text("LOADED = True\n")
    (package / "steps").mkdir()  # a package now comes before steps.py
    (package / "steps" / "__init__.py").write_text("def go(ctx):\n    return 'shadow'\n")
    with pytest.raises(RunError, match="was not there when the run started"):
        resolve_callable(ref, tmp_path, pins=pins, step="a")
