"""Notifications: an approval, a dead letter, a budget pause and a monitor's pause reach
the operator's targets, through a real webhook receiver (``http.server`` on 127.0.0.1)
and a real SMTP server (aiosmtpd on 127.0.0.1).

Runs are recorded in fresh SQLite files and driven by :class:`LocalEngine`; the
targets are read from ``notify.toml`` in the test's own configuration directory, as an
operator writes it; ``trestle health`` is the real command through typer's runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from trestle.cli.app import app
from trestle.core.errors import ConfigError
from trestle.core.events import ApprovalRequested, StepFailed, event_json
from trestle.core.notices import notices_for
from trestle.core.records.monitors import Alert
from trestle.engines.local import LocalEngine
from trestle.formats.planfile import parse_plan
from trestle.formats.policyfile import parse_policy
from trestle.lifecycle.runs import create_run
from trestle.notifications.ledger import Ledger, ledger_path, troubles_if_any
from trestle.notifications.notifier import Notifier
from trestle.notifications.payloads import message
from trestle.notifications.senders import DeliveryError, send
from trestle.notifications.targets import (
    DesktopTarget,
    WebhookTarget,
    load_settings,
    notify_path,
)
from trestle.store import SqliteStore
from trestle.store.memory import InMemoryStore

PLAN = """
    goal: ship the release
    steps:
      - id: deploy
        run: echo deployed >> deploys.log
        irreversible: true
      - id: broken
        run: exit 3
"""


PATIENCE = 60.0  # how long a test waits for something before giving up (never asserted)

# drives one run in a process of its own, with the engine's notifier from notify.toml
DRIVER = """
import asyncio, sys
from trestle.engines.local import LocalEngine
from trestle.store import SqliteStore
engine = LocalEngine(SqliteStore(sys.argv[1]), poll_interval=0.02)
asyncio.run(engine.run(sys.argv[2]))
engine.close()
"""

BUDGET_PLAN = """
    goal: two steps, one in the budget
    budget:
      steps: {soft: 1}
    steps:
      - id: a
        run: echo a >> done.log
      - id: b
        needs: [a]
        run: echo b >> done.log
