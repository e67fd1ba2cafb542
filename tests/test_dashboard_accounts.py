"""The dashboard's people: invitations, passwords, sessions that expire, logout
everywhere, and decisions signed with each person's own key, judged by the operator's
approver groups. The accounts are a real SQLite file with a clock the tests move; the
dashboard is the real app (Starlette's TestClient), over a real store a real `trestle run`
made."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import stat
import threading
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from dashboard_helpers import dashboard, enter, pages, session_cookie, trestle
from test_approvals_cli import DEPLOY, Cli
from test_budget_raise import chain
from trestle.dashboard.accounts import (
    DEVICE_LIFETIME,
    DEVICES_MOST,
    FAILURES_MOST,
    LOCKOUT,
    Accounts,
    Lifetimes,
    LoginRefused,
)
from trestle.dashboard.app import Settings, create_app
from trestle.dashboard.security import SESSION_COOKIE, Gate
from trestle.notifications.ledger import Delivery, Ledger
from trestle.store import SqliteStore

ROOT = "http://testserver"  # the login pages are here; a session's are under /s/KEY/
ORIGIN = {"origin": ROOT}
PASSWORD = "correct horse battery"


class Clock:
    """Time the tests move: seconds, like time.time."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    """The real app over ``store``, its gate taking ``accounts``' people."""

    accounts: Accounts
    clock: Clock
    gate: Gate
    store: Path

    def client(self) -> TestClient:
        """A browser of its own (its own cookies)."""
        app = create_app(
            Settings(
                store=self.store,
                gate=self.gate,
                poll=0.01,
                wrong_password_delay=0,
                alive_every=0.05,
            )
        )
        return TestClient(app, follow_redirects=False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(tmp_path: Path, clock: Clock) -> Accounts:
    return Accounts(
        tmp_path / "cfg" / "dashboard.sqlite",
        clock=clock,
        lifetimes=Lifetimes(absolute=12 * 3600, idle=3600),
    )


@pytest.fixture
def served(tmp_path: Path, accounts: Accounts, clock: Clock) -> Served:
    store = tmp_path / "trestle.db"
    SqliteStore(store).close()
    gate = Gate(user="op@box", hosts=frozenset({"testserver"}), accounts=accounts)
    return Served(accounts, clock, gate, store)


def join(served: Served, name: str) -> TestClient:
    """``name`` invited, their invitation opened and their password set: a client
    logged in as them."""
    invitation = served.accounts.invite(name)
    client = served.client()
    form_at = opened_invitation(client, invitation.token)
    form = client.get(form_at)
    assert form.status_code == 200 and f"Join as {name}" in form.text
    assert invitation.token not in form.text  # nor in its address: nothing to leak
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    done = client.post(
        form_at,
        data={"csrf": csrf.group(1), "password": PASSWORD, "again": PASSWORD},
        headers=ORIGIN,
    )
    enter(client, done)
    assert client.get("/").status_code == 200
    return client


def opened_invitation(client: TestClient, token: str) -> str:
    """Open the invitation URL with ``token``: where its form is (``/invite/KEY``), the
    token now in a cookie only that address gets."""
    opened = client.get(f"{ROOT}/invite?token={token}")
    assert opened.status_code == 303, opened.text
    where = opened.headers["location"]
    assert re.fullmatch(r"/invite/[0-9a-f]{32}", where), where
    assert opened.cookies.get("trestle_invite") == token
    assert f"Path={where};" in opened.headers["set-cookie"], opened.headers["set-cookie"]
    return f"{ROOT}{where}"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def log_in(client: TestClient, name: str, password: str) -> int:
    """Log in with the form at /login: its answer's status; once logged in, the
    client's paths are the new session's pages."""
    form = client.get(f"{ROOT}/login")
    assert form.status_code == 200
    answer = client.post(
        f"{ROOT}/login",
        data={"csrf": csrf_of(form.text), "name": name, "password": password},
        headers=ORIGIN,
    )
    if answer.status_code == 303:
        enter(client, answer)
    return answer.status_code


# -- the accounts file ------------------------------------------------------------------


def test_the_file_is_the_owners_alone_and_holds_no_token_or_password(
    accounts: Accounts, clock: Clock
) -> None:
    invitation = accounts.invite("alice")
    login = accounts.accept(invitation.token, PASSWORD)
    assert stat.S_IMODE(accounts.path.stat().st_mode) == 0o600
    raw = accounts.path.read_bytes()
    for secret in (invitation.token, login.id, PASSWORD):
        assert secret.encode() not in raw
    [alice] = accounts.people()
    assert (alice.name, alice.joined, alice.sessions) == ("alice", True, 1)
    assert alice.public_key == invitation.public_key and alice.public_key.startswith("ed25519:")


def test_an_invitation_works_once_and_not_after_it_expires(
    accounts: Accounts, clock: Clock
) -> None:
    used = accounts.invite("alice", lifetime=3600)
    accounts.accept(used.token, PASSWORD)
    with pytest.raises(LoginRefused, match="wrong, used or expired"):
        accounts.accept(used.token, "another password!")
    late = accounts.invite("bob", lifetime=3600)
    clock.now += 3601
    with pytest.raises(LoginRefused, match="wrong, used or expired"):
        accounts.accept(late.token, PASSWORD)
    with pytest.raises(LoginRefused, match="12 to 1024 characters"):
        accounts.accept(accounts.invite("carol").token, "short")


def test_wrong_passwords_lock_the_name_for_a_while(accounts: Accounts, clock: Clock) -> None:
    accounts.accept(accounts.invite("alice").token, PASSWORD)
    for _ in range(FAILURES_MOST):
        with pytest.raises(LoginRefused, match="wrong name or password"):
            accounts.login("alice", "guess guess guess")
    with pytest.raises(LoginRefused, match="too many wrong passwords for 'alice'"):
        accounts.login("alice", PASSWORD)  # even the right one, until the window passes
    with pytest.raises(LoginRefused, match="wrong name or password"):
        accounts.login("nobody", PASSWORD)  # an unknown name reads the same
    clock.now += LOCKOUT + 1
    assert accounts.login("alice", PASSWORD).name == "alice"


def lock(accounts: Accounts, name: str, device: str | None = None) -> None:
    """Lock ``name`` with wrong passwords, as anyone who reaches the login form can."""
    for n in range(FAILURES_MOST):
        with pytest.raises(LoginRefused, match="wrong name or password"):
            accounts.login(name, f"a wrong guess {n}", device)


def test_a_lockout_someone_else_caused_spares_a_browser_that_logged_in_before(
    accounts: Accounts, clock: Clock
) -> None:
    joined = accounts.accept(accounts.invite("alice").token, PASSWORD)
    laptop = accounts.login("alice", PASSWORD).device
    assert joined.device and laptop and joined.device != laptop
    lock(accounts, "alice")  # no device token: a step with the network, say
    with pytest.raises(LoginRefused, match="too many wrong passwords for 'alice': try"):
        accounts.login("alice", PASSWORD)
    renewed = accounts.login("alice", PASSWORD, laptop).device
    assert renewed and renewed != laptop  # renewed at each login; the old one is gone
    with pytest.raises(LoginRefused, match="too many wrong passwords for 'alice': try"):
        accounts.login("alice", PASSWORD, laptop)
    assert accounts.login("alice", PASSWORD, joined.device).name == "alice"
    # bob's token is not alice's: it counts as none
    bobs = accounts.accept(accounts.invite("bob").token, PASSWORD).device
    with pytest.raises(LoginRefused, match="too many wrong passwords for 'alice': try"):
        accounts.login("alice", PASSWORD, bobs)
    assert accounts.path.read_bytes().count((renewed or "").encode()) == 0  # only its hash


def test_wrong_passwords_with_a_device_token_count_against_that_browser_alone(
    accounts: Accounts, clock: Clock
) -> None:
    accounts.accept(accounts.invite("alice").token, PASSWORD)
    stolen = accounts.login("alice", PASSWORD).device
    mine = accounts.login("alice", PASSWORD).device
    lock(accounts, "alice", stolen)  # no more guesses than without a token
    with pytest.raises(LoginRefused, match="too many wrong passwords for 'alice' from this"):
        accounts.login("alice", PASSWORD, stolen)
    assert accounts.login("alice", PASSWORD).name == "alice"  # the name is not locked
    assert accounts.login("alice", PASSWORD, mine).name == "alice"
    clock.now += LOCKOUT + 1
    assert accounts.login("alice", PASSWORD, stolen).name == "alice"


def test_device_tokens_end_with_logout_everywhere_a_new_invitation_and_age(
    accounts: Accounts, clock: Clock
) -> None:
    accounts.accept(accounts.invite("alice").token, PASSWORD)

    def spared(device: str | None) -> bool:
        try:
            accounts.login("alice", PASSWORD, device)
        except LoginRefused:
            return False
        return True

    def locked_with(device: str | None) -> str | None:
        """``device`` after the name was locked (a fresh lock each time)."""
        clock.now += LOCKOUT + 1
        lock(accounts, "alice")
        return device

    def fresh() -> str | None:
        """A new browser's token, once the last lock has passed."""
        clock.now += LOCKOUT + 1
        return accounts.login("alice", PASSWORD).device

    kept = [fresh() for _ in range(DEVICES_MOST + 1)]
    assert not spared(locked_with(kept[0]))  # only the latest logins' browsers are kept
    assert spared(locked_with(kept[-1]))
    before = fresh()
    accounts.end_all("alice")
    assert not spared(locked_with(before))
    before = fresh()
    accounts.accept(accounts.invite("alice").token, PASSWORD)
    assert not spared(locked_with(before))
    old = fresh()
    clock.now += DEVICE_LIFETIME
    assert not spared(locked_with(old))


def test_an_older_trestle_sharing_the_file_still_counts_its_wrong_passwords(
    accounts: Accounts,
) -> None:
    # the device tokens came as a new table: a column added to failures made an older
    # Trestle's `INSERT INTO failures VALUES (?, ?)` fail, so it counted no guess at all
    accounts.accept(accounts.invite("alice").token, PASSWORD)
    with closing(sqlite3.connect(accounts.path)) as older, older:
        for n in range(FAILURES_MOST):
            older.execute("INSERT INTO failures VALUES (?, ?)", ("alice", 1_000_000.0 + n))
    with pytest.raises(LoginRefused, match="too many wrong passwords for 'alice': try"):
        accounts.login("alice", PASSWORD)


def test_guesses_sent_at_once_are_counted_one_by_one(accounts: Accounts) -> None:
    accounts.accept(accounts.invite("alice").token, PASSWORD)
    said: list[str] = []

    def guess(n: int) -> None:
        try:
            accounts.login("alice", f"parallel guess {n}")
        except LoginRefused as exc:
            said.append(str(exc))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert said.count("wrong name or password") == FAILURES_MOST  # checked; the rest refused
    assert sum("too many wrong passwords" in s for s in said) == 12 - FAILURES_MOST


def test_a_session_ends_when_idle_or_old_and_is_deleted(accounts: Accounts, clock: Clock) -> None:
    accounts.accept(accounts.invite("alice").token, PASSWORD)
    idle = accounts.login("alice", PASSWORD)
    clock.now += 3599
    assert accounts.session(idle.id).name == "alice"  # used: idle again from now
    clock.now += 3599
    assert accounts.session(idle.id).name == "alice"
    clock.now += 3600
    with pytest.raises(LoginRefused, match="after 60 minutes without use: log in again"):
        accounts.session(idle.id)
    with pytest.raises(LoginRefused, match="not logged in"):
        accounts.session(idle.id)  # deleted
    old = accounts.login("alice", PASSWORD)
    for _ in range(14):  # in use all along, up to 11 h 40 min
        clock.now += 3000
        accounts.session(old.id)
    clock.now += 3000
    with pytest.raises(LoginRefused, match="12 h after you logged in: log in again"):
        accounts.session(old.id)


def test_logout_everywhere_and_removal_end_every_session(accounts: Accounts) -> None:
    accounts.accept(accounts.invite("alice").token, PASSWORD)
    sessions = [accounts.login("alice", PASSWORD) for _ in range(2)]
    assert accounts.end_all("alice") == 3  # the invitation's own too
    for s in sessions:
        with pytest.raises(LoginRefused):
            accounts.session(s.id)
    again = accounts.login("alice", PASSWORD)
    accounts.remove("alice")
    with pytest.raises(LoginRefused):
        accounts.session(again.id)
    assert accounts.people() == []


# -- the dashboard ----------------------------------------------------------------------


def test_joining_moves_the_token_out_of_the_url_and_logs_in(served: Served) -> None:
    alice = join(served, "alice")
    page = alice.get("/")
    assert "acting as dashboard:alice" in page.text
    assert "Log out everywhere" in page.text
    assert page.headers["referrer-policy"] == "same-origin"


def test_an_invitation_url_is_refused_once_used_or_expired(served: Served) -> None:
    invitation = served.accounts.invite("alice", lifetime=600)
    late = served.accounts.invite("bob", lifetime=600)
    client = served.client()
    form_at = opened_invitation(client, invitation.token)
    form = client.get(form_at)
    client.post(
        form_at,
        data={"csrf": csrf_of(form.text), "password": PASSWORD, "again": PASSWORD},
        headers=ORIGIN,
    )
    other = served.client()
    assert other.get(f"/invite?token={invitation.token}").status_code == 403
    served.clock.now += 601
    refused = other.get(f"/invite?token={late.token}")
    assert refused.status_code == 403 and "expired" in refused.text
    assert other.get("/").status_code == 401


def test_the_invitation_form_wants_its_csrf_its_origin_and_twice_the_password(
    served: Served,
) -> None:
    invitation = served.accounts.invite("alice")
    client = served.client()
    form_at = opened_invitation(client, invitation.token)
    csrf = csrf_of(client.get(form_at).text)
    good = {"csrf": csrf, "password": PASSWORD, "again": PASSWORD}
    assert client.post(form_at, data=good).status_code == 403  # no origin
    assert client.post(form_at, data={**good, "csrf": "x"}, headers=ORIGIN).status_code == 403
    differ = client.post(form_at, data={**good, "again": PASSWORD + "!"}, headers=ORIGIN)
    assert differ.status_code == 400 and "differ" in differ.text
    # the form's address names its invitation: another's, or none, is refused
    elsewhere = f"{ROOT}/invite/{'0' * 32}"
    assert client.post(elsewhere, data=good, headers=ORIGIN).status_code == 403
    assert client.get(f"{ROOT}/invite").status_code == 403
    enter(client, client.post(form_at, data=good, headers=ORIGIN))


def test_login_with_name_and_password(served: Served) -> None:
    join(served, "alice")
    client = served.client()
    assert log_in(client, "alice", "not the password") == 401
    assert client.get("/").status_code == 401
    form = client.get("/login")
    data = {"csrf": csrf_of(form.text), "name": "alice", "password": PASSWORD}
    assert client.post("/login", data=data).status_code == 403  # no origin: refused
    stale = served.client().post("/login", data=data, headers=ORIGIN)  # no form cookie
    assert stale.status_code == 403
    assert log_in(client, "alice", PASSWORD) == 303
    assert "acting as dashboard:alice" in client.get("/").text


def test_a_brute_force_is_stopped_at_the_lockout(served: Served) -> None:
    join(served, "alice")
    client = served.client()
    codes = [log_in(client, "alice", f"guess number {n}") for n in range(FAILURES_MOST + 1)]
    assert codes == [401] * (FAILURES_MOST + 1)
    assert log_in(client, "alice", PASSWORD) == 401
    assert (
        "too many wrong passwords"
        in client.post(
            "/login",
            data={
                "csrf": csrf_of(client.get("/login").text),
                "name": "alice",
                "password": PASSWORD,
            },
            headers=ORIGIN,
        ).text
    )


def test_the_device_token_reaches_only_the_sessions_pages_and_lifts_a_lockout(
    served: Served,
) -> None:
    alice = join(served, "alice")
    # named after the session's address: another port can set a cookie of any other name
    device_cookie = f"trestle_device_{pages(alice).rpartition('/')[2]}"
    [cookie] = [c for c in alice.cookies.jar if c.name == device_cookie]
    assert cookie.path == pages(alice) and not cookie.has_nonstandard_attr("HttpOnly")
    [session] = [c for c in alice.cookies.jar if c.name.startswith(SESSION_COOKIE)]
    assert session.path == pages(alice) and session.has_nonstandard_attr("HttpOnly")
    name, _, device = str(cookie.value).partition(":")
    assert name == "alice" and len(device) > 30
    intruder = served.client()
    for n in range(FAILURES_MOST):  # as a step that keeps the network would, Origin and all
        assert log_in(intruder, "alice", f"a wrong guess {n}") == 401
    assert log_in(served.client(), "alice", PASSWORD) == 401  # a new browser: locked out
    browser = served.client()
    form = browser.get(f"{ROOT}/login")
    assert 'name="device"' in form.text and "/static/login.js" in form.text
    answer = browser.post(
        f"{ROOT}/login",
        data={"csrf": csrf_of(form.text), "name": "alice", "password": PASSWORD, "device": device},
        headers=ORIGIN,
    )
    enter(browser, answer)
    assert "acting as dashboard:alice" in browser.get("/").text
    renewed = [c.value for c in browser.cookies.jar if c.name.startswith("trestle_device_")]
    assert renewed and renewed != [cookie.value]


def test_an_expired_or_idle_session_is_refused_with_a_sentence(served: Served) -> None:
    alice = join(served, "alice")
    served.clock.now += 3600
    refused = alice.get("/inbox")
    assert refused.status_code == 401 and "log in again" in refused.text
    assert log_in(alice, "alice", PASSWORD) == 303
    for _ in range(14):
        served.clock.now += 3000
        assert alice.get("/").status_code == 200
    served.clock.now += 3000
    answer = alice.get("/")
    assert answer.status_code == 401 and "12 h after you logged in" in answer.text


def test_removed_or_forged_cookies_open_nothing(served: Served) -> None:
    alice = join(served, "alice")
    served.accounts.remove("alice")
    assert alice.get("/").status_code == 401
    # a hash of a live session taken from the file is no cookie either, at its address
    bob = join(served, "bob")
    assert bob.get("/").status_code == 200
    name, _ = session_cookie(bob)
    for value in ("forged-" + "A" * 40, hashlib.sha256(b"anything").hexdigest()):
        thief = served.client()
        thief.cookies.set(name, value)
        assert thief.get(f"{pages(bob)}/").status_code == 401


def test_a_session_opens_only_at_its_own_servers_address(served: Served) -> None:
    # an invited person's session outlives the server (the accounts file keeps it), and a
    # program that took the port of a stopped dashboard got its cookie and address from
    # the open page reconnecting: the address is the server's own, so no other one opens
    alice = join(served, "alice")
    name, value = session_cookie(alice)
    assert alice.get("/").status_code == 200
    restarted = Gate(user="op@box", hosts=frozenset({"testserver"}), accounts=served.accounts)
    again = Served(served.accounts, served.clock, restarted, served.store).client()
    again.cookies.set(name, value)
    refused = again.get(f"{pages(alice)}/")
    assert refused.status_code == 401 and "not logged in here" in refused.text
    assert log_in(again, "alice", PASSWORD) == 303  # a login there has an address of its own
    assert pages(again) != pages(alice) and again.get("/").status_code == 200


def test_a_cookie_another_port_plants_for_the_whole_host_shuts_nobody_out(
    served: Served,
) -> None:
    # a server on another port of 127.0.0.1 can set a cookie for all of the host, which
    # a browser sends beside the session's own (and a cookie of an older dashboard's
    # stays there): its name is not the session's, which takes the session's address
    alice = join(served, "alice")
    alice.cookies.set(SESSION_COOKIE, "junk", path="/")
    assert alice.get("/").status_code == 200


def test_logout_everywhere_ends_the_persons_other_sessions(served: Served) -> None:
    alice = join(served, "alice")
    laptop = served.client()
    assert log_in(laptop, "alice", PASSWORD) == 303
    bob = join(served, "bob")
    page = alice.get("/")
    ended = alice.post("/logout-everywhere", data={"csrf": csrf_of(page.text)}, headers=ORIGIN)
    assert ended.status_code == 200 and "2 sessions ended" in ended.text
    assert alice.get("/").status_code == 401 and laptop.get("/").status_code == 401
    assert bob.get("/").status_code == 200  # another person's stay


def test_a_live_stream_ends_with_its_session(served: Served) -> None:
    alice = join(served, "alice")
    ended = threading.Event()

    def watch() -> None:
        with alice.stream("GET", "/stream/runs") as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):  # the page's first render: now end it
                    served.accounts.end_all("alice")
        ended.set()

    threading.Thread(target=watch, daemon=True).start()
    assert ended.wait(20), "the stream went on after its session ended"


