"""A run's plan file and its ``python:`` code, read-only to its own steps.

A plan kept in the workspace it runs in (the usual layout) is read once, when the run
is created, and its ``python:`` code is pinned by SHA-256: a step that rewrote either
would not change its own run. It would change the next one: ``approval: auto`` on an
irreversible step, or code the next driver runs outside the sandbox. So every command
of the run, and of the child runs it delegates to, sees them read-only, as root and as
a normal user, and the agent's file tools refuse them; what cannot be held (a file
with a second name) is said at the drive's start.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_approvals_cli import Cli, flat, run_id_of
from test_boundary import USER, Target, UserCli, _chown_tree, driver
from test_sandbox import _attack, _require_bwrap
from test_tools import World
from trestle.execution.sandbox import choose
from trestle.tools.base import ToolContext, ToolFailure
from trestle.tools.jail import atomic_write, resolve_for_write
from trestle.trust import known_plans

__all__ = ["driver"]  # the fixture, run as root and as uid 1000

HOOK = "def go(ctx):\n    return True\n"

# each tried by the run's own step and by a step of the child run it delegates to
REWRITES = {
    "append to the plan": "echo '    approval: auto' >> sub/plan.yaml",
    "empty the plan": ": > sub/plan.yaml",
    "rename a new plan over it": "cp sub/plan.yaml sub/new && mv -f sub/new sub/plan.yaml",
    "remove the plan": "rm -f sub/plan.yaml && test ! -e sub/plan.yaml",
    "rename the directory of the plan": "mv sub moved",
    "make it writable": "chmod 666 sub/plan.yaml && test -w sub/plan.yaml",
    "a second name, written": "ln sub/plan.yaml second && echo x >> second",
    "rewrite the hook": "echo 'import os' >> sub/hooks.py",
    "rename a new hook over it": "cp sub/hooks.py h && mv -f h sub/hooks.py",
}


def _probe(prefix: str, indent: str) -> str:
    """A step's ``run:`` trying each rewrite, at ``indent``."""
    body = "".join(
        f"{indent}  {_attack(f'{prefix}{what}', cmd)}\n" for what, cmd in REWRITES.items()
    )
    return f"{indent}run: |\n{body}{indent}  echo ran >> ran.txt\n"


PLAN = (
    "goal: leave the next run of this plan a plan of the step's own\n"
    "steps:\n"
    "  - id: probe\n"
    "    approval: auto\n"
    f"{_probe('', '    ')}"
    "  - id: child\n"
    "    needs: [probe]\n"
    "    delegate:\n"
    "      goal: the same from a child run\n"
    "      plan:\n"
    "        steps:\n"
    "          - id: probe\n"
    "            approval: auto\n"
    f"{_probe('child: ', '            ')}"
    "  - id: hook\n"
    "    needs: [child]\n"
    "    python: hooks:go\n"
)


def _workspace(tmp_path: Path) -> tuple[Cli, dict[str, str]]:
    """The CLI in ``tmp_path/ws``, its store beside it, and a configuration directory
    of its own (where the plans run are noted) for each command's environment."""
    cli = Cli(dir=tmp_path / "ws", store=tmp_path / "state" / "trestle.db")
    return cli, {"XDG_CONFIG_HOME": str(tmp_path / "config")}


def _owner(cli: UserCli) -> int:
    return USER if cli.uid is not None else os.getuid()


def test_no_step_of_the_run_or_its_child_rewrites_its_plan_or_code_as_root_or_a_user(
    driver: tuple[UserCli, Target],
) -> None:
    cli, _ = driver
    plan = cli.write("sub/plan.yaml", PLAN)
    hook = cli.write("sub/hooks.py", HOOK)
    _chown_tree(cli.dir, _owner(cli))
    before = plan.read_bytes(), hook.read_bytes()

    ran = cli("run", "sub/plan.yaml", "-w", ".", "--no-live")

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert cli.lines("ran.txt") == ["ran", "ran"], "a probe did not run"
    got = cli.lines("got.txt")
    assert got == [], f"{len(got)} of {2 * len(REWRITES)} rewrites worked: {got}"
    assert (plan.read_bytes(), hook.read_bytes()) == before
    assert not (cli.dir / "moved").exists() and not (cli.dir / "second").exists()
    said = flat(ran.stdout)
    assert f"read-only to commands (plan files and their python: code): {plan}, {hook}" in said


