"""Finding stores and runs from where an operator stands, through the real ``trestle``.

Commands that read never create a store (exit 8 names where they looked); a new store's
``.trestle`` directory ignores itself in git; a run prints its store, and the commands
that take a RUN find it from the directories above the store's and from the user's
index of recent stores; a RUN may be a unique tail of its id. Each test has its own
HOME and XDG_STATE_HOME, and no ``$TRESTLE_STORE`` unless it sets one.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from forked_cli import run_trestle
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import RecentStores, SqliteStore

RUN_LINE = re.compile(r"run (\d{8}-\d{6}-[0-9a-f]{4})")
PLAN = "goal: say hello\nsteps:\n  - id: hello\n    run: echo hello\n"
NO_STORE = 8


def flat(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Operator:
    """Runs ``trestle`` as a user whose home and state directory are ``home``."""

    home: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def index(self) -> Path:
        return self.home / "state" / "trestle" / "stores"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "TRESTLE_STORE"}
        env.update(
            COLUMNS="100",
            NO_COLOR="1",
            TERM="dumb",
            HOME=str(self.home),
            XDG_STATE_HOME=str(self.home / "state"),
            TRESTLE_SANDBOX="off",
        )
        env.update(self.extra)
        return env

    def __call__(self, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        return run_trestle(args, cwd=cwd, env=self.env())

    def start(self, plan: Path, *args: str | Path, cwd: Path) -> tuple[str, Path]:
        """Run a plan to the end; its run id and the store the run says it is in."""
        result = self("run", plan, "--no-live", "--no-prompt", *args, cwd=cwd)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        match = RUN_LINE.fullmatch(lines[0])
        assert match, lines[0]
        assert lines[1].startswith("store "), lines[1]
        return match.group(1), Path(lines[1].removeprefix("store "))


@pytest.fixture
def user(tmp_path: Path) -> Operator:
    home = tmp_path / "home"
    home.mkdir()
    return Operator(home)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A plan in ``project/`` whose workspace is ``project/ws``."""
    root = tmp_path / "project"
    (root / "ws" / "sub").mkdir(parents=True)
    (root / "plan.yaml").write_text(PLAN.replace("goal:", "workspace: ws\ngoal:"))
    return root


def files_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*"))


# --- 1. reading never creates a store ------------------------------------------------


READING = [
    ["runs"],
    ["show", "20260101-000000-abcd"],
    ["log", "abcd"],
    ["inbox"],
    ["inbox", "--run", "abcd"],
    ["dlq"],
    ["health"],
    ["doctor"],
    ["feedback", "export"],
    ["checkpoints", "abcd"],
    ["trajectory", "abcd"],
    ["retry", "abcd", "build"],
    ["approve", "abcd.1"],
]


@pytest.mark.parametrize("args", READING, ids=lambda a: " ".join(a))
def test_reading_where_there_is_no_store_creates_nothing_and_says_where_it_looked(
    user: Operator, tmp_path: Path, args: list[str]
) -> None:
    here = tmp_path / "empty"
    here.mkdir()

    result = user(*args, cwd=here)

    assert result.returncode == NO_STORE, result.stdout + result.stderr
    message = flat(result.stderr)
    assert message.startswith("error: no store found"), message
    assert f"looked for .trestle/trestle.db in {here} and every directory above it" in message
    assert "--store PATH" in message
    assert "Traceback" not in result.stderr
    assert files_under(here) == []
    assert not user.index.exists()


@pytest.mark.parametrize("how", ["--store", "TRESTLE_STORE"])
@pytest.mark.parametrize(
    "args", [["runs"], ["show", "abcd"], ["dlq"], ["health"], ["doctor"], ["inbox"]]
)
def test_a_named_store_that_does_not_exist_is_not_created(
    user: Operator, tmp_path: Path, how: str, args: list[str]
) -> None:
    missing = tmp_path / "nowhere" / "t.db"
    if how == "--store":
        result = user(*args, "--store", missing, cwd=tmp_path)
    else:
        user.extra["TRESTLE_STORE"] = str(missing)
        result = user(*args, cwd=tmp_path)

    assert result.returncode == NO_STORE, result.stdout + result.stderr
    assert flat(result.stderr) == f"error: no store at {missing}"
    assert not missing.parent.exists()


