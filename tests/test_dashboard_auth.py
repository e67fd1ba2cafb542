"""Who may use the dashboard: a real ``trestle ui`` process on 127.0.0.1, asked with
and without its login token, session, CSRF token and origin."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboard_helpers import Dashboard, csrf_of, dashboard, enter, pages, plan_run, session_cookie
from test_cli import cli_env
from trestle.lifecycle.runs import load_state
from trestle.store import SqliteStore

PLAN = "goal: guarded\nsteps:\n  - {id: one, run: 'true'}\n"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Dashboard, str, Path]]:
    store = tmp_path / ".trestle" / "trestle.db"
    store.parent.mkdir()
    run_id = plan_run(store, PLAN, tmp_path)
    with dashboard(store) as ui:
        yield ui, run_id, store


def cancelled(store: Path, run_id: str) -> str | None:
    opened = SqliteStore(store, create=False)
    try:
        return load_state(opened, run_id).cancelled
    finally:
        opened.close()


def test_it_listens_on_loopback_and_prints_a_login_url(served: tuple[Dashboard, str, Path]) -> None:
    ui, _, _ = served
    assert ui.base.startswith("http://127.0.0.1:")
    assert "/login?token=" in ui.login


def test_nothing_is_shown_without_logging_in(served: tuple[Dashboard, str, Path]) -> None:
    ui, run_id, _ = served
    with httpx.Client(base_url=ui.base) as anon:
        for path in (
            "/",
            f"/runs/{run_id}",
            "/inbox",
            "/health",
            f"/stream/runs/{run_id}",
            f"/runs/{run_id}/events.json",
            f"/runs/{run_id}/chat",
            "/?tag=x&waiting=on",
        ):
            answer = anon.get(path)
            assert answer.status_code == 401, path
            assert run_id not in answer.text
        assert anon.get("/login").status_code == 403
        assert anon.get("/login", params={"token": "wrong"}).status_code == 403


def test_the_login_token_works_once_for_an_httponly_strict_cookie(
    served: tuple[Dashboard, str, Path],
) -> None:
    ui, run_id, _ = served
    client = httpx.Client(base_url=ui.base, follow_redirects=False)
    answer = client.get(ui.login)
    enter(client, answer)  # to the session's own pages, /s/KEY/
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "secure" not in cookie.lower()  # over plain HTTP a browser would never send it back
    # sent only to the session's pages: not to / nor to any other port of the host
    assert f"Path={pages(client)};" in cookie or cookie.endswith(f"Path={pages(client)}")
    page = client.get("/")
    assert page.status_code == 200 and run_id in page.text
    assert "Content-Security-Policy" in page.headers
    with httpx.Client(base_url=ui.base, follow_redirects=False) as other:
        assert other.get(ui.login).status_code == 403  # used up
        assert other.get("/").status_code == 401


def test_the_cookie_alone_opens_nothing_away_from_its_sessions_pages(
    served: tuple[Dashboard, str, Path],
) -> None:
    # whoever got the cookie (a server on another port of 127.0.0.1 the browser was
    # sent to) but not the session's address is refused, pages and actions alike
    ui, run_id, store = served
    client = ui.session()
    token = csrf_of(client.get(f"/runs/{run_id}").text)
    name, value = session_cookie(client)
    stolen = {name: value}
    own = {"origin": ui.origin}
    wrong = f"/s/{'0' * 32}"
    with httpx.Client(base_url=ui.base, cookies=stolen, follow_redirects=False) as thief:
        for path in ("/", "/inbox", f"/runs/{run_id}", f"{wrong}/inbox"):
            answer = thief.get(path)
            assert answer.status_code == 401, path
            assert run_id not in answer.text and "not logged in here" in answer.text
        assert thief.get(f"/s/x/runs/{run_id}").status_code == 404  # no address at all
        for where in ("", wrong):
            cancel = f"{where}/runs/{run_id}/cancel"
            refused = thief.post(cancel, data={"csrf": token, "reason": "x"}, headers=own)
            assert refused.status_code == 401
    assert cancelled(store, run_id) is None


def test_a_change_needs_the_session_the_csrf_token_and_the_dashboards_origin(
    served: tuple[Dashboard, str, Path],
) -> None:
    ui, run_id, store = served
    client = ui.session()
    token = csrf_of(client.get(f"/runs/{run_id}").text)
    path = f"/runs/{run_id}/cancel"
    own = {"origin": ui.origin}
    with httpx.Client(base_url=ui.base) as anon:
        no_session = anon.post(path, data={"csrf": token, "reason": "x"}, headers=own)
    assert no_session.status_code == 401
    wrong_csrf = client.post(path, data={"csrf": "nope", "reason": "x"}, headers=own)
    assert wrong_csrf.status_code == 403 and "CSRF" in wrong_csrf.text
    no_csrf = client.post(path, data={"reason": "x"}, headers=own)
    assert no_csrf.status_code == 403
    foreign = client.post(
        path, data={"csrf": token, "reason": "x"}, headers={"origin": "http://evil.example"}
    )
    assert foreign.status_code == 403 and "does not come from" in foreign.text
    no_origin = client.post(path, data={"csrf": token, "reason": "x"})
    assert no_origin.status_code == 403
    foreign_referer = client.post(
        path, data={"csrf": token, "reason": "x"}, headers={"referer": "http://evil.example/"}
    )
    assert foreign_referer.status_code == 403
    assert cancelled(store, run_id) is None  # nothing refused changed anything
    done = client.post(path, data={"csrf": token, "reason": "not needed"}, headers=own)
    assert done.status_code == 303
    said = cancelled(store, run_id) or ""
    assert said.startswith("cancelled by dashboard:") and said.endswith(": not needed")


def test_logging_out_ends_the_session(served: tuple[Dashboard, str, Path]) -> None:
    ui, _, _ = served
    client = ui.session()
    token = csrf_of(client.get("/").text)
    assert (
        client.post("/logout", data={"csrf": "wrong"}, headers={"origin": ui.origin}).status_code
        == 403
    )
    gone = client.post("/logout", data={"csrf": token}, headers={"origin": ui.origin})
    assert gone.status_code == 200 and "logged out" in gone.text
    assert client.get("/").status_code == 401


def test_a_request_for_another_host_is_refused(served: tuple[Dashboard, str, Path]) -> None:
    ui, _, _ = served
    client = ui.session()
    answer = client.get("/", headers={"host": "attacker.example"})
    assert answer.status_code == 421


def test_a_session_limited_to_some_runs_cannot_see_or_touch_another(tmp_path: Path) -> None:
    store = tmp_path / "trestle.db"
    mine = plan_run(store, PLAN, tmp_path)
    theirs = plan_run(store, PLAN.replace("guarded", "theirs"), tmp_path)
    with dashboard(store, "--run", mine) as ui:
        client = ui.session()
        listing = client.get("/").text
        assert mine in listing and theirs not in listing
        token = csrf_of(client.get(f"/runs/{mine}").text)
        assert client.get(f"/runs/{theirs}").status_code == 403
        assert client.get(f"/runs/{theirs}/events.json").status_code == 403
        assert client.get(f"/runs/{theirs}/chat").status_code == 403
        assert theirs not in client.get("/", params={"q": "theirs"}).text
        refused = client.post(
            f"/runs/{theirs}/cancel",
            data={"csrf": token, "reason": "x"},
            headers={"origin": ui.origin},
        )
        assert refused.status_code == 403
    assert cancelled(store, theirs) is None


# hides the ui extra from the import system, then runs `trestle ui`
WITHOUT_EXTRA = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fastapi", "uvicorn", "jinja2", "multipart"):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Hide())
from trestle.cli.app import main
sys.argv = ["trestle", "ui"]
main()
"""