def test_the_operators_login_token_still_works_alongside(served: Served) -> None:
    join(served, "alice")
    client = served.client()
    enter(client, client.get(f"/login?token={served.gate.login_token}"))
    page = client.get("/")
    assert "acting as dashboard:op@box" in page.text
    assert "Log out everywhere" not in page.text


def test_the_health_page_shows_failing_notifications(served: Served, _own_config_dir: Path) -> None:
    alice = join(served, "alice")
    assert "No notification target fails." in alice.get("/health").text
    (_own_config_dir / "trestle").mkdir(exist_ok=True)
    ledger = Ledger(_own_config_dir / "trestle" / "notifications.sqlite")
    try:
        ledger.record("r1", 1, [("k", "pager", {"text": "x"})], now=1.0)
        ledger.failed(Delivery("k", "pager", "r1", {}, 0), "HTTP 503", now=2.0, retry_at=9.0)
    finally:
        ledger.close()
    page = alice.get("/health").text
    assert "notifications to &#39;pager&#39; fail: 1 to be tried again; last error: HTTP 503" in (
        page
    )


# -- decisions: each person's own key, judged by the operator's groups ----------------


def run_under(
    tmp_path: Path, served: Served, group: str, covers: str, plan: str, code: int
) -> tuple[Cli, str]:
    """A run of ``plan``, started to exit ``code``, under a policy whose ``group`` has
    alice's dashboard key (not bob's) and one approver rule ``covers`` says what of."""
    alice = served.accounts.invite("alice")
    ws = tmp_path / "ws"
    ws.mkdir()
    cli = Cli(dir=ws, store=served.store)
    toml = cli.write(
        "trestle.toml",
        f"""
        [policy.groups.{group}]
        "Alice Lee" = "{alice.public_key}"

        [[policy.approvers]]
        groups = ["{group}"]
        {covers}
        """,
    )
    digest = hashlib.sha256(toml.read_bytes()).hexdigest()
    cli.write("plan.yaml", plan)
    started = cli("run", "plan.yaml", "--accept-policy", digest, TRESTLE_SANDBOX="off")
    assert started.returncode == code, started.stdout + started.stderr
    return cli, started.stdout.splitlines()[0].split()[1]