def test_a_plan_with_a_second_name_is_said_at_the_start_and_by_show(tmp_path: Path) -> None:
    """A hard link elsewhere in the workspace writes the same file: no mount of the
    plan's own name keeps a command from it."""
    _require_bwrap()
    cli = Cli(dir=tmp_path, store=tmp_path / "state" / "trestle.db")
    plan = cli.write("plan.yaml", "steps:\n  - id: a\n    run: echo a\n")
    os.link(plan, tmp_path / "copy.yaml")

    ran = cli("run", "plan.yaml", "--no-live")

    assert ran.returncode == 0, ran.stdout + ran.stderr
    warning = f"{plan} has 2 names (hard links): a step's command can change it"
    assert warning in flat(ran.stdout)
    shown = cli("show", run_id_of(ran))
    assert warning in flat(shown.stdout), shown.stdout
    assert "read-only to commands (plan files" not in flat(ran.stdout)


def test_the_file_tools_refuse_the_runs_plan_and_code_and_write_the_rest(
    tmp_path: Path,
) -> None:
    w = World(tmp_path)
    plan = w.write("plans/release.yaml", "steps: []\n")
    w.write("notes.md", "notes\n")
    kept = (Path(os.path.realpath(plan)),)
    w.ctx = ToolContext(workspace=w.ws, run_id="r", step_id="s", sandbox=choose("off", kept=kept))

    calls = {
        "write_file": {"path": "plans/release.yaml", "content": "steps: []\n# mine\n"},
        "edit_file": {"path": "./plans/../plans/release.yaml", "old": "[]", "new": "[x]"},
    }
    for name, args in calls.items():
        obs = asyncio.run(w.registry.call(name, json.dumps(args), w.ctx, w.gate))
        assert "is a plan file or its python: code" in obs.content, obs.content
    assert plan.read_text() == "steps: []\n"
    wrote = w.call("write_file", {"path": "notes.md", "content": "more\n"})
    assert not wrote.content.startswith("error"), wrote.content


def test_another_run_in_the_workspace_cannot_rewrite_a_plan_run_from_there(
    tmp_path: Path,
) -> None:
    """Plan ``a`` ran here before; plan ``b``'s step tries to leave ``a`` a step of its
    own. The plan files an account has run are noted outside every sandbox, and every
    later run in their workspace holds them read-only."""
    _require_bwrap()
    cli, config = _workspace(tmp_path)
    a = cli.write("a.yaml", "steps:\n  - id: hook\n    python: hooks:go\n")
    hook = cli.write("hooks.py", HOOK)
    assert cli("run", "a.yaml", "--no-live", **config).returncode == 0
    rewrite = {k: v.replace("sub/plan.yaml", "a.yaml") for k, v in REWRITES.items()}
    rewrite = {k: v.replace("sub/hooks.py", "hooks.py") for k, v in rewrite.items()}
    probes = "".join(f"      {_attack(what, cmd)}\n" for what, cmd in rewrite.items())
    cli.write("b.yaml", f"steps:\n  - id: b\n    approval: auto\n    run: |\n{probes}")
    before = a.read_bytes(), hook.read_bytes()

    ran = cli("run", "b.yaml", "--no-live", **config)

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert cli.lines("got.txt") == []
    assert (a.read_bytes(), hook.read_bytes()) == before
    [line] = [x for x in ran.stdout.splitlines() if x.startswith("commands sandboxed")]
    assert line.endswith(f"(plan files and their python: code): {a.parent / 'b.yaml'}, {a}, {hook}")
    # another account's list (a fresh configuration directory) knows nothing of them
    other = {"XDG_CONFIG_HOME": str(tmp_path / "other")}
    cli.write("c.yaml", "steps:\n  - id: c\n    run: echo '# c' >> a.yaml\n")
    assert cli("run", "c.yaml", "--no-live", **other).returncode == 0
    assert a.read_text().endswith("# c\n")


def test_a_write_step_through_a_link_a_step_planted_cannot_rewrite_a_plan_run_before(
    tmp_path: Path,
) -> None:
    """The driver writes a ``write:`` step's file itself, outside the sandbox, beneath
    the workspace but following its links: plan ``b``'s command pointed ``out`` at the
    workspace, and its ``write:`` step to ``out/a.yaml`` rewrote plan ``a``."""
    cli, config = _workspace(tmp_path)
    a = cli.write("a.yaml", "steps:\n  - id: a\n    run: 'true'\n")
    assert cli("run", "a.yaml", "--no-live", **config).returncode == 0
    before = a.read_bytes()
    cli.write(
        "b.yaml",
        "steps:\n  - id: link\n    run: ln -s . out\n"
        "  - id: w\n    needs: [link]\n"
        "    write: {path: out/a.yaml, content: 'steps: [{id: a, run: x, approval: auto}]'}\n",
    )

    ran = cli("run", "b.yaml", "--no-live", **config)

    assert a.read_bytes() == before, "a write step rewrote a plan run before"
    assert ran.returncode != 0, ran.stdout
    assert "cannot write 'out/a.yaml': it is a plan file" in flat(ran.stdout)


