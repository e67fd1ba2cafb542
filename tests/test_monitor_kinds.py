"""``[monitors.kinds]`` names kinds of alert; the kinds the monitors raise are listed
once (:data:`~trestle.core.records.monitors.ALERT_KINDS`), so a misspelt key is refused
where it is instead of setting nothing and saying nothing."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import get_args

import trestle.monitors
from forked_cli import run_trestle
from test_cli import cli_env
from trestle.core.records.monitors import ALERT_KINDS, DEFAULT_KINDS, Malformed
from trestle.formats.policyfile import read_policy_file


def _raised_kinds() -> set[str]:
    """The ``kind=`` of every ``Alert(...)`` (or ``turn_alert(...)``, which passes its
    own ``kind`` on) the monitors' source makes; each must be a literal, so that these
    are the whole of them."""
    kinds: set[str] = set()
    for source in Path(trestle.monitors.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text("utf-8"))):
            called = getattr(getattr(node, "func", None), "id", "")
            if not isinstance(node, ast.Call) or called not in ("Alert", "turn_alert"):
                continue
            [kind] = [k.value for k in node.keywords if k.arg == "kind"]
            if isinstance(kind, ast.Name) and kind.id == "kind":
                continue  # the helper passing its parameter on
            if isinstance(kind, ast.Name) and kind.id == "problem":
                kinds.update(get_args(Malformed))  # a malformed turn, by its problem
                continue
            assert isinstance(kind, ast.Constant), f"{source.name}:{node.lineno}: not a literal"
            kinds.add(str(kind.value))
    return kinds


def test_the_listed_kinds_are_the_kinds_the_monitors_raise() -> None:
    assert _raised_kinds() == ALERT_KINDS


def test_a_misspelt_kind_is_refused_on_its_line_with_the_kind_meant(tmp_path: Path) -> None:
    policy = tmp_path / "trestle.toml"
    policy.write_text('[monitors.kinds]\nrepeated_action = "replan"\nactoin_cycle = "stop"\n')
    sha = hashlib.sha256(policy.read_bytes()).hexdigest()
    result = run_trestle(["policy", "accept", policy, "--sha256", sha], cwd=tmp_path, env=cli_env())
    assert result.returncode == 2, result.stderr
    assert f"{policy}:3: monitors.kinds: no monitor raises 'actoin_cycle'" in result.stderr
    assert "did you mean 'action_cycle'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_kinds_table_sets_its_kinds_and_keeps_the_others_defaults(tmp_path: Path) -> None:
    """A ``[monitors.kinds]`` table naming one kind replaced every default of the others:
    a claim the step's verification had already acted on (``note`` by default) was told
    to the model as a warning, and a changed test too. The table now sets what it names,
    over the defaults; a default it names is set as it says."""
    policy = tmp_path / "trestle.toml"
    policy.write_text('[monitors.kinds]\naction_cycle = "replan"\nstalled = "pause"\n')

    settings = read_policy_file(policy).monitors()

    assert settings is not None
    assert settings.kinds == {
        **DEFAULT_KINDS,
        "action_cycle": "replan",
        "stalled": "pause",
    }
    assert settings.kinds["hallucinated_success"] == settings.kinds["tests_changed"] == "note"