@pytest.fixture
def release(tmp_path: Path, served: Served) -> tuple[Cli, str]:
    """A run of DEPLOY waiting on its deploy, whose rule the release group decides."""
    return run_under(tmp_path, served, "release", 'commands = ["echo deployed*"]', DEPLOY, 3)


def decide(client: TestClient, ref: str) -> None:
    inbox = client.get("/inbox")
    assert ref in inbox.text
    answer = client.post(
        f"/inbox/{ref}/approve", data={"csrf": csrf_of(inbox.text)}, headers=ORIGIN
    )
    assert answer.status_code == 303


def test_alices_dashboard_approval_counts_and_bobs_is_refused(
    served: Served, release: tuple[Cli, str]
) -> None:
    cli, run_id = release
    ref = f"{run_id}.1"
    bob = join(served, "bob")
    decide(bob, ref)  # refused as it is made: the run would refuse it
    assert "who may decide: release (Alice Lee)" in bob.get("/inbox").text
    assert cli("resume", run_id, TRESTLE_SANDBOX="off").returncode == 3
    assert not (cli.dir / "deploys.log").exists()
    assert cli.json("show", run_id)["refused"] == []  # nothing was queued

    alice = join(served, "alice")
    decide(alice, ref)
    queued = alice.get("/inbox").text
    assert "decided: approved by Alice Lee (request" in queued  # the group's name for the key
    resumed = cli("resume", run_id, TRESTLE_SANDBOX="off")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (cli.dir / "deploys.log").read_text() == "deployed\n"
    exported = [json.loads(line) for line in cli("feedback", "export").stdout.splitlines()]
    assert any(row.get("by") == "Alice Lee" for row in exported), exported