def test_the_file_tools_do_not_follow_a_link_swapped_in_after_the_path_was_judged(
    tmp_path: Path,
) -> None:
    """A command running meanwhile (an MCP server, another step) turns ``notes`` into a
    link to the plan's directory between the tool's look at the path and its write,
    which the driver makes itself, outside the sandbox."""
    w = World(tmp_path)
    plan = w.write("plans/release.yaml", "steps: []\n")
    w.write("notes/release.yaml", "notes\n")
    kept = (Path(os.path.realpath(plan)),)
    w.ctx = ToolContext(workspace=w.ws, run_id="r", step_id="s", sandbox=choose("off", kept=kept))

    target = resolve_for_write(w.ctx, "notes/release.yaml")  # a file of its own: allowed
    shutil.rmtree(w.ws / "notes")
    (w.ws / "notes").symlink_to("plans")
    with pytest.raises(ToolFailure, match="is a plan file or its python: code"):
        atomic_write(w.ctx, "notes/release.yaml", target, "steps: [{approval: auto}]\n")
    assert plan.read_text() == "steps: []\n"


def test_a_plan_first_run_while_another_run_goes_on_is_held_from_its_next_command(
    tmp_path: Path,
) -> None:
    """Run ``b`` chose its sandbox before plan ``a`` was first run (from another
    terminal); ``b``'s next command rewrote ``a``, and the next run of ``a`` obeyed it."""
    _require_bwrap()
    cli, config = _workspace(tmp_path)
    a = cli.write("a.yaml", "steps:\n  - id: a\n    run: 'true'\n")
    cli.write(
        "b.yaml",
        "steps:\n  - id: wait\n    run: touch started; while [ ! -e go ]; do sleep 0.05; done\n"
        "  - id: w\n    needs: [wait]\n    approval: auto\n    run: echo '# b' >> a.yaml\n",
    )
    b = subprocess.Popen(
        [*cli.launcher(), "run", "b.yaml", "--no-live"],
        cwd=cli.dir,
        env=cli.env(**config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        while not (cli.dir / "started").exists() and b.poll() is None:
            time.sleep(0.05)
        assert cli("run", "a.yaml", "--no-live", **config).returncode == 0
        (cli.dir / "go").touch()
        out, _ = b.communicate(timeout=60)
    finally:
        b.kill()
        b.wait()

    assert a.read_text() == "steps:\n  - id: a\n    run: 'true'\n", out
    assert "cannot create a.yaml: Read-only file system" in out


def test_the_list_of_plans_run_keeps_every_line_appended_at_once_and_its_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 80 notes made at once land in no order (a writer can wait at the lock while
    the others append, under load past 60 of them), so the newest the rewrite keeps
    are the 10 noted one after another after them, and the 30 that made it grow."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(known_plans, "MAX_KNOWN", 40)
    monkeypatch.setattr(known_plans, "MAX_BYTES", 100 * len(f'"{tmp_path}/ws/p10.yaml"\n'))
    ws = tmp_path / "ws"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: known_plans.note_run_files([f"{ws}/p{i}.yaml"]), range(80)))
    assert sorted(known_plans.known_in(ws)) == sorted(f"{ws}/p{i}.yaml" for i in range(80))
    for i in range(10):  # 90 lines: not yet past MAX_BYTES
        known_plans.note_run_files([f"{ws}/y{i}.yaml"])
    assert len(known_plans.known_in(ws)) == 90
    known_plans.note_run_files([f"{ws}/x{i}\nline.yaml" for i in range(30)])  # compacted
    kept = known_plans.known_in(ws)
    newest = [f"{ws}/y{i}.yaml" for i in range(10)] + [f"{ws}/x{i}\nline.yaml" for i in range(30)]
    assert list(kept) == newest  # in the order noted
    with known_plans.known_file().open("a") as handle:
        handle.write(f'"{ws}/cut sh')  # a line a full disk cut short
    assert known_plans.known_in(ws) == kept
    assert known_plans.known_in(tmp_path / "w") == ()  # a sibling's name is not inside


