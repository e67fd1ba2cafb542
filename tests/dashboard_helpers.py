"""A real ``trestle ui`` process for the dashboard's tests, and runs to show in it."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from forked_cli import Started, run_trestle, start_trestle
from test_cli import cli_env
from trestle.dashboard.security import cookie_name
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore

if TYPE_CHECKING:
    from playwright.sync_api import Page


@dataclass(frozen=True)
class Dashboard:
    """A running ``trestle ui``: its base URL (ending in /) and one-time login URL."""

    base: str
    login: str
    process: Started

    @property
    def origin(self) -> str:
        return self.base.rstrip("/")

    def session(self) -> httpx.Client:
        """A client logged in with the login URL (which is then used up), asking for the
        session's pages: its base URL is their address (``/s/KEY/``)."""
        client = httpx.Client(base_url=self.base, follow_redirects=False, timeout=30)
        enter(client, client.get(self.login))
        return client

    def log_in(self, page: Page, login: str | None = None) -> str:
        """Log the browser ``page`` in with the login URL (or ``login``); the base URL of
        the session's pages (``http://HOST:PORT/s/KEY/``)."""
        page.goto(login or self.login)
        assert re.fullmatch(re.escape(self.origin) + r"/s/[0-9a-f]{32}/", page.url), page.url
        return page.url


@contextmanager
def dashboard(store: str | Path, *args: str, cwd: Path | None = None) -> Iterator[Dashboard]:
    """``trestle ui --store STORE`` (a file, or a URL given ``cwd``) on a free port of
    127.0.0.1, stopped afterwards."""
    process = start_trestle(
        ["ui", "--store", str(store), *args], cwd=cwd or Path(store).parent, env=cli_env()
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        first, second = process.stdout.readline(), process.stdout.readline()
        base = re.search(r"at (http://\S+/)$", first.strip())
        login = re.search(r"(http://\S+/login\?token=\S+)$", second.strip())
        if base is None or login is None:
            process.kill()
            raise AssertionError(
                f"trestle ui printed {first!r} {second!r}: {process.stderr.read()}"
            )
        yield Dashboard(base.group(1), login.group(1), process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def enter(client: Any, answer: Any) -> None:
    """Follow a login's answer (a redirect to the session's pages, ``/s/KEY/``): the
    client's base URL becomes their address, so its paths are the session's pages.
    ``client`` is an httpx client, or Starlette's TestClient (an httpx of its own)."""
    assert answer.status_code == 303, answer.text
    where = answer.headers["location"]
    assert re.fullmatch(r"/s/[0-9a-f]{32}/", where), where
    client.base_url = client.base_url.copy_with(path=where)


def pages(client: Any) -> str:
    """The address of the pages of the session ``client`` is logged in to (``/s/KEY``),
    as its links and redirects begin."""
    return str(client.base_url.path).rstrip("/")


def session_cookie(client: Any) -> tuple[str, str]:
    """The name and value of the session cookie ``client`` holds (named after the
    session's address: see ``trestle.dashboard.security.cookie_name``)."""
    name = cookie_name(pages(client))
    return name, str(client.cookies[name])


def plan_run(store_path: Path, text: str, workspace: Path) -> str:
    """A run of the plan ``text`` recorded in the store (not driven)."""
    store = SqliteStore(store_path)
    try:
        return create_run(store, parse_plan(text), workspace=workspace)
    finally:
        store.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def trestle(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_trestle(args, cwd=cwd, env=cli_env(TRESTLE_SANDBOX="off"), timeout=timeout)


def start_run(plan: Path, store: Path, cwd: Path) -> Started:
    """``trestle run PLAN`` in the background, unconfined (tests of the dashboard, not
    of the sandbox), without prompting."""
    args = ["run", str(plan), "--store", str(store), "--no-live", "--no-prompt"]
    return start_trestle(
        [*args, "--sandbox", "off"], cwd=cwd, env=cli_env(), stderr=subprocess.STDOUT
    )


def wait_for(predicate: object, timeout: float = 30.0, what: str = "") -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def run_ids(store: Path) -> list[str]:
    opened = SqliteStore(store, create=False)
    try:
        return [r.run_id for r in opened.runs()]
    finally:
        opened.close()
