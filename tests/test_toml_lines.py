"""trestle.toml's problems name their line, as a plan file's do: a TOML syntax error
by tomllib's word, a problem found after parsing by where its key is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_cli import Cli
from trestle.formats.toml_lines import key_lines, line_of

PLAN = "goal: g\nsteps:\n  - id: a\n    run: 'true'\n"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / ".git").mkdir()  # the nearest trestle.toml is looked for up to here
    return Cli(tmp_path, tmp_path / "t.db")


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        (
            '[policy]\naudit_rate = 0.1\nrules = [\n  {name = "x"\n',
            ["trestle.toml:4: invalid TOML: "],
        ),
        (
            "[policy]\n# who decides\n[policy.groups.ops]\n\n[[policy.approvers]]\n"
            'groups = ["ops"]\ndeadline = "4 hours"\n',
            ["trestle.toml:7: policy.approvers[0].deadline: '4 hours' is not a duration"],
        ),
        (
            "[monitors]\nstall_after = 60\nloop_windw = 3\n",
            ["trestle.toml:3: monitors.loop_windw: unknown field"],
        ),
        (
            '[policy]\naudit_rate = "often"\n\n[policy.scope]\nwrite_path = ["a"]\n',
            [
                "trestle.toml:2: policy.audit_rate: must be a number, not 'often'",
                "trestle.toml:5: policy.scope.write_path: unknown field",
            ],
        ),
    ],
)
def test_a_bad_trestle_toml_names_its_line(cli: Cli, toml: str, said: list[str]) -> None:
    (cli.dir / "trestle.toml").write_text(toml, encoding="utf-8")
    cli.write("plan.yaml", PLAN)
    result = cli("run", "plan.yaml", "--no-live", "--no-prompt")
    assert result.returncode == 2, result.stdout + result.stderr
    for text in said:
        assert f"{cli.dir / text}" in result.stderr, result.stderr


def test_lines_skip_strings_arrays_and_inline_tables() -> None:
    text = (
        "[policy]\n"
        'auto_commands = [\n  "x = 1",\n  """\n[not.a.table]\n""",\n]\n'
        'scope.write_paths = ["a"]  # a dotted key\n'
        '[[policy.rules]]\nname = "a"\n'
        '[[policy.rules]]\n"name" = "b"\n'
        "[policy.rules.extra]\n"
        "tier = 'log'\n"
        'inline = {tier = "x"}\n'
    )
    lines = key_lines(text)
    assert lines[("policy",)] == 1
    assert lines[("policy", "auto_commands")] == 2
    assert ("x",) not in lines and ("not", "a", "table") not in lines
    assert lines[("policy", "scope")] == lines[("policy", "scope", "write_paths")] == 8
    assert lines[("policy", "rules", 0, "name")] == 10
    assert lines[("policy", "rules", 1, "name")] == 12
    assert lines[("policy", "rules", 1, "extra", "tier")] == 14
    assert line_of(lines, ["policy", "rules", 1, "extra", "inline", "tier"]) == 15
    assert line_of(lines, ["policy", "auto_commands", 0]) == 2
    assert line_of(lines, ["monitors"]) is None
