"""A ``trestle.toml`` a step can write is not the operator's policy until a human
accepts it: planted, changed and swapped files are refused before a run starts, a
running run keeps the policy it was created with, and every run says which policy it
runs under. Through the real console script, real bubblewrap and real files."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

import test_approvals_cli as approvals_cli
from forked_cli import run_trestle
from test_cli import Cli, flat

NOT_ACCEPTED = 9  # the CLI's exit code for a policy file no human accepted

# What a hostile step would like the operator's policy to say: everything runs without
# asking, with the network, and the approval key readable inside the sandbox.
HOSTILE = """\
[[policy.rules]]
name = "anything goes"
tier = "auto"
natures = ["read", "test", "write", "command", "call"]

[policy.sandbox]
network = ["*"]
read = ["{key_dir}"]
"""

STRICT = """\
[[policy.rules]]
name = "deploys need a human"
tier = "confirm"
tags = ["deploy"]
"""

# The run that profits from a planted policy: an irreversible step that copies the key.
PROFIT = """\
steps:
  - id: deploy
    run: cat {key} > stolen.txt
    irreversible: true
    tags: [deploy]
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hostile(key: Path) -> str:
    return HOSTILE.format(key_dir=key.parent)


def planting_plan(target: str, text: str) -> str:
    """A plan whose one step writes ``text`` to ``target`` from inside the sandbox."""
    body = json.dumps(text)  # a YAML double-quoted scalar: JSON's escapes are YAML's
    return (
        "steps:\n"
        f"  - id: plant\n"
        f"    run: printf '%s' \"$POLICY\" > {target}\n"
        f"    env: {{POLICY: {body}}}\n"
    )