def test_the_exit_code_for_no_store_is_documented(user: Operator, tmp_path: Path) -> None:
    result = user("--help", cwd=tmp_path)

    assert "8 no store found (nothing is created)" in flat(result.stdout)


# --- 2. the store's directory ignores itself ---------------------------------------


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def test_a_steps_git_add_all_does_not_stage_the_store(user: Operator, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / "plan.yaml").write_text("steps:\n  - id: stage\n    run: git add -A\n")

    user.start(repo / "plan.yaml", cwd=repo)

    assert (repo / ".trestle" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert git("diff", "--cached", "--name-only", cwd=repo).split() == ["plan.yaml"]
    assert git("status", "--porcelain", cwd=repo).split() == ["A", "plan.yaml"]


def test_an_existing_gitignore_is_kept_and_other_directories_get_none(
    user: Operator, tmp_path: Path
) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    (tmp_path / ".trestle").mkdir()
    (tmp_path / ".trestle" / ".gitignore").write_text("trestle.db\n")

    user.start(tmp_path / "plan.yaml", cwd=tmp_path)
    user.start(tmp_path / "plan.yaml", "--store", tmp_path / "elsewhere" / "t.db", cwd=tmp_path)

    assert (tmp_path / ".trestle" / ".gitignore").read_text() == "trestle.db\n"
    assert not (tmp_path / "elsewhere" / ".gitignore").exists()


# --- 3. where the store is, said and found -------------------------------------------


def test_a_run_prints_its_store_and_is_found_from_where_it_was_started(
    user: Operator, project: Path
) -> None:
    run_id, store = user.start(project / "plan.yaml", cwd=project)

    assert store == project / "ws" / ".trestle" / "trestle.db"
    assert user.index.read_text() == f"{store}\n"
    for where in (project, project / "ws", project / "ws" / "sub"):
        shown = user("show", run_id, cwd=where)
        assert shown.returncode == 0, shown.stderr
        assert f"run {run_id}: succeeded" in shown.stdout


def test_the_nearest_store_is_found_upward_without_the_index(user: Operator, project: Path) -> None:
    run_id, _ = user.start(project / "plan.yaml", cwd=project)
    user.index.unlink()

    listed = user("runs", cwd=project / "ws" / "sub")
    shown = user("log", run_id, cwd=project / "ws" / "sub")
    lost = user("show", run_id, cwd=project)

    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout
    assert shown.returncode == 0, shown.stderr
    assert lost.returncode == NO_STORE
    assert "and no run was started recently" in flat(lost.stderr)


def test_listing_with_no_store_here_names_the_recent_stores(
    user: Operator, project: Path, tmp_path: Path
) -> None:
    _, store = user.start(project / "plan.yaml", cwd=project)

    result = user("runs", cwd=tmp_path)

    assert result.returncode == NO_STORE
    assert flat(result.stderr).endswith(f"; stores used recently: {store}")


def test_store_option_and_environment_win_over_finding(
    user: Operator, project: Path, tmp_path: Path
) -> None:
    run_id, _ = user.start(project / "plan.yaml", cwd=project)
    other = tmp_path / "other.db"
    SqliteStore(other).close()

    by_option = user("show", run_id, "--store", other, cwd=project / "ws")
    user.extra["TRESTLE_STORE"] = str(other)
    by_env = user("show", run_id, cwd=project / "ws")

    for result in (by_option, by_env):
        assert result.returncode == 2, result.stderr
        assert flat(result.stderr) == f"error: no run {run_id!r} in {other}"


def test_a_corrupt_index_reads_as_empty_and_is_rewritten(user: Operator, project: Path) -> None:
    user.index.parent.mkdir(parents=True)
    user.index.write_bytes(b"\xff\xfe\x00garbage\nrelative/path\n\n")

    run_id, store = user.start(project / "plan.yaml", cwd=project)

    assert user.index.read_text() == f"{store}\n"
    assert user("show", run_id, cwd=project).returncode == 0


def test_the_index_is_bounded_newest_first_and_without_repeats(tmp_path: Path) -> None:
    index = RecentStores(tmp_path / "state" / "stores", limit=3)
    for name in ("a", "b", "c", "d", "b"):
        index.remember(tmp_path / name)

    assert index.paths() == [tmp_path / "b", tmp_path / "d", tmp_path / "c"]
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["stores"]  # no temp left


def test_an_index_written_with_repeats_reads_each_store_once_where_first_seen(
    tmp_path: Path,
) -> None:
    url = "postgresql://trestle@127.0.0.1:5432/runs"
    lines = [tmp_path / "a", url, tmp_path / "b", tmp_path / "a", url, tmp_path / "c"]
    (tmp_path / "stores").write_text("".join(f"{line}\n" for line in lines))

    index = RecentStores(tmp_path / "stores", limit=3)

    assert index.stores() == [tmp_path / "a", url, tmp_path / "b"]


def test_a_run_is_found_from_elsewhere_after_many_newer_stores(
    user: Operator, project: Path, tmp_path: Path
) -> None:
    run_id, _ = user.start(project / "plan.yaml", cwd=project)
    index = RecentStores(user.index)
    for n in range(30):  # more than the index once kept: the run fell out of it
        newer = tmp_path / "newer" / str(n) / "trestle.db"
        newer.parent.mkdir(parents=True)
        SqliteStore(newer).close()
        index.remember(newer)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    shown = user("show", run_id, cwd=elsewhere)

    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id}: succeeded" in shown.stdout


