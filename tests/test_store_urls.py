"""A store named by a ``postgresql://`` URL wherever one is named, paths unchanged.

The first part needs no server: how ``--store`` and ``$TRESTLE_STORE`` are read (a URL
stays text, a path is a path), the index of recent stores with URLs in it, and where
checkpoints go for a store that is not a file. The second part runs the real ``trestle``
console script against a throwaway PostgreSQL server (``postgres_url``).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from dashboard_helpers import csrf_of, dashboard
from forked_cli import run_trestle
from test_cli import cli_env, flat, run_id_of
from trestle.cli.stores import RECENT_CONNECT_TIMEOUT, chosen_store, reading_store
from trestle.core.errors import ConfigError
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import InMemoryStore, SqliteStore
from trestle.store.location import (
    STORE_ENV,
    RecentStores,
    default_store,
    recent_stores_file,
    store_where,
    where_shown,
)
from trestle.workspace.shadow import ShadowRepo, shadow_dir_for

URL = "postgresql://trestle:s3cret@db.example:5432/runs"
SHOWN = "postgresql://trestle@db.example:5432/runs"

# --- reading a store's name ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "read"),
    [
        (URL, URL),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("postgresql:///runs?host=/run/postgresql", "postgresql:///runs?host=/run/postgresql"),
        ("t.db", Path("t.db")),
        ("/srv/trestle//x.db", Path("/srv/trestle/x.db")),
        ("postgresql.db", Path("postgresql.db")),
    ],
)
def test_a_url_stays_text_and_anything_else_is_a_path(text: str, read: str | Path) -> None:
    assert store_where(text) == read
    assert type(store_where(text)) is type(read)


def test_a_url_of_another_kind_is_refused_by_name_without_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        store_where("mysql://ops:hunter2@db.example/runs")
    assert str(refused.value).startswith(
        "store 'mysql://ops@db.example/runs': 'mysql://' URLs are not stores"
    )
    assert "hunter2" not in str(refused.value)


def test_run_with_an_unknown_store_url_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text("steps:\n  - id: a\n    run: 'true'\n")
    for flag, env in ((["--store", "sqlite:///x.db"], {}), ([], {STORE_ENV: "mysql://h/db"})):
        ran = run_trestle(
            ["run", "plan.yaml", "--no-live", *flag], cwd=tmp_path, env=cli_env(**env)
        )
        assert ran.returncode == 2, ran.stderr
        assert "URLs are not stores" in ran.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml"]


def test_store_option_then_environment_then_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert chosen_store(None) is None
    assert chosen_store(URL) == URL
    assert chosen_store("t.db") == Path("t.db")

    monkeypatch.setenv(STORE_ENV, URL)
    assert chosen_store(None) == URL
    assert reading_store(None) == URL
    assert default_store(Path("/ws")) == URL
    assert chosen_store("t.db") == Path("t.db")  # --store wins

    monkeypatch.setenv(STORE_ENV, "/srv/t.db")
    assert chosen_store(None) == Path("/srv/t.db")
    assert default_store(Path("/ws")) == Path("/srv/t.db")

    monkeypatch.delenv(STORE_ENV)
    assert default_store(Path("/ws")) == Path("/ws/.trestle/trestle.db")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (URL, SHOWN),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require"),
        (
            "postgresql://u@h/db?password=p&sslmode=require",
            "postgresql://u@h/db?sslmode=require",
        ),
        ("postgres://h/db", "postgres://h/db"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert where_shown(url) == shown
    assert where_shown(Path("a/t.db")) == "a/t.db"


# --- the index of recent stores ------------------------------------------------------------


def test_the_index_keeps_urls_as_given_beside_paths(tmp_path: Path) -> None:
    index = RecentStores(tmp_path / "state" / "stores", limit=3)
    for store in (tmp_path / "a.db", URL, str(tmp_path / "b.db"), URL):
        index.remember(store)

    assert index.stores() == [URL, tmp_path / "b.db", tmp_path / "a.db"]
    assert index.paths() == [tmp_path / "b.db", tmp_path / "a.db"]
    assert index.file.read_text() == f"{URL}\n{tmp_path / 'b.db'}\n{tmp_path / 'a.db'}\n"


def test_the_index_is_readable_by_its_owner_alone(tmp_path: Path) -> None:
    index = RecentStores(tmp_path / "stores")
    index.file.write_text(f"{tmp_path / 'old.db'}\n")
    index.file.chmod(0o644)  # as an older Trestle left it

    index.remember(URL)

    assert stat.S_IMODE(index.file.stat().st_mode) == 0o600
    assert index.stores() == [URL, tmp_path / "old.db"]


def test_lines_that_are_neither_paths_nor_urls_are_skipped(tmp_path: Path) -> None:
    index = RecentStores(tmp_path / "stores")
    index.file.write_text(f"relative.db\nhttp://h/db\n{URL}\n\n{tmp_path / 'x.db'}\n")

    assert index.stores() == [URL, tmp_path / "x.db"]


# --- where checkpoints go --------------------------------------------------------------


class DatabaseStore(InMemoryStore):
    """A store that, like a PostgreSQL store, is named by a URL and has no file."""

    where = SHOWN


def test_checkpoints_go_beside_a_file_and_in_the_workspace_for_a_database(
    tmp_path: Path,
) -> None:
    sqlite = SqliteStore(tmp_path / "store" / "t.db")
    try:
        assert shadow_dir_for(sqlite) == tmp_path / "store" / "shadow.git"
        assert shadow_dir_for(sqlite, tmp_path / "ws") == tmp_path / "store" / "shadow.git"
    finally:
        sqlite.close()
    database = DatabaseStore()
    assert shadow_dir_for(database, tmp_path / "ws") == tmp_path / "ws" / ".trestle" / "shadow.git"
    assert shadow_dir_for(database) is None  # no run, no workspace: nowhere
    assert shadow_dir_for(InMemoryStore(), tmp_path / "ws") is None  # as before: none


SEE_SHADOW = """\
    goal: look for the checkpoints
    checkpoints: every_step
    steps:
      - id: write
        write: {path: a.txt, content: "one\\n"}
      - id: look
        needs: [write]
        run: ls -A .trestle/shadow.git > seen.txt 2>&1; true
