"""A notice as the message each kind of target receives.

Every text a notice carries passes :func:`trestle.core.redaction.redact` (the
values of secret-named environment variables, credential-shaped strings) and is
already clipped (:func:`trestle.core.notices.clip`): a message never holds a step's
output, only the reason its event recorded (which may quote some: a check command's
last lines), its controls and invisible characters shown as escapes
(:func:`trestle.presentation.wording.visible`). What is sent is recorded in the
ledger, so a retry sends the very same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trestle.core.notices import Notice
from trestle.core.redaction import redact, secret_values
from trestle.core.safetext import without_surrogates
from trestle.presentation.wording import visible


def message(
    notice: Notice, dashboard_url: str | None, environ: Mapping[str, str]
) -> dict[str, Any]:
    """The JSON a webhook receives; ``text`` is the whole message (what Slack shows),
    the other fields are there for receivers that route or deduplicate."""
    secrets = secret_values(environ)
    link = notice.link(dashboard_url)
    # shown as every view shows them: a chat client, a mail reader and a desktop
    # notice obey a bidirectional override as a terminal does, and draw a tag as nothing;
    # an unpaired surrogate (a file name of bytes that are not UTF-8, in a check's
    # reason) is replaced, as the store replaces it: no mail or JSON can carry one
    title = visible(redact(without_surrogates(notice.title), secrets))
    detail = visible(redact(without_surrogates(notice.detail), secrets))
    lines = [f"Trestle: {title}"]
    if detail:
        lines.append(detail)
    lines.append(f"card: {link}" if dashboard_url else f"run: {link}")
    return {
        "text": "\n".join(lines),
        "kind": notice.kind,
        "run_id": notice.run_id,
        "step": notice.step,
        "ref": notice.ref,
        "title": title,
        "detail": detail,
        "command": notice.command,
        "link": link,
        "dedup_key": notice.dedup_key,
    }


def test_message(dashboard_url: str | None, key: str) -> dict[str, Any]:
    """What ``trestle notify test`` sends: shaped as every message is, of kind ``test``;
    ``key`` its own dedup key (a mail reader drops a second mail with the same one)."""
    link = dashboard_url.rstrip("/") + "/inbox" if dashboard_url else "trestle inbox"
    title = "a test message from trestle notify test"
    return {
        "text": f"Trestle: {title}\nthe inbox: {link}",
        "kind": "test",
        "run_id": None,
        "step": None,
        "ref": None,
        "title": title,
        "detail": "",
        "command": "trestle inbox",
        "link": link,
        "dedup_key": key,
    }


def subject(payload: Mapping[str, Any]) -> str:
    """An email's subject line, from a :func:`message`."""
    return f"[trestle] {payload['title']}"