def test_a_full_index_lets_stores_that_are_gone_go_first(tmp_path: Path) -> None:
    index = RecentStores(tmp_path / "state" / "stores", limit=3)
    kept, gone = tmp_path / "kept.db", tmp_path / "gone.db"
    SqliteStore(kept).close()
    for where in (kept, gone, tmp_path / "gone-too.db"):
        index.remember(where)
    index.remember(tmp_path / "new.db")

    assert index.paths() == [tmp_path / "new.db", kept, tmp_path / "gone-too.db"]


def test_a_missing_index_directory_that_cannot_be_made_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    index = RecentStores(tmp_path / "file" / "stores")

    index.remember(tmp_path / "a")

    assert index.paths() == []


# --- 4. a unique tail of a run id ----------------------------------------------------

IDS = ("20260101-000000-ab12", "20260102-000000-cd12", "20260103-000000-ef34")


@pytest.fixture
def three_runs(tmp_path: Path) -> Path:
    """A store in ``tmp_path/.trestle`` with three runs of known ids."""
    store = SqliteStore(tmp_path / ".trestle" / "trestle.db")
    try:
        for run_id in IDS:
            create_run(store, parse_plan(PLAN), workspace=tmp_path, run_id=run_id)
    finally:
        store.close()
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ["show", "ef34"],
        ["log", "34"],
        ["show", "3-000000-ef34"],
        ["inbox", "--run", "f34"],
        ["skip", "ef34", "hello", "--reason", "not needed"],
    ],
    ids=lambda a: " ".join(a),
)
def test_a_unique_tail_names_the_run(user: Operator, three_runs: Path, args: list[str]) -> None:
    result = user(*args, cwd=three_runs)

    assert result.returncode in (0, 3), result.stdout + result.stderr
    assert "error" not in result.stderr


def test_resume_by_tail_prints_the_full_id(user: Operator, three_runs: Path) -> None:
    # resume drives a store found upward only if a run was started in it, as `trestle run`
    # remembers (tests/test_planted_store.py)
    RecentStores(user.index).remember(three_runs / ".trestle" / "trestle.db")
    result = user("resume", "ef34", "--no-live", "--no-prompt", cwd=three_runs)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"run {IDS[2]}"