def test_without_the_extra_it_says_what_to_install(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert 'pip install "trestle-runtime[ui]"' in done.stderr


def test_the_gate_alone() -> None:
    from trestle.dashboard.security import Gate, allowed_hosts

    hosts = allowed_hosts("127.0.0.1", 8765)
    assert hosts == {"127.0.0.1:8765", "localhost:8765"}
    assert allowed_hosts("0.0.0.0", 80, ["box"]) == {"0.0.0.0:80", "box:80"}
    assert allowed_hosts("::1", 9, []) >= {"[::1]:9"}
    gate = Gate(user="ana@box", hosts=hosts)
    assert gate.host_ok("LOCALHOST:8765") and not gate.host_ok("127.0.0.1:1")
    assert not gate.host_ok(None)
    assert gate.origin_ok("http://127.0.0.1:8765", None)
    assert gate.origin_ok(None, "http://localhost:8765/inbox")
    assert not gate.origin_ok("null", None)  # a sandboxed frame or a file: page
    assert not gate.origin_ok("https://127.0.0.1:8765", None)  # another scheme
    assert not gate.origin_ok("http://127.0.0.1:8765.evil.example", None)
    assert not gate.origin_ok(None, None)
    token = gate.login_token
    assert gate.exchange("wrong") is None and gate.login_token == token
    session = gate.exchange(token)
    assert session is not None and gate.exchange(token) is None
    assert session.by == "dashboard:ana@box" and session.may_see("any run")
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("") and not session.csrf_ok(None)
    assert gate.session(session.pages, session.id) == session
    assert gate.session("/s/" + "0" * 32, session.id) is None  # its cookie elsewhere
    gate.note(session.id, "done")
    assert gate.notes(session.id) == ["done"] and gate.notes(session.id) == []
    gate.end(session.id)
    assert gate.session(session.pages, session.id) is None
    limited = Gate(user="u", hosts=hosts, runs=frozenset({"a"}))
    only = limited.exchange(limited.login_token)
    assert only is not None and only.may_see("a") and not only.may_see("b")


def test_listening_beyond_loopback_warns_that_the_login_travels_in_clear(
    tmp_path: Path,
) -> None:
    store = tmp_path / ".trestle" / "trestle.db"
    store.parent.mkdir()
    plan_run(store, PLAN, tmp_path)
    with dashboard(store, "--host", "0.0.0.0") as ui:
        pass
    assert ui.process.stderr is not None
    warned = ui.process.stderr.read().partition("\n")[0]
    port = ui.base.rsplit(":", 1)[1].rstrip("/")
    assert warned.startswith("warning: the dashboard listens on every address")
    assert "plain HTTP" in warned and "cannot be marked Secure" in warned
    assert f"ssh -L {port}:127.0.0.1:{port}" in warned


def test_on_loopback_nothing_is_warned(served: tuple[Dashboard, str, Path]) -> None:
    ui, _, _ = served
    ui.process.terminate()
    _, said = ui.process.communicate(timeout=10)
    assert "warning" not in said


@pytest.mark.parametrize(
    ("bound", "exposed"),
    [
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.168.1.5", True),
        ("fe80::1%eth0", True),
    ],
)
def test_which_addresses_are_warned_about(bound: str, exposed: bool) -> None:
    from trestle.dashboard.serve import exposure_warning

    said = exposure_warning(bound, 8765)
    assert (said is not None) == exposed
    if said is not None and bound not in ("0.0.0.0", "::"):
        assert f"listens on {bound}," in said