@pytest.fixture
def repo(tmp_path: Path) -> Cli:
    """A workspace that is a repository's root (the policy search stops at it)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    return Cli(ws, tmp_path / "t.db")


def profited(cli: Cli, result: subprocess.CompletedProcess[str]) -> bool:
    """Did the irreversible step run without a human (and read the key)?"""
    stolen = cli.dir / "stolen.txt"
    return result.returncode == 0 and stolen.exists() and stolen.read_text().strip() != ""


def accept(cli: Cli, path: Path) -> subprocess.CompletedProcess[str]:
    """Accept ``path`` as an operator does from a script: by the hash of what they read."""
    done = cli("policy", "accept", path, "--sha256", digest(path))
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def refused_as_not_accepted(
    cli: Cli, result: subprocess.CompletedProcess[str], toml: Path, changed: bool = False
) -> None:
    """The run did not start: exit 9, nothing ran, no run recorded, and the message names
    the file, its hash, what changed and the command that accepts it."""
    assert not profited(cli, result), result.stdout
    assert result.returncode == NOT_ACCEPTED, result.stdout + result.stderr
    assert result.stdout == ""
    said = flat(result.stderr)
    real = toml.parent.resolve() / toml.name if toml.is_symlink() else toml.resolve()
    what = "this policy file changed since it was accepted on" if changed else "no one has"
    assert said.startswith(f"error: {real}: "), said
    assert what in said and digest(toml) in said and "the run did not start" in said
    assert f"`trestle policy accept {real}`" in said
    assert f"`--accept-policy {digest(toml)}`" in said
    runs = cli("runs", "--json")
    assert runs.returncode != 0 or all(r["goal"] != "deploy" for r in json.loads(runs.stdout))


def plant(cli: Cli, target: str, text: str, *args: str) -> None:
    cli.write("plant.yaml", planting_plan(target, text))
    done = cli("run", "plant.yaml", "--no-live", "--no-prompt", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (cli.dir / target).read_text() == text  # the step could write it: the attack is real


def deploy(cli: Cli, key: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cli.write("deploy.yaml", "goal: deploy\n" + PROFIT.format(key=key))
    return cli("run", "deploy.yaml", "--no-live", "--no-prompt", "--sandbox", "require", *args)


def test_a_policy_planted_by_a_sandboxed_step_is_not_obeyed(
    repo: Cli, _own_decision_key: Path
) -> None:
    key = _own_decision_key
    plant(repo, "trestle.toml", hostile(key), "--sandbox", "require")
    refused_as_not_accepted(repo, deploy(repo, key), repo.dir / "trestle.toml")


def test_a_policy_planted_where_the_next_run_has_its_workspace_is_not_obeyed(
    repo: Cli, _own_decision_key: Path
) -> None:
    key = _own_decision_key
    (repo.dir / "sub").mkdir()
    plant(repo, "sub/trestle.toml", hostile(key), "--sandbox", "require")
    sub = Cli(repo.dir / "sub", repo.store)
    refused_as_not_accepted(sub, deploy(sub, key), sub.dir / "trestle.toml")


def test_a_git_a_step_made_does_not_leave_an_accepted_policy_behind(repo: Cli) -> None:
    # the workspace a directory of the repository: the search for trestle.toml stopped at
    # the first .git on its way up, and a step's `: > .git` in its workspace ended it
    # there, so the next run obeyed no policy and its deploy ran without a human
    toml = repo.write("trestle.toml", STRICT)
    accept(repo, toml)
    app = Cli(repo.dir / "app", repo.store)
    (app.dir).mkdir()
    plan = "goal: {}\nsteps:\n  - {{id: deploy, run: echo deployed > done.txt, tags: [deploy]}}\n"
    app.write("deploy.yaml", plan.format("ship"))
    assert app("run", "deploy.yaml", "--no-live", "--no-prompt").returncode == 3  # asks
    plant(app, ".git", "", "--sandbox", "require")

    again = app("run", "deploy.yaml", "--no-live", "--no-prompt")
    said = flat(again.stderr)
    assert again.returncode == NOT_ACCEPTED, again.stdout + again.stderr
    assert not (app.dir / "done.txt").exists()
    assert f"error: {app.dir.resolve() / '.git'} ends the search for trestle.toml" in said
    assert "a policy file you accepted, lies above it" in said
    named = app("run", "deploy.yaml", "--no-live", "--no-prompt", "--policy", toml)
    assert named.returncode == 3, named.stdout + named.stderr  # obeyed: it still asks
    assert "(sha256 " in named.stdout and "accepted " in named.stdout
    toml.write_text(STRICT + "\n# changed by an earlier run's step\n")  # pinned still
    app.write("deploy.yaml", plan.format("deploy"))
    changed = app("run", "deploy.yaml", "--no-live", "--no-prompt", "--policy", toml)
    refused_as_not_accepted(app, changed, toml, changed=True)


def _asks(cli: Cli, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """A run of a step its policy (STRICT) makes ask: exit 3 when that policy holds."""
    cli.write(
        "ship.yaml", "goal: ship\nsteps:\n  - {id: ship, run: echo x > done.txt, tags: [deploy]}\n"
    )
    return cli("run", "ship.yaml", "--no-live", "--no-prompt", *args)


def test_an_accepted_policy_a_step_removed_or_linked_elsewhere_is_not_left_behind(
    repo: Cli, tmp_path: Path
) -> None:
    # a step of a run above deleted svc/trestle.toml, or made it a link to a policy the
    # operator accepted for another project: the next run obeyed none, or that one
    svc = Cli(repo.dir / "svc", repo.store)
    svc.dir.mkdir()
    toml = svc.write("trestle.toml", STRICT)
    accept(svc, toml)
    assert _asks(svc).returncode == 3
    loose = tmp_path / "scratch" / "trestle.toml"
    loose.parent.mkdir()
    loose.write_text("[policy]\nconfidence_threshold = 0.1\n")
    accept(repo, loose)

    toml.unlink()
    toml.symlink_to(loose)
    linked = _asks(svc)
    assert linked.returncode == NOT_ACCEPTED, linked.stdout + linked.stderr
    said = flat(linked.stderr)
    # its acceptance is of the file by that name, not of what a link there leads to
    assert f"{svc.dir.resolve() / 'trestle.toml'}: this policy file changed since" in said
    assert not (svc.dir / "done.txt").exists()

    toml.unlink()
    gone = _asks(svc)
    assert gone.returncode == NOT_ACCEPTED, gone.stdout + gone.stderr
    assert "a policy file you accepted, is gone" in flat(gone.stderr)
    assert not (svc.dir / "done.txt").exists()
    forgot = svc("policy", "forget", toml)
    assert forgot.returncode == 0, forgot.stderr
    assert _asks(svc).returncode == 0  # as the operator chose: no policy


def test_a_policy_named_through_a_link_to_a_file_outside_stays_pinned(
    repo: Cli, tmp_path: Path
) -> None:
    # --policy ops/policy.toml, accepted; a step made it a link to any file outside the
    # repository, which was then "outside the workspace: trusted as yours"
    (repo.dir / "ops").mkdir()
    named = repo.write("ops/policy.toml", STRICT)
    accept(repo, named)
    assert _asks(repo, "--policy", named).returncode == 3
    named.unlink()
    anything = tmp_path / "empty.toml"  # any regular file outside: a policy of defaults
    anything.write_text("")
    named.symlink_to(anything)
    result = _asks(repo, "--policy", named)
    assert result.returncode == NOT_ACCEPTED, result.stdout + result.stderr
    assert "this policy file changed since it was accepted" in flat(result.stderr)


def test_an_accepted_policy_changed_through_its_symlink_is_not_obeyed(
    repo: Cli, _own_decision_key: Path
) -> None:
    """The sandbox keeps a workspace's ``trestle.toml`` read-only, but not the file a
    symlink of that name points to: a step can rewrite that one."""
    key = _own_decision_key
    (repo.dir / "conf").mkdir()
    repo.write("conf/policy.toml", STRICT)
    (repo.dir / "trestle.toml").symlink_to("conf/policy.toml")
    accept(repo, repo.dir / "trestle.toml")
    plant(repo, "conf/policy.toml", hostile(key), "--sandbox", "require")
    result = deploy(repo, key)
    # named by the link, whose acceptance it is (a link a step made is one no one accepted)
    refused_as_not_accepted(repo, result, repo.dir / "trestle.toml", changed=True)


def test_an_accepted_policy_changed_by_an_unconfined_step_is_not_obeyed(
    repo: Cli, _own_decision_key: Path
) -> None:
    key = _own_decision_key
    toml = repo.write("trestle.toml", STRICT)
    accept(repo, toml)
    plant(repo, "trestle.toml", hostile(key), "--sandbox", "off")
    refused_as_not_accepted(repo, deploy(repo, key), toml, changed=True)


def test_trestle_agent_does_not_obey_a_planted_policy_either(
    repo: Cli, _own_decision_key: Path
) -> None:
    toml = repo.write("trestle.toml", hostile(_own_decision_key))
    args: list[str | Path] = ["agent", "steal", "--repo", repo.dir, "--model", "replay:/x.json"]
    result = repo(*args, "--no-live", "--no-prompt")
    assert result.returncode == NOT_ACCEPTED, result.stdout + result.stderr
    assert f"`trestle policy accept {toml.resolve()}`" in flat(result.stderr)


def test_a_planted_file_named_with_policy_is_pinned_too(repo: Cli, _own_decision_key: Path) -> None:
    key = _own_decision_key
    plant(repo, "ops.toml", hostile(key), "--sandbox", "require")
    result = deploy(repo, key, "--policy", "ops.toml")
    refused_as_not_accepted(repo, result, repo.dir / "ops.toml")


def test_a_planted_file_cannot_change_a_run_that_already_started(
    repo: Cli, _own_decision_key: Path
) -> None:
    """A run keeps the policy recorded in its first event: a file a step plants
    mid-run is not read when the run is resumed."""
    key = _own_decision_key
    repo.write(
        "both.yaml",
        planting_plan("trestle.toml", hostile(key))
        + "  - id: deploy\n"
        + f"    needs: [plant]\n    run: cat {key} > stolen.txt\n    irreversible: true\n",
    )
    first = repo("run", "both.yaml", "--no-live", "--no-prompt", "--sandbox", "require")
    assert first.returncode == 3, first.stdout + first.stderr  # deploy waits for a human
    assert (repo.dir / "trestle.toml").read_text() == hostile(key)
    run_id = first.stdout.split()[1]
    again = repo("resume", run_id, "--no-live", "--no-prompt", "--sandbox", "require")
    assert again.returncode == 3, again.stdout + again.stderr
    assert not (repo.dir / "stolen.txt").exists()
    shown = flat(repo("show", run_id).stdout)
    assert "policy: no policy file: the plan's policy and the defaults" in shown


def test_an_accepted_policy_is_obeyed_and_named_in_the_header_show_and_the_log(
    repo: Cli,
) -> None:
    toml = repo.write("trestle.toml", STRICT)
    repo.write("plan.yaml", "steps:\n  - {id: a, run: 'true'}\n")
    done = accept(repo, toml)
    assert done.stdout.strip() == f"accepted {toml.resolve()} (sha256 {digest(toml)})"
    result = repo("run", "plan.yaml", "--no-live", "--no-prompt")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    run_id = lines[0].split()[1]
    h = digest(toml)
    line = f"policy: {toml.resolve()} (sha256 {h[:8]}...{h[-8:]}, accepted "
    assert lines[2].startswith(line), lines[:3]
    assert line in repo("show", run_id).stdout
    assert repo.json("show", run_id)["policy"].startswith(line.removeprefix("policy: "))
    [first, *_] = repo.json("log", run_id)
    assert first["v"] == 4
    source = first["policy_source"]
    assert (source["trust"], source["path"], source["sha256"]) == (
        "accepted",
        str(toml.resolve()),
        h,
    )


def test_a_child_run_names_the_policy_its_parent_obeys(repo: Cli) -> None:
    toml = repo.write("trestle.toml", STRICT)
    repo.write("child.yaml", "steps:\n  - {id: c, run: 'true'}\n")
    repo.write("plan.yaml", "steps:\n  - id: kid\n    delegate: {goal: g, plan: child.yaml}\n")
    accept(repo, toml)
    result = repo("run", "plan.yaml", "--no-live", "--no-prompt")
    assert result.returncode == 0, result.stdout + result.stderr
    root = result.stdout.split()[1]
    child = repo.json("show", f"{root}.kid.1")
    assert child["policy"].startswith(f"{toml.resolve()} (sha256 "), child["policy"]


def test_accept_policy_on_run_accepts_exactly_the_bytes_it_names(repo: Cli) -> None:
    toml = repo.write("trestle.toml", STRICT)
    repo.write("plan.yaml", "steps:\n  - {id: a, run: 'true'}\n")
    wrong = repo("run", "plan.yaml", "--no-live", "--accept-policy", "0" * 64)
    assert wrong.returncode == NOT_ACCEPTED
    assert f"does not match the file, whose SHA-256 is {digest(toml)}" in flat(wrong.stderr)
    assert repo("run", "plan.yaml", "--no-live").returncode == NOT_ACCEPTED
    right = repo("run", "plan.yaml", "--no-live", "--accept-policy", digest(toml).upper())
    assert right.returncode == 0, right.stdout + right.stderr
    assert repo("run", "plan.yaml", "--no-live").returncode == 0  # it stays accepted
    bad = repo("run", "plan.yaml", "--no-live", "--accept-policy", "abc")
    assert bad.returncode == 2 and "'abc' is not a SHA-256 (64 hex digits)" in bad.stderr


def test_a_file_outside_the_workspace_and_its_repository_is_trusted_as_yours(
    repo: Cli, tmp_path: Path
) -> None:
    mine = tmp_path / "operator.toml"
    mine.write_text(STRICT)
    repo.write("plan.yaml", "steps:\n  - {id: a, run: 'true'}\n")
    result = repo("run", "plan.yaml", "--no-live", "--policy", mine)
    assert result.returncode == 0, result.stdout + result.stderr
    h = digest(mine)
    said = f"policy: {mine.resolve()} (sha256 {h[:8]}...{h[-8:]}, outside the workspace: "
    assert result.stdout.splitlines()[2] == said + "trusted as yours)"


def test_a_policy_cannot_be_accepted_from_inside_a_step(repo: Cli) -> None:
    toml = repo.write("trestle.toml", STRICT)
    env = {**repo.env(), "TRESTLE_STEP_ID": "plant"}
    for args in (
        ["policy", "accept", str(toml), "--sha256", digest(toml)],
        ["run", "plan.yaml", "--accept-policy", digest(toml)],
    ):
        repo.write("plan.yaml", "steps:\n  - {id: a, run: 'true'}\n")
        done = subprocess.run(
            repo.argv(*args), cwd=repo.dir, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert "cannot be accepted from inside a running step" in done.stderr
    assert repo("run", "plan.yaml", "--no-live").returncode == NOT_ACCEPTED


def test_accepting_shows_the_file_and_keeps_the_hashes_owner_only(
    repo: Cli, _own_config_dir: Path
) -> None:
    toml = repo.write("trestle.toml", STRICT)
    off_terminal = repo("policy", "accept")
    assert off_terminal.returncode == 2
    assert f"give `--sha256 {digest(toml)}` to accept exactly these bytes" in flat(
        off_terminal.stderr
    )
    shown = repo("policy", "show")
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[:3] == [
        f"file: {toml.resolve()}",
        f"sha256: {digest(toml)}",
        "status: not accepted: no run obeys it until you accept it",
    ]
    assert shown.stdout.endswith("\n" + STRICT)
    accept(repo, toml)
    stored = _own_config_dir / "trestle" / "accepted-policies.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert "status: accepted on " in repo("policy", "show").stdout


def test_on_a_terminal_accept_shows_the_file_and_asks(repo: Cli) -> None:
    toml = repo.write("trestle.toml", STRICT)
    talking = approvals_cli.Cli(repo.dir, repo.store)
    code, screen = approvals_cli._converse(talking, ["policy", "accept"], [("[y/N]:", "n\n")])
    assert code == 9, screen  # not accepted
    assert f"sha256: {digest(toml)}" in screen and 'name = "deploys need a human"' in screen
    assert "not accepted" in screen
    assert "status: not accepted" in repo("policy", "show").stdout
    code, screen = approvals_cli._converse(talking, ["policy", "accept"], [("[y/N]:", "y\n")])
    assert code == 0, screen
    assert f"accepted {toml.resolve()} (sha256 {digest(toml)})" in flat(screen)
    assert "status: accepted on " in repo("policy", "show").stdout


def test_a_file_that_is_not_a_valid_policy_is_never_accepted(repo: Cli) -> None:
    toml = repo.write("trestle.toml", "[policy]\naudit_rat = 0.5\n")
    done = repo("policy", "accept", "--sha256", digest(toml))
    assert done.returncode == 2
    assert "policy.audit_rat: unknown field (did you mean 'audit_rate'?)" in done.stderr


def test_a_run_recorded_before_its_policy_source_was_still_loads() -> None:
    from trestle.core.events import EVENT_ADAPTER, RunCreated
    from trestle.core.report import build_report
    from trestle.core.state import RunState

    old = {
        "v": 1,
        "kind": "run_created",
        "at": 1.0,
        "run_id": "r",
        "plan": {"steps": [{"id": "a", "run": "true"}]},
        "workspace": "/w",
        "operator_policy": {"audit_rate": 0.1},
    }
    event = EVENT_ADAPTER.validate_python(old)
    assert isinstance(event, RunCreated) and event.policy_source is None
    report = build_report(RunState.from_created(event))
    assert report.policy == "an operator policy from a file not recorded with the run"


def test_a_workspace_or_policy_named_through_a_link_a_step_made_is_refused(
    repo: Cli, tmp_path: Path
) -> None:
    # a step of a run in the repository made sub a link to another project's directory
    # (conf a link to it): the next run in repo/sub obeyed that project's accepted,
    # permissive policy, and --policy conf/trestle.toml its file
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    loose = other / "trestle.toml"
    loose.write_text("[policy]\nconfidence_threshold = 0.1\n")
    accept(repo, loose)
    accept(repo, repo.write("trestle.toml", STRICT))
    (repo.dir / "sub").symlink_to(other / "sub")
    led = _asks(repo, "--workspace", repo.dir / "sub")
    (other / "sub" / "ship.yaml").write_text((repo.dir / "ship.yaml").read_text())
    assert led.returncode == NOT_ACCEPTED, led.stdout + led.stderr
    assert f"{repo.dir / 'sub'} leads to {other / 'sub'} through a link" in flat(led.stderr)
    assert not (other / "sub" / "done.txt").exists()
    shell = run_trestle(  # `cd repo/sub; trestle run ship.yaml`: the shell's $PWD names it
        ["run", "ship.yaml", "--no-live", "--no-prompt"],
        cwd=repo.dir / "sub",
        env={**repo.env(), "PWD": str(repo.dir / "sub")},
    )
    assert shell.returncode == NOT_ACCEPTED, shell.stdout + shell.stderr
    (repo.dir / "conf").symlink_to(other)
    named = _asks(repo, "--policy", repo.dir / "conf" / "trestle.toml")
    assert named.returncode == NOT_ACCEPTED, named.stdout + named.stderr
    assert "named through a link in the project" in flat(named.stderr)
