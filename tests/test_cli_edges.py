"""Wrong input at the command line's edges, through the real ``trestle``: each is
refused with one line naming the problem and where, its exit code, no traceback."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from dashboard_helpers import dashboard
from forked_cli import run_trestle
from test_cli import Cli, run_id_of
from trestle.store.location import RecentStores
from trestle.store.sqlite_file import store_failure


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "t.db")


def refused(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("port", ["-1", "65536"])
def test_a_port_out_of_range_is_a_usage_error(cli: Cli, port: str) -> None:
    refused(cli("ui", "--port", port), 2, f"{port} is not in the range 0<=x<=65535")


def test_a_demo_directory_that_is_a_file_is_named(cli: Cli) -> None:
    cli.write("taken", "a file\n")
    message = "'taken': cannot write the sample repository there: Not a directory"
    refused(cli("demo", "--dir", "taken"), 2, message)


def test_edit_without_an_editor_off_a_terminal_asks_for_from(cli: Cli) -> None:
    plan = cli.write(
        "plan.yaml", "goal: g\nsteps:\n  - {id: ship, run: 'true', irreversible: true}\n"
    )
    run_id = run_id_of(cli("run", plan, "--no-prompt"))
    env = {k: v for k, v in cli.env().items() if k not in ("EDITOR", "VISUAL")}
    edited = subprocess.run(
        cli.argv("approve", f"{run_id}.1", "--edit"),
        cwd=cli.dir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    refused(edited, 2, "give the edit with --from FILE (YAML or JSON), or set $EDITOR")
    assert "awaiting approval" in cli("show", run_id).stdout


def test_a_blank_reason_is_refused_and_nothing_is_queued(cli: Cli) -> None:
    plan = cli.write(
        "plan.yaml",
        "goal: g\nsteps:\n  - {id: bad, run: exit 3}\n"
        "  - {id: ship, run: 'true', irreversible: true}\n",
    )
    run_id = run_id_of(cli("run", plan, "--no-prompt"))
    refused(cli("skip", run_id, "bad", "--reason", " "), 2, "a skip needs a reason")
    refused(cli("reject", f"{run_id}.1", "--reason", " "), 2, "a rejection needs a reason")
    assert cli("resume", run_id).returncode == 3  # nothing was queued: both still wait


def test_an_empty_store_name_is_refused_and_output_dash_is_stdout(cli: Cli) -> None:
    refused(cli("runs", "--store", ""), 2, "the store's name is empty")
    run_id = run_id_of(cli("run", cli.write("plan.yaml", "steps:\n  - {id: a, run: 'true'}\n")))
    exported = cli("export", run_id, "-o", "-")
    assert exported.returncode == 0 and '"kind": "run_created"' in exported.stdout
    assert not (cli.dir / "-").exists()


def test_a_store_another_process_keeps_locked_says_so(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        with (
            closing(sqlite3.connect(path, timeout=0)) as late,
            pytest.raises(sqlite3.OperationalError) as locked,
        ):
            late.execute("BEGIN IMMEDIATE")
    said = str(store_failure(path, locked.value, "recording an approval"))
    assert said.startswith(f"{path}: recording an approval failed: another process kept")
    assert "nothing of it was recorded; try again once that process lets go" in said


def test_dlq_lists_the_runs_it_can_read_past_a_damaged_one(cli: Cli) -> None:
    plan = cli.write("plan.yaml", "goal: g\nsteps:\n  - {id: bad, run: exit 3}\n")
    damaged, intact = (run_id_of(cli("run", plan)) for _ in range(2))
    with closing(sqlite3.connect(cli.store)) as db, db:
        db.execute(
            "UPDATE events SET data = '{', packed = 0 WHERE run_id = ? AND seq = 3", (damaged,)
        )
        db.execute("DELETE FROM snapshots")
    listed = cli("dlq")
    assert listed.returncode == 0, listed.stderr
    assert f"{intact} bad failed" in listed.stdout and damaged not in listed.stdout
    assert f"warning: run {damaged!r} cannot be read, left out" in listed.stderr


def test_resume_with_the_workspace_gone_records_nothing(cli: Cli) -> None:
    (cli.dir / "ws").mkdir()
    plan = cli.write("plan.yaml", "workspace: ws\nsteps:\n  - {id: bad, run: exit 3}\n")
    run_id = run_id_of(cli("run", plan))
    assert cli("retry", run_id, "bad").returncode == 0
    events = len(cli.json("log", run_id))
    (cli.dir / "ws").rename(cli.dir / "moved")
    refused(cli("resume", run_id), 2, f"its workspace {str(cli.dir / 'ws')!r} does not exist")
    assert len(cli.json("log", run_id)) == events
    (cli.dir / "moved").rename(cli.dir / "ws")
    assert cli("resume", run_id).returncode == 3  # 'bad' ran again and failed again
    kinds = [e["kind"] for e in cli.json("log", run_id)][events:]
    assert "step_probe_started" not in kinds and kinds.count("step_attempt_ended") == 1


def test_an_edit_from_a_fifo_or_too_large_is_refused_unread(cli: Cli) -> None:
    plan = cli.write("plan.yaml", "steps:\n  - {id: ship, run: 'true', irreversible: true}\n")
    ref = run_id_of(cli("run", plan, "--no-prompt")) + ".1"
    os.mkfifo(cli.dir / "fifo")  # read whole, it would block; /dev/zero would never end
    message = "the edit: fifo: not a regular file (a FIFO); nothing was approved"
    refused(cli("approve", ref, "--edit", "--from", "fifo"), 2, message)
    piped = subprocess.run(
        cli.argv("approve", ref, "--edit", "--from", "-"),
        input="#" * 9_000_000,
        cwd=cli.dir,
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    refused(piped, 2, "the edit on standard input is larger than 8,388,608 bytes")


def test_a_fifo_given_as_recorded_runs_or_a_trajectory_is_refused_unread(cli: Cli) -> None:
    os.mkfifo(cli.dir / "fifo")
    refused(cli("monitors", "eval", "fifo"), 2, "fifo: not a file or a folder of recorded runs")
    replay = cli("agent", "x", "--repo", ".", "--model", "replay:fifo")
    message = f"trajectory {str(cli.dir / 'fifo')!r}: cannot read it: not a regular file (a FIFO)"
    refused(replay, 2, message)


def test_a_key_file_that_is_no_file_and_a_report_that_cannot_be_written(cli: Cli) -> None:
    plan = cli.write("plan.yaml", "steps:\n  - {id: ship, run: 'true', irreversible: true}\n")
    full = cli("run", plan, "--no-prompt", "--report-json", "/dev/full")
    refused(full, 3, "error: --report-json '/dev/full': cannot write it: No space left on device")
    run_id = run_id_of(full)
    os.mkfifo(cli.dir / "fifo")
    for key, why in [("fifo", "not a regular file"), (".", "Is a directory")]:
        approved = subprocess.run(
            cli.argv("approve", f"{run_id}.1"),
            cwd=cli.dir,
            env={**cli.env(), "TRESTLE_KEY_FILE": key},
            capture_output=True,
            text=True,
            timeout=60,
        )
        refused(approved, 2, f"{key}: the approval key cannot be read: {why}")


def test_damaged_accounts_and_ledger_files_are_named(cli: Cli) -> None:
    assert cli("run", cli.write("plan.yaml", "steps:\n  - {id: a, run: 'true'}\n")).returncode == 0
    config = cli.dir / "config" / "trestle"
    config.mkdir(parents=True)
    (config / "dashboard.sqlite").write_bytes(b"\x7fELF" + bytes(4096))
    (config / "notifications.sqlite").write_bytes(b"\x7fELF" + bytes(4096))
    env = {**cli.env(), "XDG_CONFIG_HOME": str(config.parent)}
    people, health = (
        subprocess.run(cli.argv(*args), cwd=cli.dir, env=env, capture_output=True, text=True)
        for args in (["people", "list"], ["health"])
    )
    accounts = f"{config / 'dashboard.sqlite'}: the dashboard's accounts cannot be read"
    refused(people, 4, accounts)
    assert health.returncode == 1, health.stderr  # the runs are shown; the ledger is named
    ledger = f"the ledger {config / 'notifications.sqlite'} cannot be read (file is not a"
    assert f"notifications fail: {ledger}" in health.stdout


def test_an_agent_goal_or_setting_it_cannot_hold_is_refused_before_a_run(cli: Cli) -> None:
    cli.write("tr.json", '{"goal": "x", "conversations": {}}')
    agent = ["agent", "--repo", ".", "--model", "replay:tr.json", "--no-live"]
    refused(cli(*agent, " "), 2, "Invalid value for GOAL: the goal is empty")
    huge = cli(*agent, "x", "--max-turns", "10001")
    refused(huge, 2, "--max-turns: must be at most 10000, not 10001")
    assert not cli.store.exists()


def test_a_top_up_on_an_approval_that_is_no_budget_pause_is_refused(cli: Cli) -> None:
    plan = cli.write("plan.yaml", "steps:\n  - {id: ship, run: 'true', irreversible: true}\n")
    ref = run_id_of(cli("run", plan, "--no-prompt")) + ".1"
    refused(cli("approve", ref, "--top-up", "0"), 2, "a top-up is for a budget pause")
    assert cli("approve", ref).returncode == 0  # nothing was queued by the refusal


def test_a_store_url_that_does_not_parse_is_bad_input_and_hides_its_password(cli: Cli) -> None:
    pytest.importorskip("psycopg")
    broken = cli("runs", "--store", "postgresql://ann:s3cret@[::1/db")
    refused(broken, 2, "the store URL cannot be read: end of string reached when looking for")
    assert '"postgresql://ann@[::1/db"' in broken.stderr and "s3cret" not in broken.stderr


def test_ui_for_a_run_the_store_does_not_hold_is_refused(cli: Cli) -> None:
    run_id = run_id_of(cli("run", cli.write("plan.yaml", "steps:\n  - {id: a, run: 'true'}\n")))
    refused(cli("ui", "--run", "nope"), 2, f"no run 'nope' in {cli.store}")
    with dashboard(cli.store, "--run", run_id[-4:]) as ui:  # a tail, as every command takes
        assert run_id in ui.session().get("/").text


def test_an_age_past_any_printable_date_is_refused_before_anything_is_made(cli: Cli) -> None:
    invited = cli("people", "invite", "carol", "--expires", "999999999999999999d")
    refused(invited, 2, "--expires: age '999999999999999999d': at most 1000 years (365000d)")
    assert "carol" not in cli("people", "list").stdout


def test_a_temporal_port_out_of_range_is_refused_before_the_run(cli: Cli) -> None:
    pytest.importorskip("temporalio")
    plan = cli.write("plan.yaml", "steps:\n  - {id: a, run: 'true'}\n")
    address = ["--engine", "temporal", "--address", "127.0.0.1:99999"]
    refused(cli("run", plan, *address), 2, "--address '127.0.0.1:99999' is not HOST:PORT")
    assert not cli.store.exists()


def test_a_store_whose_path_holds_a_newline_is_not_remembered_as_two(tmp_path: Path) -> None:
    recent = RecentStores(tmp_path / "stores")
    recent.remember(tmp_path / "plain.db")
    recent.remember(tmp_path / "two\nlines" / "t.db")
    assert recent.stores() == [tmp_path / "plain.db"]


def test_a_report_or_an_export_is_never_written_through_a_link_a_step_planted(
    cli: Cli, tmp_path: Path
) -> None:
    """A step links the file the operator will name with ``--report-json`` (or
    ``--output``) to one outside, or gives it another name in the workspace: nothing
    is written through either, and the run's own exit code stands. The system's links
    (``/dev/stdout``) are still followed."""
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    plan = cli.write(
        "plan.yaml",
        f"steps:\n  - id: plant\n    run: ln -sf {victim} report.json && echo notes > notes.txt"
        " && ln -f notes.txt hard.json\n",
    )
    done = cli("run", plan, "--report-json", "report.json")
    refused(done, 0, "--report-json 'report.json': cannot write it: 'report.json' is a symlink")
    assert victim.read_text() == "mine\n"
    hard = cli("run", plan, "--report-json", "hard.json")
    refused(hard, 0, "cannot write it: it is a file of several names: remove it")
    assert (cli.dir / "notes.txt").read_text() == "notes\n"
    exported = cli("export", run_id_of(done), "--output", "report.json")
    refused(exported, 2, "--output 'report.json': cannot write it: 'report.json' is a symlink")
    assert victim.read_text() == "mine\n"
    shown = cli("export", run_id_of(done), "--output", "/dev/stdout")
    assert shown.returncode == 0 and '"run_created"' in shown.stdout
    (cli.dir / "reports").symlink_to(tmp_path)  # a link on the way, out of the workspace
    through = cli("export", run_id_of(done), "--output", "reports/victim.txt")
    refused(through, 2, "cannot write it: 'reports' is a symlink, which is not followed here")
    assert victim.read_text() == "mine\n"
    above = run_trestle(  # from a directory above the workspace: the link is as far
        ("export", run_id_of(done), "--output", cli.dir / "reports" / "victim.txt"),
        cwd=tmp_path.parent,
        env=cli.env(),
    )
    refused(above, 2, "'reports' is a symlink, which is not followed here")
    linked = tmp_path.parent / f"{tmp_path.name}-linked"  # the workspace named through a link
    linked.symlink_to(tmp_path)
    spelled = run_trestle(
        ("export", run_id_of(done), "--output", linked / "reports" / "victim.txt"),
        cwd=linked,
        env=cli.env(),
    )
    refused(spelled, 2, "'reports' is a symlink, which is not followed here")
    assert victim.read_text() == "mine\n"
    os.mkfifo(cli.dir / "fifo.json")  # no one reads it: the run's end would wait for ever
    refused(cli("run", plan, "--report-json", "fifo.json"), 0, "it is a FIFO no one reads")


def test_a_regex_too_large_a_name_too_long_a_bad_url_or_address_is_bad_input(
    cli: Cli, tmp_path: Path
) -> None:
    """Each was a traceback (exit 1); the bad address also left a run that neither
    resume nor cancel could touch."""
    huge = cli.write(
        "huge.yaml",
        "steps:\n  - id: a\n    run: echo\n    verify:\n"
        '      - {file_contains: f, regex: "a{99999999999}"}\n',
    )
    refused(cli("plan", huge), 2, "invalid regex 'a{99999999999}': the repetition number")
    plan = cli.write("plan.yaml", "steps:\n  - {id: a, run: 'true'}\n")
    long = "x" * 256
    refused(cli("run", plan, "-w", long), 2, f"error: {long!r}: File name too long")
    refused(cli("runs", "--store", f"{long}.db"), 2, "File name too long")
    (tmp_path / "repo").mkdir()
    agent = cli(
        "agent",
        "g",
        "--repo",
        tmp_path / "repo",
        "--model",
        "openai:x",
        "--base-url",
        "http://[::1",
    )
    refused(agent, 2, "--base-url 'http://[::1' is not a server's address")
    temporal = cli("run", plan, "--engine", "temporal", "--address", "[::1", "--no-wait-for-worker")
    refused(temporal, 2, "--address '[::1' is not HOST:PORT")
    assert "run " not in temporal.stdout  # nothing recorded
    for url, why in [("http://[::1", "Invalid IPv6 URL"), ("http://h:99999/v1", "Port out of")]:
        child = cli.write(
            "child.yaml",
            "steps:\n  - id: d\n    delegate:\n      goal: g\n"
            f"      agent: {{model: 'openai:x', base_url: '{url}', api_key_env: HOME}}\n",
        )
        said = f"field 'delegate.agent.base_url': '{url}' is not a server's address: {why}"
        refused(cli("plan", child), 2, said)


def test_a_policy_that_runs_refuse_is_not_accepted_and_a_deep_edit_is_refused(cli: Cli) -> None:
    """``trestle policy accept`` read the policy and the monitors but not the MCP
    servers: a file the next run refused was accepted. An edit nested thousands deep,
    or a number of 5,000 digits, was a traceback."""
    policy = cli.write("trestle.toml", "[mcp.servers.x]\ncommand = 5\n")
    digest = hashlib.sha256(policy.read_bytes()).hexdigest()
    accepted = cli("policy", "accept", "-w", cli.dir, "--sha256", digest)
    refused(accepted, 2, "mcp.servers.x.command: must be a program's name or path")
    policy.unlink()
    plan = cli.write("plan.yaml", "steps:\n  - {id: ship, run: 'true', irreversible: true}\n")
    ref = run_id_of(cli("run", plan, "--no-prompt")) + ".1"
    for text in ("run: " + "[" * 5000 + "]" * 5000, "run: echo\ntimeout: " + "9" * 5000):
        (cli.dir / "edit.yaml").write_text(text + "\n")
        edited = cli("approve", ref, "--edit", "--from", "edit.yaml")
        refused(edited, 2, "error: edit.yaml cannot be read: ")


def test_a_key_given_twice_in_a_plan_is_refused_where_it_is(cli: Cli) -> None:
    """YAML keeps the last of two: a reader who saw ``approval: confirm`` read a plan
    that was not the one run. (And an empty ``checkpoint_ignore`` glob, refused only
    at the first snapshot, after the run began, naming no file.)"""
    twice = cli.write(
        "twice.yaml",
        "steps:\n  - id: a\n    run: git push\n    approval: confirm\n    approval: auto\n",
    )
    refused(cli("plan", twice), 2, "twice.yaml:5: invalid YAML at column 5: the key 'approval'")
    ignored = cli.write("ignored.yaml", "checkpoint_ignore: ['']\nsteps:\n  - {id: a, run: x}\n")
    refused(cli("plan", ignored), 2, "field 'checkpoint_ignore[0]': ignore glob '' is empty")
    # a merge key and a key it overrides are no key given twice
    merged = cli.write("merged.yaml", "steps:\n  - &b {id: a, run: echo}\n  - <<: *b\n    id: b\n")
    shown = cli("plan", merged)
    assert shown.returncode == 0, shown.stderr


def test_an_identity_key_that_is_no_file_is_refused_not_waited_on(cli: Cli, tmp_path: Path) -> None:
    """A FIFO named as the identity key was read whole: the command waited for ever; a
    directory, or a file where its directory would be, was a traceback."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("")
    for key, why in [("fifo", "not a regular file"), ("dir", "Is a directory")]:
        shown = run_trestle(
            ("policy", "identity"),
            cwd=cli.dir,
            env={**cli.env(), "TRESTLE_IDENTITY_FILE": str(tmp_path / key)},
            timeout=60,
        )
        refused(shown, 2, f"the identity key cannot be read: {why}")
    inside = run_trestle(
        ("policy", "identity"),
        cwd=cli.dir,
        env={**cli.env(), "TRESTLE_IDENTITY_FILE": str(tmp_path / "file" / "identity.key")},
        timeout=60,
    )
    refused(inside, 2, "Not a directory")


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ('type = "webhook"\nurl = "http://[::1"', "targets.w.url: not a server's address"),
        ('type = "webhook"\nurl = "http://h/"\ntimeout = 1e308', "must be at most 3600"),
        (
            'type = "email"\nhost = "h"\nfrom = "a@b"\nto = ["x@y\\r\\nBcc: z@w"]',
            "targets.w.to: 'x@y\\r\\nBcc: z@w' holds a line break",
        ),
    ],
)
def test_a_notify_target_no_sender_could_use_is_refused_where_it_is(
    cli: Cli, tmp_path: Path, target: str, said: str
) -> None:
    """Each passed the file's check, then crashed ``trestle notify test``."""
    (tmp_path / "config" / "trestle").mkdir(parents=True)
    (tmp_path / "config" / "trestle" / "notify.toml").write_text(f"[targets.w]\n{target}\n")
    env = {**cli.env(), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    refused(run_trestle(("notify", "test"), cwd=cli.dir, env=env), 2, said)


@pytest.mark.parametrize("home", ["~nouser", "relative/home"])
def test_a_home_that_names_no_absolute_directory_is_refused_naming_home(
    cli: Cli, home: str
) -> None:
    """Trestle keeps its key and what a human accepted under the home directory; a
    relative one would put them under the working directory, often a workspace."""
    plan = cli.write("plan.yaml", "steps:\n  - {id: a, run: 'true'}\n")
    env = {k: v for k, v in cli.env().items() if not k.startswith(("XDG_", "TRESTLE_KEY"))}
    env.update(HOME=home, XDG_CONFIG_HOME="config")  # a relative XDG_* is ignored
    result = run_trestle(["run", plan, "--no-live"], cwd=cli.dir, env=env)
    refused(result, 2, f"HOME ({home!r}) is not an absolute path")
    assert not cli.store.exists() and not (cli.dir / "config").exists()


def test_a_relative_xdg_directory_is_ignored_for_the_one_under_home(cli: Cli) -> None:
    policy = cli.write("trestle.toml", "[policy.scope]\noutput_paths = ['out/']\n")
    sha = hashlib.sha256(policy.read_bytes()).hexdigest()
    home = cli.dir.parent / "home"
    env = {k: v for k, v in cli.env().items() if not k.startswith(("XDG_", "TRESTLE_KEY"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME="config")
    accepted = run_trestle(["policy", "accept", policy, "--sha256", sha], cwd=cli.dir, env=env)
    assert accepted.returncode == 0, accepted.stderr
    assert (home / ".config" / "trestle" / "accepted-policies.json").is_file()
    assert not (cli.dir / "config").exists()