"""


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers ``failures`` 500s, then 200s; with
    ``hold``, it keeps the first request unanswered until :attr:`release` is set."""

    def __init__(self, failures: int = 0, *, hold: bool = False) -> None:
        self.failures = failures
        self.accepted: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.attempts = 0
        self.holding = threading.Event()
        self.release = threading.Event()
        self._hold = hold
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.failures:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.accepted.append(json.loads(body))
                receiver.headers.append(dict(self.headers))
                receiver.paths.append(self.path)
                if receiver._hold and receiver.attempts == 1:
                    receiver.holding.set()
                    receiver.release.wait(PATIENCE)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """aiosmtpd's handler: every message the server accepted."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _notify_toml(text: str) -> None:
    path = notify_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


def _chat_and_oncall(receiver: Receiver, port: int) -> str:
    """notify.toml's tables for a webhook ``chat`` to ``receiver`` and a mail
    ``oncall`` through the SMTP server on ``port`` (last: a line after it is its own)."""
    return textwrap.dedent(f"""
        [targets.chat]
        type = "webhook"
        url = "{receiver.url}"

        [targets.oncall]
        type = "email"
        host = "127.0.0.1"
        port = {port}
        from = "trestle@example.com"
        to = ["oncall@example.com"]
    """)


def _create(tmp_path: Path, store: SqliteStore, text: str = PLAN) -> str:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    source = tmp_path / "plan.yaml"
    source.write_text(textwrap.dedent(text), encoding="utf-8")
    plan = parse_plan(source.read_text("utf-8"), source=str(source), base_dir=tmp_path)
    return create_run(store, plan, workspace=workspace, plan_path=source)


def _webhook_run(tmp_path: Path, receiver: Receiver) -> tuple[SqliteStore, str]:
    """A webhook target ``chat`` to ``receiver`` in notify.toml, and a run of :data:`PLAN`
    recorded in a store of its own."""
    _notify_toml(f"""
        [targets.chat]
        type = "webhook"
        url = "{receiver.url}"
    """)
    store = SqliteStore(tmp_path / "trestle.db")
    return store, _create(tmp_path, store)


def _drive(
    store: SqliteStore, run_id: str, notifier: Notifier | Literal["config"] | None = "config"
) -> None:
    engine = LocalEngine(store, poll_interval=0.02, notifier=notifier)
    try:
        assert asyncio.run(engine.run(run_id)).finished == "needs_human"
    finally:
        engine.close()


def test_an_approval_and_a_dead_letter_reach_a_webhook_and_a_mailbox(
    tmp_path: Path, receiver: Receiver, smtp: tuple[Mailbox, int]
) -> None:
    box, port = smtp
    _notify_toml(
        'dashboard_url = "http://dash.example:8765/"\n'
        + _chat_and_oncall(receiver, port)
        + 'events = ["approval"]\n'
    )
    store = SqliteStore(tmp_path / "trestle.db")
    run_id = _create(tmp_path, store)
    _drive(store, run_id)  # the engine's own notifier, from notify.toml; close drains it

    by_kind = {p["kind"]: p for p in receiver.accepted}
    assert sorted(by_kind) == ["approval", "dead_letter"]
    approval = by_kind["approval"]
    assert approval["ref"] == f"{run_id}.1"
    assert approval["link"] == f"http://dash.example:8765/inbox#card-{run_id}.1"
    assert approval["text"].startswith("Trestle: step 'deploy' waits for approval")
    assert f"card: http://dash.example:8765/inbox#card-{run_id}.1" in approval["text"]
    dead = by_kind["dead_letter"]
    assert dead["step"] == "broken"
    assert dead["link"] == f"http://dash.example:8765/runs/{run_id}"
    keys = sorted(h["Idempotency-Key"] for h in receiver.headers)
    assert keys == sorted(p["dedup_key"] for p in receiver.accepted)
    # the mail target asked for approvals only
    [mail] = [message_from_bytes(m) for m in box.messages]
    assert mail["Subject"] == "[trestle] step 'deploy' waits for approval (action)"
    assert mail["To"] == "oncall@example.com"
    assert f"inbox#card-{run_id}.1" in mail.get_payload()

    # driven again (a resume), nothing is sent twice: the ledger knows every dedup key
    before = receiver.attempts
    _drive(store, run_id)
    assert receiver.attempts == before and len(box.messages) == 1
    store.close()


def test_a_receiver_that_fails_twice_gets_one_delivery_after_backing_off(
    tmp_path: Path,
) -> None:
    flaky = Receiver(failures=2)
    try:
        _notify_toml(f"""
            [targets.chat]
            type = "webhook"
            url = "{flaky.url}"
            events = ["approval"]
        """)
        settings = load_settings()
        assert settings is not None
        notifier = Notifier(settings, backoff_base=0.05, drain=30.0)
        store = SqliteStore(tmp_path / "trestle.db")
        run_id = _create(tmp_path, store)
        _drive(store, run_id, notifier)
        notifier.close()
        store.close()
        assert flaky.attempts == 3
        [delivered] = flaky.accepted
        assert delivered["kind"] == "approval"
        # without a dashboard URL, the link is the command that decides
        assert delivered["link"].startswith(f"trestle approve {run_id}.1")
        assert troubles_if_any() == []  # delivered in the end: nothing to show
    finally:
        flaky.close()


def test_a_desktop_notice_shows_a_reasons_markup_and_overrides_as_text(
    tmp_path: Path,
) -> None:
    """A dead letter's reason can quote a check command's output: a link in it was
    markup to the notification server, shown as the notice's own under "Trestle", and
    a bidirectional override reordered the notice."""
    tools = tmp_path / "tools"
    tools.mkdir()
    said = tmp_path / "argv.json"
    notify = tools / "notify-send"
    notify.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(said)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    notify.chmod(0o755)
    hostile = 'got exit 1: <a href="https://x.example/approve">approve it here</a> \u202eok'
    failed = StepFailed(at=0.0, step="deploy", reason=hostile, dead_lettered=True)
    environ = {"PATH": str(tools)}
    payload = message(notices_for("r1", 7, failed)[0], None, environ)
    send(DesktopTarget(type="desktop"), payload, environ)
    title, body = json.loads(said.read_text())[1:]
    assert "<a" not in body and "\u202e" not in body + title
    assert '&lt;a href="https://x.example/approve"&gt;approve it here&lt;/a&gt; \\u202eok' in body


def test_a_chat_shows_a_reasons_links_and_mentions_as_text(receiver: Receiver) -> None:
    """Slack reads a webhook's text as its markup: <URL|words> in a reason quoting a
    run's output was a link under the notice's name, <!channel> called everyone."""
    hostile = "got exit 1: <https://x.example/approve|trestle approve r1.1> <!channel> & more"
    failed = StepFailed(at=0.0, step="deploy", reason=hostile, dead_lettered=True)
    payload = message(notices_for("r1", 7, failed)[0], None, {})
    send(WebhookTarget(type="webhook", url=receiver.url), payload, {})
    (sent,) = receiver.accepted
    shown = "&lt;https://x.example/approve|trestle approve r1.1&gt; &lt;!channel&gt; &amp;"
    assert shown in sent["text"], sent["text"]
    assert sent["detail"] == hostile  # for receivers that route, as it was


def test_health_shows_a_target_that_keeps_failing_and_a_missing_notify_send(
    tmp_path: Path,
) -> None:
    _notify_toml(f"""
        [targets.chat]
        type = "webhook"
        url = "http://127.0.0.1:{_free_port()}/nobody-listens"

        [targets.desk]
        type = "desktop"
    """)
    settings = load_settings()
    assert settings is not None
    no_tools = {"PATH": str(tmp_path / "no-tools")}  # where notify-send is not
    notifier = Notifier(settings, backoff_base=0.01, max_attempts=2, environ=no_tools)
    db = tmp_path / "trestle.db"
    store = SqliteStore(db)
    run_id = _create(tmp_path, store)
    _drive(store, run_id, notifier)
    notifier.close()
    store.close()
    troubles = {t.target: t for t in troubles_if_any()}
    assert troubles["chat"].given_up == 2  # the approval and the dead letter
    assert "could not be reached" in troubles["chat"].last_error
    assert troubles["desk"].last_error == "notify-send is not installed"

    result = CliRunner().invoke(app, ["health", "--store", str(db)])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "notifications to 'chat' fail: 0 to be tried again, 2 given up" in out
    assert "notifications to 'desk' fail" in out and "notify-send is not installed" in out


def test_a_batch_committed_without_notifying_is_caught_up_and_nothing_twice(
    tmp_path: Path, receiver: Receiver
) -> None:
    store, run_id = _webhook_run(tmp_path, receiver)
    _drive(store, run_id, notifier=None)  # recorded without notifying anyone
    receiver.accepted.clear()
    recorded = store.events(run_id)
    settings = load_settings()
    assert settings is not None

    # a ledger that derived only the first event; a driver killed before deriving the
    # rest; the next process commits one more batch: the gap is read from the store
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.record(run_id, recorded[0].seq, [], now=0.0)
    ledger.close()
    notifier = Notifier(settings, ledger=path, drain=10.0)
    last = recorded[-1]
    notifier.committed(run_id, last.seq, [last.event], store.events)
    notifier.committed(run_id, last.seq, [last.event], store.events)  # a retried commit
    notifier.close()
    assert sorted(p["kind"] for p in receiver.accepted) == ["approval", "dead_letter"]
    store.close()


def test_a_budget_pause_reaches_the_webhook_with_its_card(
    tmp_path: Path, receiver: Receiver
) -> None:
    _notify_toml(f"""
        dashboard_url = "http://127.0.0.1:8765"
        [targets.chat]
        type = "webhook"
        url = "{receiver.url}"
    """)
    store = SqliteStore(tmp_path / "trestle.db")
    run_id = _create(tmp_path, store, BUDGET_PLAN)
    _drive(store, run_id)
    store.close()
    [paused] = receiver.accepted
    assert paused["kind"] == "budget"
    assert paused["title"] == f"run {run_id} paused at its budget"
    assert paused["detail"].startswith("would spend 2 steps of 1 step (soft steps limit)")
    assert paused["link"] == f"http://127.0.0.1:8765/inbox#card-{run_id}.1"


def test_a_monitors_pause_is_a_monitor_notice() -> None:
    alert = Alert(
        monitor="loops",
        kind="repeated_action",
        severity="critical",
        message="the same command ran 5 times",
        evidence=(3, 5, 7),
        suggestion="stop and rethink",
        step="fix",
    )
    asked = ApprovalRequested(at=0.0, approval=4, subject="alert", step="fix", alert=alert)
    [notice] = notices_for("r1", 9, asked)
    assert (notice.kind, notice.ref, notice.dedup_key) == ("monitor", "r1.4", "r1/approval/4")
    assert notice.title == "a monitor paused run r1 at step 'fix'"
    assert notice.detail == "the same command ran 5 times"
    review = ApprovalRequested(at=0.0, approval=5, subject="audit", blocking=False)
    assert notices_for("r1", 10, review) == []  # a review after the fact holds nothing up


def test_a_message_carries_no_secret_and_no_long_output() -> None:
    token = "hunter2-but-longer"
    failed = StepFailed(
        at=0.0,
        step="push",
        reason=f"git push said {token} and ghp_{'a' * 36}\n" + "x" * 5000,
        dead_lettered=True,
    )
    [notice] = notices_for("r1", 7, failed)
    payload = message(notice, None, {"DEPLOY_TOKEN": token})
    text = json.dumps(payload)
    assert token not in text and "ghp_" not in text
    assert "[redacted: $DEPLOY_TOKEN]" in payload["detail"]
    assert len(payload["detail"]) <= 400
    assert payload["link"] == "trestle retry r1 push  |  trestle skip r1 push --reason ..."


def test_a_bad_notify_toml_names_the_file_the_line_and_the_field(tmp_path: Path) -> None:
    _notify_toml("""
        [targets.chat]
        type = "webhook"
        url = "ftp://example.com"
        timout = 5

        [targets.mail]
        type = "emial"
    """)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    path = notify_path()
    assert str(caught.value).splitlines() == [
        f"{path}:4: targets.chat.url: must match the pattern '^https?://', not 'ftp://example.com'",
        f"{path}:5: targets.chat.timout: unknown field (did you mean 'timeout'?)",
        f"{path}:7: targets.mail: 'type' must be one of 'webhook', 'email', 'desktop', not 'emial'",
    ]
    with pytest.raises(ConfigError):  # an engine refuses to start on it
        LocalEngine(InMemoryStore())

    _notify_toml("[targets.chat]\ntype = webhook\n")
    refused = subprocess.run(
        [sys.executable, "-m", "trestle", "notify", "test"], capture_output=True, text=True
    )
    assert refused.returncode == 2  # bad input, as trestle.toml's problems are
    assert f"{path}:2: invalid TOML: invalid value (column 8)" in refused.stderr
    assert "Traceback" not in refused.stderr
    plan = tmp_path / "plan.yaml"
    plan.write_text("goal: g\nsteps:\n  - id: a\n    run: 'true'\n", encoding="utf-8")
    store = tmp_path / "t.db"
    argv = [sys.executable, "-m", "trestle", "run", str(plan), "--store", str(store)]
    not_run = subprocess.run(argv, capture_output=True, text=True)
    assert not_run.returncode == 2 and f"{path}:2: invalid TOML" in not_run.stderr
    assert not store.exists()  # refused before the run was recorded


def test_the_ledger_lives_in_the_configuration_directory() -> None:
    assert ledger_path().parent == notify_path().parent


def test_the_notify_toml_docs_show_is_read_as_they_say(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "notifications.md").read_text()
    block = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "notify.toml"
    path.write_text(block, encoding="utf-8")
    settings = load_settings(path)
    assert settings is not None and sorted(settings.targets) == ["desk", "oncall", "team-chat"]
    [notice] = notices_for("r1", 3, StepFailed(at=0.0, step="s", reason="x", dead_lettered=True))
    assert settings.targets["oncall"].wants(notice) and settings.targets["desk"].wants(notice)
    assert not settings.targets["team-chat"].wants(notice)


def test_a_driver_killed_mid_send_leaves_it_to_the_next_one_at_least_once(
    tmp_path: Path,
) -> None:
    held = Receiver(hold=True)
    try:
        _notify_toml(f"""
            [targets.chat]
            type = "webhook"
            url = "{held.url}"
            timeout = 0.5  # a delivery a killed driver claimed is due again 1.5 s later
        """)
        db = tmp_path / "trestle.db"
        store = SqliteStore(db)
        run_id = _create(tmp_path, store)
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(db), run_id])
        try:
            assert held.holding.wait(PATIENCE), "the driver never sent its first notice"
        finally:
            driver.kill()  # SIGKILL while its first delivery is unanswered
            driver.wait()
        held.release.set()
        first = held.accepted[0]["dedup_key"]

        _drive(store, run_id)  # the next driver: its notifier sends what is pending
        store.close()
        keys = [p["dedup_key"] for p in held.accepted]
        assert sorted({p["kind"] for p in held.accepted}) == ["approval", "dead_letter"]
        # the one unanswered is sent again, with the same key; nothing else is repeated
        assert keys.count(first) == 2
        assert all(keys.count(k) == 1 for k in keys if k != first)
        assert [h["Idempotency-Key"] for h in held.headers] == keys
        ledger = Ledger(ledger_path())
        try:
            assert ledger.due(float("inf")) == [] and ledger.troubles() == []
        finally:
            ledger.close()
    finally:
        held.release.set()
        held.close()


def test_the_ledger_forgets_old_deliveries_but_never_a_failing_one(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        sent = {"dedup_key": "k", "text": "t", "title": "t"}
        ledger.record("r1", 5, [("a", "chat", sent), ("b", "chat", sent)], now=0.0)
        first, second = ledger.claim(now=0.0, until=10.0)
        assert ledger.claim(now=5.0, until=15.0) == []  # claimed: no one else sends them
        ledger.delivered(first, now=1.0)
        ledger.failed(second, "the webhook answered HTTP 500", now=1.0, retry_at=None)
        ledger.forget_delivered(before=2.0)
        rows = ledger._db.execute("SELECT dedup_key, status FROM deliveries").fetchall()
        assert rows == [("b", "given_up")]
        assert ledger.through("r1") == 5
    finally:
        ledger.close()


def test_notify_test_sends_to_each_target_now_and_says_which_took_it(
    tmp_path: Path,
    receiver: Receiver,
    smtp: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box, port = smtp
    _notify_toml(_chat_and_oncall(receiver, port) + '\n[targets.desk]\ntype = "desktop"\n')
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no notify-send here
    result = CliRunner().invoke(app, ["notify", "test"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "chat: delivered (webhook)",
        "desk: not delivered: notify-send is not installed: no desktop notification",
        "oncall: delivered (email)",
    ]
    [sent] = receiver.accepted
    assert sent["kind"] == "test" and sent["link"] == "trestle inbox"
    [mail] = [message_from_bytes(m) for m in box.messages]
    assert mail["Subject"] == "[trestle] a test message from trestle notify test"

    only = CliRunner().invoke(app, ["notify", "test", "chat"])
    assert only.exit_code == 0 and only.output == "chat: delivered (webhook)\n"
    wrong = CliRunner().invoke(app, ["notify", "test", "chta"])
    assert isinstance(wrong.exception, ConfigError)
    assert "no target 'chta'; it names 'chat', 'desk', 'oncall'" in str(wrong.exception)


GROUPS_PLAN = """
    goal: two approvals for two groups
    steps:
      - id: deploy
        run: echo deployed >> deploys.log
        irreversible: true
      - id: infra
        write: {path: infra/main.tf, content: "x"}
        irreversible: true
      - id: broken
        run: exit 3