"""


def test_a_database_stores_checkpoints_in_the_workspace_hidden_from_steps(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    source = tmp_path / "plan.yaml"
    source.write_text(textwrap.dedent(SEE_SHADOW), encoding="utf-8")
    plan = parse_plan(source.read_text("utf-8"), source=str(source), base_dir=tmp_path)
    store = DatabaseStore()
    run_id = create_run(store, plan, workspace=workspace, plan_path=source)
    engine = LocalEngine(store, poll_interval=0.02, sandbox="require")
    try:
        state = asyncio.run(engine.run(run_id))
    finally:
        engine.close()

    assert state.finished == "succeeded"
    shadow = workspace / ".trestle" / "shadow.git"
    taken = {ref.name for ref in ShadowRepo(shadow, workspace).list(run_id)}
    assert f"{run_id}/look/1/before" in taken and f"{run_id}/write/1/after" in taken
    # a step's `git add -A` never takes them, and a step does not see them
    assert (workspace / ".trestle" / ".gitignore").read_text().endswith("\n*\n")
    seen = (workspace / "seen.txt").read_text()
    assert "objects" not in seen and "HEAD" not in seen, seen


# --- a PostgreSQL store from the command line ----------------------------------------------


def test_a_url_reaches_the_store_whole_and_its_password_is_never_printed(tmp_path: Path) -> None:
    """Nothing listens on port 1: the message names the server as the URL does (a
    Path would have folded ``//``), without the password."""
    env = {k: v for k, v in os.environ.items() if k != STORE_ENV}
    url = "postgresql://trestle:s3cret@127.0.0.1:1/runs"
    for args, extra in (
        (["runs", "--store", url], {}),
        (["runs"], {STORE_ENV: url}),
    ):
        result = run_trestle(args, cwd=tmp_path, env={**env, "COLUMNS": "200", **extra})
        assert result.returncode == 4, result.stderr
        assert "postgresql://trestle@127.0.0.1:1/runs" in result.stderr
        assert "s3cret" not in result.stdout + result.stderr


@dataclass(frozen=True)
class UrlCli:
    """``trestle`` run in ``dir`` (the runs' workspace) with the store a PostgreSQL
    database; every output is kept, to check that the password never shows."""

    dir: Path
    url: str
    said: list[str]

    @property
    def password(self) -> str:
        password = urlsplit(self.url).password
        assert password
        return password

    @property
    def shown(self) -> str:
        """The URL as messages name it: without the password."""
        return where_shown(self.url)

    def __call__(
        self, *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = run_trestle(args, cwd=cwd or self.dir, env=cli_env(**(env or {})), timeout=120)
        self.said.append(result.stdout + result.stderr)
        return result

    def json(self, *args: str | Path, env: dict[str, str] | None = None) -> Any:
        result = self(*args, "--json", env=env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path


@pytest.fixture
def pg(postgres_url: str, tmp_path: Path) -> UrlCli:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return UrlCli(workspace, postgres_url, [])


SHIP = """\
    goal: ship from a database
    steps:
      - id: build
        run: echo built > out.txt
      - id: deploy
        needs: [build]
        run: echo deployed >> deploys.log
        irreversible: true
      - id: look
        needs: [deploy]
        run: ls -A .trestle/shadow.git > seen.txt 2>&1; true
"""


def test_a_plan_runs_waits_is_approved_resumed_and_pruned_in_postgres(
    pg: UrlCli, tmp_path: Path
) -> None:
    pg.write("plan.yaml", SHIP)
    store = ("--store", pg.url)

    started = pg("run", "plan.yaml", *store, "--no-live", "--no-prompt")
    assert started.returncode == 3, started.stdout + started.stderr
    run_id = run_id_of(started)
    assert started.stdout.splitlines()[1] == f"store {pg.shown}"
    assert (pg.dir / "out.txt").read_text() == "built\n"

    [listed] = pg.json("runs", *store)
    assert (listed["run_id"], listed["status"]) == (run_id, "needs_human")
    log = pg("log", run_id, *store)
    assert log.returncode == 0, log.stderr
    assert "step_started" in log.stdout and "approval_requested" in log.stdout
    shown = pg("show", run_id, *store)
    assert shown.returncode == 0, shown.stderr
    assert "awaiting approval" in shown.stdout

    [card] = pg.json("inbox", *store)
    assert (card["ref"], card["step"], card["status"]) == (f"{run_id}.1", "deploy", "pending")
    approved = pg("approve", f"{run_id}.1", *store, "--reason", "ship it")
    assert approved.returncode == 0, approved.stderr

    # named by $TRESTLE_STORE alone
    resumed = pg("resume", run_id, "--no-live", "--no-prompt", env={STORE_ENV: pg.url})
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (pg.dir / "deploys.log").read_text() == "deployed\n"
    assert pg.json("runs", env={STORE_ENV: pg.url})[0]["status"] == "succeeded"

    # the checkpoints around each step: in the workspace, hidden from steps
    listed = pg.json("checkpoints", run_id, *store)
    taken = [(c["step"], c["when"]) for c in listed]
    assert {("deploy", "before"), ("deploy", "after")} <= set(taken)
    assert (pg.dir / ".trestle" / "shadow.git" / "objects").is_dir()
    assert (pg.dir / "seen.txt").read_text() == ""
    diff = pg("diff", run_id, "deploy", *store)
    assert diff.returncode == 0, diff.stderr
    assert "+deployed" in diff.stdout

    doctor = pg("doctor", *store)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert doctor.stdout.splitlines()[0] == f"store {pg.shown}: healthy"
    assert "connected; schema version" in doctor.stdout
    [line] = [line for line in doctor.stdout.splitlines() if line.startswith(f"  run {run_id}")]
    assert line.endswith("events readable, events intact"), doctor.stdout
    current = pg("doctor", *store, "--upgrade")
    assert current.returncode == 0, current.stdout + current.stderr
    assert current.stdout.startswith("the store's schema is current: nothing to upgrade\n")
    not_here = pg("doctor", "--store", tmp_path / "t.db", "--upgrade")
    assert not_here.returncode == 2
    assert "--upgrade is for a PostgreSQL store" in flat(not_here.stderr)
    salvaged = pg("doctor", *store, "--salvage", tmp_path / "copy.db")
    assert salvaged.returncode == 0, salvaged.stderr
    assert "salvaged 1 run into" in salvaged.stdout
    copied = pg("show", run_id, "--store", tmp_path / "copy.db")
    assert copied.returncode == 0, copied.stderr
    assert f"run {run_id}: succeeded" in copied.stdout

    # remembered as given, so the run is found from anywhere without naming the store
    index = recent_stores_file()
    assert index.read_text().splitlines()[0] == pg.url
    assert stat.S_IMODE(index.stat().st_mode) == 0o600
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = pg("show", run_id[-4:], cwd=elsewhere)
    assert found.returncode == 0, found.stderr
    assert f"run {run_id}: succeeded" in found.stdout

    dry = pg("prune", "--older-than", "0s", "--dry-run", *store)
    assert dry.returncode == 0, dry.stderr
    assert f"would remove run {run_id}" in dry.stdout
    assert "the store is " in dry.stdout and " bytes (dry run" in dry.stdout
    pruned = pg.json("prune", "--older-than", "0s", *store)
    assert [r["run_id"] for r in pruned["runs"]] == [run_id]
    assert pruned["checkpoints"] == len(listed)
    assert isinstance(pruned["bytes_before"], int) and isinstance(pruned["bytes_after"], int)
    assert pg.json("runs", *store) == []

    for said in pg.said:
        assert pg.password not in said


def test_the_dashboard_shows_decides_and_rewinds_a_run_in_postgres(pg: UrlCli) -> None:
    pg.write("plan.yaml", SHIP)
    started = pg("run", "plan.yaml", "--store", pg.url, "--no-live", "--no-prompt")
    assert started.returncode == 3, started.stdout + started.stderr
    run_id = run_id_of(started)
    pages: list[str] = []
    with dashboard(pg.url, cwd=pg.dir) as ui:
        client = ui.session()
        own = {"origin": ui.origin}
        pages.append(client.get("/").text)
        assert run_id in pages[-1]
        pages.append(client.get("/inbox").text)
        approved = client.post(
            f"/inbox/{run_id}.1/approve", data={"csrf": csrf_of(pages[-1])}, headers=own
        )
        assert approved.status_code == 303, approved.text
        pages.append(client.get("/inbox").text)
        assert f"approved {run_id}.1: queued" in pages[-1]

        resumed = pg("resume", run_id, "--store", pg.url, "--no-live", "--no-prompt")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr

        pages.append(client.get(f"/runs/{run_id}").text)
        assert "Checkpoints" in pages[-1] and "succeeded" in pages[-1]
        pages.append(client.get(f"/runs/{run_id}/steps/deploy/diff").text)
        assert "+deployed" in pages[-1]
        rewound = client.post(
            f"/runs/{run_id}/rewind",
            data={"csrf": csrf_of(pages[-2]), "to": "deploy"},
            headers=own,
        )
        assert rewound.status_code == 303, rewound.text
        pages.append(client.get(f"/runs/{run_id}").text)
        assert "workspace restored to before &#39;deploy&#39;" in pages[-1], pages[-1]
    assert not (pg.dir / "deploys.log").exists()  # put back as it was before the step
    for text in [*pages, *pg.said]:
        assert pg.password not in text


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that takes connections and never says a word, as a server
    that hangs (or a host that drops packets) would."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_a_remembered_database_that_does_not_answer_is_passed_over_in_bounded_time(
    tmp_path: Path, silent_server: int
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("goal: one\nsteps:\n  - {id: one, run: 'true'}\n", encoding="utf-8")
    store = tmp_path / "kept" / "t.db"
    env = cli_env(TRESTLE_SANDBOX="off")
    started = run_trestle(
        ["run", plan, "--store", store, "--no-live"], cwd=tmp_path, env=env, timeout=120
    )
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = run_id_of(started)
    index = RecentStores()
    index.remember("postgresql://trestle:s3cret@127.0.0.1:1/refused")
    index.remember(f"postgresql://trestle:s3cret@127.0.0.1:{silent_server}/silent")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    began = time.monotonic()
    shown = subprocess.run(
        [sys.executable, "-m", "trestle", "show", run_id[-4:]],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    took = time.monotonic() - began

    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id}: succeeded" in shown.stdout
    # the silent one was given its few seconds (the store itself would wait 10)
    assert RECENT_CONNECT_TIMEOUT <= took < RECENT_CONNECT_TIMEOUT + 5, took
    assert "s3cret" not in flat(shown.stdout + shown.stderr)