def test_a_budget_raise_from_the_dashboard_is_signed_with_the_persons_own_key(
    tmp_path: Path, served: Served
) -> None:
    # the server's user signs nothing for an invited person: bob's raise is judged as
    # bob's, and refused, though the operator who started the dashboard may raise it
    budget = chain(3, "budget:\n  steps: {hard: 1}\n")
    cli, run_id = run_under(tmp_path, served, "finance", 'tags = ["budget"]', budget, 6)

    def raise_from(client: TestClient) -> str:
        page = client.get(f"/runs/{run_id}")
        answer = client.post(
            f"/runs/{run_id}/budget",
            data={"csrf": csrf_of(page.text), "dimension": "steps", "amount": "2"},
            headers=ORIGIN,
        )
        assert answer.status_code == 303
        return client.get(f"/runs/{run_id}").text

    def raises() -> list[dict[str, object]]:
        return [e for e in cli.json("log", run_id) if e["kind"] == "budget_raised"]

    said = raise_from(join(served, "bob"))
    assert "you may not raise its budget" in said and "finance (Alice Lee)" in said
    assert not raises()
    raise_from(join(served, "alice"))
    [raised] = raises()
    assert raised["by"] == "Alice Lee", raised
    resumed = cli("resume", run_id, TRESTLE_SANDBOX="off")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


