"""A step the policy lets keep the network, against the run's own PostgreSQL store on
127.0.0.1: the role's password is all that keeps it out, so where the server let the
driver in without one, the run says at its start that the store is open to those steps.

Each server is a real one from the distribution's packages (``trestle.testing.postgres``);
the step is a real command in the real sandbox, connecting as the driver does but
without the password, which no step is given.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from trestle.core.events import SandboxChosen
from trestle.engines.local import LocalEngine
from trestle.execution.sandbox import find_bwrap
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store.location import open_store
from trestle.testing.postgres import LocalPostgres

# what the step runs: the store's URL without its password, as a step could guess it
REACH = """\
import sys
import psycopg
try:
    with psycopg.connect(sys.argv[1], connect_timeout=5) as db:
        (goal,) = db.execute("SELECT goal FROM trestle.runs").fetchone()
        db.execute("UPDATE trestle.runs SET goal = 'rewritten by a step'")
    said = "GOT " + goal
except psycopg.Error as error:
    said = "REFUSED " + str(error).strip().splitlines()[-1]
open("got.txt", "w").write(said)
"""


@pytest.fixture(scope="module")
def trusting() -> Iterator[LocalPostgres]:
    """A server that lets in whoever connects from 127.0.0.1 (``trust``), as many
    development set-ups do."""
    with LocalPostgres() as server:
        server.start()
        hba = server.directory / "data" / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        with server.connect() as db:
            db.execute("SELECT pg_reload_conf()")
        for _ in range(100):  # the server reads the file again on its own time
            try:
                psycopg.connect(_bare(server.url()), connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.05)
        yield server


def _bare(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}"))


def _drive(url: str, workspace: Path) -> tuple[str, tuple[str, ...]]:
    """Run a plan whose one step keeps the network and tries the store without its
    password; what the step got, and the warnings the run's start recorded."""
    found, why = find_bwrap()
    assert found is not None, f"{why}: scripts/setup-sandbox.sh installs bubblewrap"
    (workspace / "reach.py").write_text(REACH)
    plan = parse_plan(
        "goal: keep the store\n"
        "policy: {sandbox: {network: [fetch]}}\n"
        "steps:\n"
        f"  - {{id: fetch, approval: auto, run: '{sys.executable} reach.py {_bare(url)}'}}\n"
    )
    store = open_store(url)
    try:
        run_id = create_run(store, plan, workspace=workspace)
        asyncio.run(LocalEngine(store, sandbox="require").run(run_id))
        (chosen,) = [e.event for e in store.events(run_id) if isinstance(e.event, SandboxChosen)]
    finally:
        store.close()
    assert chosen.confined, chosen.detail
    return (workspace / "got.txt").read_text(), chosen.exposed


def test_a_store_that_takes_no_password_is_said_to_be_open_to_a_step_with_the_network(
    trusting: LocalPostgres, tmp_path: Path
) -> None:
    # the driver too connects without a password, and the server lets it in
    got, exposed = _drive(_bare(trusting.create_database()), tmp_path)
    assert got == "GOT keep the store"  # the step read the store and changed it
    said = " ".join(exposed)
    assert "let the driver in without a password" in said, exposed
    assert "lets fetch keep the network" in said


def test_a_store_that_asks_a_password_keeps_the_step_out_and_says_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    got, exposed = _drive(postgres_url, tmp_path)
    assert got.startswith("REFUSED"), got
    assert "without a password" not in " ".join(exposed)