def test_a_plan_file_a_delegation_names_is_held_as_its_parent_is(tmp_path: Path) -> None:
    _require_bwrap()
    cli, config = _workspace(tmp_path)
    child = cli.write("plans/child.yaml", "steps:\n  - id: c\n    run: echo child\n")
    cli.write(
        "plan.yaml",
        "steps:\n"
        "  - id: d\n    delegate: {goal: child work, plan: plans/child.yaml}\n"
        "  - id: w\n    needs: [d]\n    approval: auto\n"
        f"    run: {json.dumps(_attack('the run itself', 'echo x >> plans/child.yaml'))}\n",
    )
    emptied = json.dumps(_attack("another run", ": > plans/child.yaml"))
    cli.write("other.yaml", f"steps:\n  - id: o\n    run: {emptied}\n")
    before = child.read_bytes()

    for plan in ("plan.yaml", "other.yaml"):
        ran = cli("run", plan, "--no-live", **config)
        assert ran.returncode == 0, ran.stdout + ran.stderr

    assert cli.lines("got.txt") == []
    assert child.read_bytes() == before


def test_what_a_plans_module_imports_is_held_for_its_own_run_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``helper`` is the project's code the hook uses: the hook's run keeps it as it
    began, while later runs (an agent asked to change it) may write it."""
    _require_bwrap()
    cli = Cli(dir=tmp_path / "ws", store=tmp_path / "state" / "trestle.db")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    cli.write("helper.py", "X = 1\n")
    cli.write("hooks.py", "import helper\ndef go(ctx):\n    return helper.X == 1\n")
    edit = json.dumps(_attack("the run itself", "echo Y = 2 >> helper.py"))
    cli.write("a.yaml", f"steps:\n  - id: e\n    run: {edit}\n  - id: h\n    python: hooks:go\n")

    ran = cli("run", "a.yaml", "--no-live")

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert cli.lines("got.txt") == []
    held = [Path(p).name for p in known_plans.known_in(cli.dir.resolve())]
    assert held == ["a.yaml", "hooks.py"]


def test_a_plan_run_through_a_link_in_the_workspace_is_said(tmp_path: Path) -> None:
    """The real file is held; the link a later ``trestle run plans/x.yaml`` follows is
    the step's to repoint."""
    _require_bwrap()
    cli = Cli(dir=tmp_path, store=tmp_path / "state" / "trestle.db")
    cli.write("real/x.yaml", "steps:\n  - id: a\n    run: echo a\n")
    (tmp_path / "plans").symlink_to("real")

    linked = cli("run", "plans/x.yaml", "-w", ".", "--no-live")
    direct = cli("run", "real/x.yaml", "-w", ".", "--no-live")

    assert linked.returncode == 0 and direct.returncode == 0, linked.stderr + direct.stderr
    said = "WARNING: the plan plans/x.yaml is reached through a link in the workspace"
    assert said in flat(linked.stderr)
    assert f"run it by its real path ({tmp_path / 'real' / 'x.yaml'})" in flat(linked.stderr)
    assert "WARNING" not in direct.stderr


def test_what_a_hook_imports_that_changed_since_its_plan_last_ran_is_said(
    tmp_path: Path,
) -> None:
    """Later runs may write ``helper`` (the project's code); the next run of the plan
    imports it into the driver, so a change is said when that run starts."""
    _require_bwrap()
    cli, config = _workspace(tmp_path)
    helper = cli.write("helper.py", "X = 1\n")
    cli.write("hooks.py", "import helper\ndef go(ctx):\n    return True\n")
    cli.write("a.yaml", "steps:\n  - id: h\n    python: hooks:go\n")
    cli.write("b.yaml", "steps:\n  - id: b\n    run: echo 'X = 2' > helper.py\n")

    first = cli("run", "a.yaml", "--no-live", **config)
    same = cli("run", "a.yaml", "--no-live", **config)
    assert cli("run", "b.yaml", "--no-live", **config).returncode == 0  # not held for b
    changed = cli("run", "a.yaml", "--no-live", **config)

    assert first.returncode == same.returncode == changed.returncode == 0, changed.stderr
    assert "WARNING" not in first.stderr + same.stderr
    said = f"WARNING: {helper} changed since this plan last ran: its python: code imports it"
    assert said in flat(changed.stderr)