def test_an_ambiguous_tail_lists_the_runs_it_matches(user: Operator, three_runs: Path) -> None:
    store = three_runs / ".trestle" / "trestle.db"

    result = user("show", "12", cwd=three_runs)

    assert result.returncode == 2
    assert flat(result.stderr) == (
        f"error: run '12' is ambiguous: it matches 2 runs: {IDS[1]} (in {store}), "
        f"{IDS[0]} (in {store}); give more of the id"
    )


def test_an_unknown_tail_says_where_it_looked(user: Operator, three_runs: Path) -> None:
    store = three_runs / ".trestle" / "trestle.db"

    result = user("show", "zz99", cwd=three_runs)

    assert result.returncode == 2
    assert flat(result.stderr) == (
        f"error: no run 'zz99' in the nearest store or the stores used recently "
        f"(looked in {store}); `trestle runs --store PATH` lists a store's runs"
    )


def test_an_empty_run_is_refused_as_empty(user: Operator, three_runs: Path) -> None:
    for args in (["show", ""], ["log", " "], ["resume", ""]):
        result = user(*args, cwd=three_runs)
        assert result.returncode == 2, result.stderr
        assert flat(result.stderr) == "error: RUN is empty: give a run's id or a unique tail of it"


def test_messages_name_five_recent_stores_and_count_the_rest(
    user: Operator, tmp_path: Path
) -> None:
    stores = [tmp_path / f"s{n}" / "t.db" for n in range(7)]
    for store in stores:
        store.parent.mkdir()
        SqliteStore(store).close()
        RecentStores(user.index).remember(store)
    named = f"{', '.join(map(str, stores[::-1][:5]))} and 2 more used recently, listed in "
    named += str(user.index)

    unknown = user("show", "zz99", cwd=tmp_path)
    nowhere = user("runs", cwd=tmp_path)

    assert unknown.returncode == 2
    assert flat(unknown.stderr) == (
        f"error: no run 'zz99' in the nearest store or the stores used recently "
        f"(looked in {named}); `trestle runs --store PATH` lists a store's runs"
    )
    assert nowhere.returncode == NO_STORE
    assert flat(nowhere.stderr).endswith(f"; stores used recently: {named}")


def test_a_tail_in_two_stores_is_ambiguous_but_the_full_id_is_not(
    user: Operator, project: Path, tmp_path: Path
) -> None:
    run_id, store = user.start(project / "plan.yaml", cwd=project)
    copy = tmp_path / "copy" / ".trestle" / "trestle.db"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(store.read_bytes())
    RecentStores(user.index).remember(copy)

    by_tail = user("show", run_id[-4:], cwd=tmp_path)
    by_id = user("show", run_id, cwd=tmp_path)

    assert by_tail.returncode == 2
    assert f"{run_id} (in {copy}), {run_id} (in {store})" in flat(by_tail.stderr)
    assert by_id.returncode == 0, by_id.stderr


def test_approve_and_resume_by_tail_from_another_directory(
    user: Operator, project: Path, tmp_path: Path
) -> None:
    (project / "plan.yaml").write_text(
        "workspace: ws\nsteps:\n  - id: ship\n    run: echo shipped\n    irreversible: true\n"
    )
    started = user("run", project / "plan.yaml", "--no-live", "--no-prompt", cwd=project)
    assert started.returncode == 3, started.stdout + started.stderr
    match = RUN_LINE.fullmatch(started.stdout.splitlines()[0])
    assert match
    run_id, tail = match.group(1), match.group(1)[-4:]

    approved = user("approve", f"{tail}.1", cwd=tmp_path)
    resumed = user("resume", tail, "--no-live", "--no-prompt", cwd=tmp_path)

    assert approved.returncode == 0, approved.stderr
    assert f"approved {run_id}.1" in approved.stdout
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.splitlines()[0] == f"run {run_id}"
    assert (project / "ws" / ".trestle" / "trestle.db").is_file()
    assert not (tmp_path / ".trestle").exists()