"""

ALICE = "ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
CAROL = "ed25519:0f1e8d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_an_approval_reaches_the_targets_of_the_groups_that_may_decide_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    _notify_toml(f"""
        [targets.release]
        type = "webhook"
        url = "{receiver.url}/release"
        groups = ["release"]

        [targets.ops]
        type = "webhook"
        url = "{receiver.url}/ops"
        groups = ["ops"]
    """)
    operator = parse_policy(
        {
            "groups": {"release": {"alice": ALICE}, "ops": {"carol": CAROL}},
            "approvers": [
                {"groups": ["release"], "steps": ["deploy*"]},
                {"groups": ["ops"], "paths": ["infra/**"]},
            ],
        },
        source="trestle.toml",
    )
    store = SqliteStore(tmp_path / "trestle.db")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    source = tmp_path / "plan.yaml"
    source.write_text(textwrap.dedent(GROUPS_PLAN), encoding="utf-8")
    plan = parse_plan(source.read_text("utf-8"), source=str(source), base_dir=tmp_path)
    run_id = create_run(
        store, plan, workspace=workspace, plan_path=source, operator_policy=operator
    )
    _drive(store, run_id)
    store.close()
    got = sorted(
        (path.rsplit("/", 1)[1], p["kind"], p["step"])
        for path, p in zip(receiver.paths, receiver.accepted, strict=True)
    )
    # each approval to its group's target; the dead letter, no approval, to both
    assert got == [
        ("ops", "approval", "infra"),
        ("ops", "dead_letter", "broken"),
        ("release", "approval", "deploy"),
        ("release", "dead_letter", "broken"),
    ]


def test_a_reason_no_mail_can_carry_stops_no_delivery(
    tmp_path: Path, receiver: Receiver, smtp: tuple[Mailbox, int]
) -> None:
    # a check's reason naming a file whose name is not UTF-8 holds an unpaired surrogate
    # (the store replaces it; the events handed to the notifier kept it): the mail could
    # not be encoded, its delivery stayed pending for ever, and stopped every delivery
    # claimed with it
    box, port = smtp
    _notify_toml(_chat_and_oncall(receiver, port))
    settings = load_settings()
    assert settings is not None
    odd = "out\udcff\udced\udca0\udc80name"  # os.listdir of b"out\xff\xed\xa0\x80name"
    failed = [
        StepFailed(at=0.0, step="odd", reason=f"unexpected files: {odd}", dead_lettered=True),
        StepFailed(at=0.0, step="plain", reason="exit 1", dead_lettered=True),
    ]
    notifier = Notifier(settings, ledger=tmp_path / "ledger.sqlite", drain=10.0)
    notifier.committed("r1", 1, failed, lambda *_: [])
    notifier.close()
    assert sorted(p["step"] for p in receiver.accepted) == ["odd", "plain"]
    [odd_sent] = [p for p in receiver.accepted if p["step"] == "odd"]
    assert "unexpected files: out\ufffd\ufffd\ufffd\ufffdname" in odd_sent["detail"]
    assert len(box.messages) == 2
    # and a sender that fails some other way fails that delivery alone, to be retried
    said: list[str] = []

    def sender(target: Any, payload: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        if payload["step"] == "odd":
            raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")
        said.append(payload["step"])

    again = Notifier(
        settings, ledger=tmp_path / "other.sqlite", drain=2.0, backoff_base=60.0, sender=sender
    )
    again.committed("r1", 1, failed, lambda *_: [])
    again.close()
    assert said == ["plain", "plain"]  # the webhook's and the mail's
    troubles = troubles_if_any(tmp_path / "other.sqlite")
    assert sorted(t.target for t in troubles) == ["chat", "oncall"]
    assert all(t.failing == 1 and t.given_up == 0 for t in troubles)  # backing off
    assert all("cannot be sent: UnicodeEncodeError" in t.last_error for t in troubles)


# --- a hostile receiver -----------------------------------------------------------------


class RawReceiver:
    """A receiver on 127.0.0.1 that answers each request with ``answer(connection)``;
    counts the bytes it managed to send."""

    def __init__(self, answer: Any) -> None:
        self.sent = 0
        self.requests = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self._answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request (small)
            with contextlib.suppress(OSError):  # the driver hung up
                self._answer(self, conn)

    def close(self) -> None:
        self.listener.close()


def _trickle(receiver: RawReceiver, conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\n" * 100:  # a byte at a time, under every read's timeout
        conn.sendall(bytes([byte]))
        receiver.sent += 1
        time.sleep(0.2)


def _gigabyte(receiver: RawReceiver, conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    chunk = b"0" * 1_000_000
    for _ in range(1000):
        conn.sendall(chunk)
        receiver.sent += len(chunk)


def _hook(url: str) -> WebhookTarget:
    return WebhookTarget.model_validate({"type": "webhook", "url": url, "timeout": 1})


PAYLOAD = {"text": "approve?", "dedup_key": "run/approval/1", "title": "t"}


def test_a_receiver_that_trickles_its_answer_is_given_up_on_its_deadline() -> None:
    # urllib's timeout is each read's: a byte every 0.2 s held the driver, and its exit
    # through SIGTERM, for as long as the receiver liked
    receiver = RawReceiver(_trickle)
    ended: list[str] = []

    def post() -> None:
        with pytest.raises(DeliveryError) as info:
            send(_hook(receiver.url), PAYLOAD, {})
        ended.append(str(info.value))

    sender = threading.Thread(target=post, daemon=True)
    sender.start()
    sender.join(PATIENCE)  # not a measure of time: it never ended before
    assert ended == ["the webhook did not answer within 1s"]
    assert receiver.sent < 1700  # it was still trickling, left behind
    # while the one left behind lingers, a retry fails at once: no second thread and
    # socket each time (20 retries held 20 of each)
    lingering = [t for t in threading.enumerate() if t.name == "trestle-delivery"]
    for _ in range(5):
        post()
    assert ended[1:] == ["the webhook has not yet answered the last delivery"] * 5
    assert [t for t in threading.enumerate() if t.name == "trestle-delivery"] == lingering
    assert receiver.requests == 1
    receiver.close()


def test_a_receivers_huge_answer_is_not_read() -> None:
    receiver = RawReceiver(_gigabyte)
    send(_hook(receiver.url), PAYLOAD, {})
    receiver.close()
    assert receiver.sent < 100_000_000  # 1 GB was read whole, 1.1 GB of the driver


def test_a_redirect_is_not_followed_nor_counted_as_delivered(receiver: Receiver) -> None:
    # urllib turned the POST into a GET without its body, which the next host answered
    # 200: the approval's notice counted as delivered, and nobody was told
    def redirect(raw: RawReceiver, conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {receiver.url}\r\n\r\n".encode())

    mover = RawReceiver(redirect)
    with pytest.raises(DeliveryError, match=r"HTTP 302 \(redirects are not followed"):
        send(_hook(mover.url), PAYLOAD, {})
    mover.close()
    assert receiver.accepted == [] and receiver.attempts == 0


def _untold(tmp_path: Path, receiver: Receiver) -> tuple[SqliteStore, str]:
    """A run that waits for its approval, its broken step on the dead-letter queue,
    none of it told: a notifier saw the run start, then the driver's notifier derived
    nothing more before the driver died."""
    store, run_id = _webhook_run(tmp_path, receiver)
    ledger = Ledger(ledger_path())
    try:  # a notifier saw the run start: it is to be told
        ledger.record(run_id, 1, [], now=time.time())
    finally:
        ledger.close()
    _drive(store, run_id, notifier=None)
    assert not receiver.accepted
    return store, run_id


def test_what_a_killed_driver_committed_and_never_told_is_told_by_the_next_that_commits_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    store, run_id = _untold(tmp_path, receiver)
    try:
        _drive(store, run_id)  # the next driver: nothing to commit, the run waits

        assert sorted(p["kind"] for p in receiver.accepted) == ["approval", "dead_letter"]
    finally:
        store.close()


@pytest.mark.parametrize("taken_up_by", ["load", "landed commit"])
def test_a_temporal_worker_tells_what_a_killed_one_committed_and_never_told(
    tmp_path: Path, receiver: Receiver, taken_up_by: str
) -> None:
    """A workflow's next worker loads the run (a run waiting for a human commits nothing
    more), or retries the dead worker's commit and finds it landed: either tells what
    was never told. The activities are called as a worker calls them."""
    from trestle.engines.temporal.activities import TrestleActivities
    from trestle.engines.temporal.shapes import Commit, LeaseAsk

    store, run_id = _untold(tmp_path, receiver)
    activities = TrestleActivities(store)

    async def take_up() -> None:
        if taken_up_by == "load":
            await activities.load(run_id)
            return
        token = await activities.lease(LeaseAsk(run_id=run_id, owner="w", ttl=60))
        last = store.events(run_id, after=2)  # the dead worker's last batch, again
        batch = Commit(
            run_id=run_id,
            token=token,
            first_seq=last[0].seq,
            events=[event_json(s.event) for s in last],
            status="needs_human",
            summary="{}",
        )
        assert (await activities.commit(batch)).events == batch.events

    try:
        asyncio.run(take_up())
    finally:
        activities.close()  # its notifier sends what is due first
        store.close()
    assert sorted(p["kind"] for p in receiver.accepted) == ["approval", "dead_letter"]