# -- the real server and CLI ------------------------------------------------------------


def test_a_teammate_invited_with_the_cli_joins_the_real_server(tmp_path: Path) -> None:
    store = tmp_path / "trestle.db"
    SqliteStore(store).close()
    with dashboard(store) as ui:
        invited = trestle("people", "invite", "alice", "--expires", "1h", cwd=tmp_path)
        assert invited.returncode == 0, invited.stderr
        url = re.search(r"(http://\S+/invite\?token=\S+)", invited.stdout)
        assert url is not None and url.group(1).startswith(ui.base), invited.stdout
        with httpx.Client(base_url=ui.base, follow_redirects=False, timeout=30) as browser:
            opened = browser.get(url.group(1))
            assert opened.status_code == 303
            form_at = ui.origin + opened.headers["location"]
            csrf = csrf_of(browser.get(form_at).text)
            joined = browser.post(
                form_at,
                data={"csrf": csrf, "password": PASSWORD, "again": PASSWORD},
                headers={"origin": ui.origin},
            )
            enter(browser, joined)
            assert "acting as dashboard:alice" in browser.get("/").text
            listed = trestle("people", "list", cwd=tmp_path).stdout
            assert "alice  joined  1 live session  ed25519:" in listed
            assert trestle("people", "logout", "alice", cwd=tmp_path).returncode == 0
            assert browser.get("/").status_code == 401
        again = trestle("people", "remove", "nobody", cwd=tmp_path)
        # the message is wrapped at the terminal's width wherever the path ends
        assert again.returncode == 2 and "no person 'nobody'" in " ".join(again.stderr.split())
