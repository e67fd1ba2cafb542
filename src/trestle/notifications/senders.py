"""Sending one message to one target: a webhook POST, a mail over SMTP, a desktop popup.

Each raises :class:`DeliveryError` with a sentence naming what failed; the notifier
records it and tries again later. The webhook carries the notice's dedup key as an
``Idempotency-Key`` header, and the mail as its ``Message-ID``, so a receiver can drop
the second copy a driver killed between sending and recording may send.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import smtplib
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import Any

from trestle.notifications.payloads import subject
from trestle.notifications.targets import (
    DESKTOP_TIMEOUT,
    DesktopTarget,
    EmailTarget,
    Target,
    WebhookTarget,
)
from trestle.workspace.reach import program


class DeliveryError(Exception):
    """A message did not reach its target; ``str()`` says why, without secrets."""


def send(target: Target, payload: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    if isinstance(target, WebhookTarget):
        _post(target, payload)
    elif isinstance(target, EmailTarget):
        _mail(target, payload, environ)
    else:
        _desktop(target, payload, environ)


def desktop_available(environ: Mapping[str, str]) -> bool:
    """Whether ``notify-send`` is on ``environ``'s ``PATH``, outside every workspace."""
    return _notify_send(environ) is not None


def _notify_send(environ: Mapping[str, str]) -> str | None:
    """The ``notify-send`` the driver runs: never one a step planted in a directory of
    its workspace on ``PATH`` (:func:`~trestle.workspace.reach.program`)."""
    return program("notify-send", environ.get("PATH", os.defpath))


def _post(target: WebhookTarget, payload: Mapping[str, Any]) -> None:
    # ``text`` is what a chat shows, read as its markup: in Slack's, a reason quoting a
    # run's output made <URL|words> a link under the notice's name and <!channel> a
    # call to everyone. Slack (and Markdown's readers) take &amp; &lt; &gt; back as
    # the characters; the other fields stay as they are, for receivers that route
    body = json.dumps({**payload, "text": _as_text(str(payload["text"]))}).encode()
    request = urllib.request.Request(
        target.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": str(payload["dedup_key"]),
            "User-Agent": "trestle-notify",
        },
    )
    _within(target.timeout, lambda: _posted(request, target.timeout), "the webhook", target.url)


def _posted(request: urllib.request.Request, timeout: float) -> None:
    """The POST, its answer's head read and at most :data:`REPLY_MOST` bytes of its
    body (a 1 GB answer was read whole, 1.1 GB of the driver). Redirects are not
    followed: urllib turned the POST into a GET without its body, which the next host
    answered 200, and the notice counted as delivered."""
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(REPLY_MOST)
    except urllib.error.HTTPError as exc:
        moved = " (redirects are not followed: give its final URL)" if 300 <= exc.code < 400 else ""
        raise DeliveryError(f"the webhook answered HTTP {exc.code}{moved}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"the webhook could not be reached: {reason}") from None


REPLY_MOST = 64 * 1024  # of a webhook's answer, read (then it is closed)


class _Unredirected(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER = urllib.request.build_opener(_Unredirected)


# per receiver, the sender left behind when its deadline passed, while it lingers
_LINGERING: dict[str, threading.Thread] = {}


def _within(seconds: float, send_one: Callable[[], None], receiver: str, where: str) -> None:
    """``send_one`` with a deadline on the whole of it. urllib's and smtplib's timeouts
    are each read's, so a receiver that sent a byte every 3 s held the driver for as
    long as it liked, and its exit through SIGTERM: it runs in a thread of its own, left
    behind (a daemon) when the time is up. One such thread at most lingers for each
    receiver (``where``): a delivery to one whose last is still unanswered fails at
    once, and retries do not pile threads and sockets up."""
    lingering = _LINGERING.get(where)
    if lingering is not None and lingering.is_alive():
        raise DeliveryError(f"{receiver} has not yet answered the last delivery")
    done: list[BaseException | None] = []

    def run() -> None:
        try:
            send_one()
        except BaseException as exc:  # handed to the caller's thread
            done.append(exc)
        else:
            done.append(None)

    worker = threading.Thread(target=run, name="trestle-delivery", daemon=True)
    worker.start()
    worker.join(seconds)
    if not done:
        _LINGERING[where] = worker
        raise DeliveryError(f"{receiver} did not answer within {seconds:g}s")
    if done[0] is not None:
        raise done[0]


def _mail(target: EmailTarget, payload: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    mail = EmailMessage()
    mail["Subject"] = subject(payload)
    mail["From"] = target.from_
    mail["To"] = ", ".join(target.to)
    digest = hashlib.sha256(str(payload["dedup_key"]).encode()).hexdigest()[:32]
    mail["Message-ID"] = f"<{digest}@trestle>"
    mail.set_content(str(payload["text"]) + "\n")
    password = None
    if target.password_env is not None:
        password = environ.get(target.password_env)
        if password is None:
            raise DeliveryError(f"${target.password_env} (its password_env) is not set")
    # smtplib's timeout is each read's too: a server trickling its answers held the driver
    server = f"{target.host}:{target.port}"
    _within(target.timeout, lambda: _sent(target, mail, password), "the SMTP server", server)


def _sent(target: EmailTarget, mail: EmailMessage, password: str | None) -> None:
    try:
        smtp_class = smtplib.SMTP_SSL if target.ssl else smtplib.SMTP
        with smtp_class(target.host, target.port, timeout=target.timeout) as smtp:
            if target.starttls:
                smtp.starttls()
            if target.username is not None and password is not None:
                smtp.login(target.username, password)
            smtp.send_message(mail)
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"the SMTP server answered {exc.smtp_code}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"the SMTP server could not take it: {exc}") from None


def _desktop(target: DesktopTarget, payload: Mapping[str, Any], environ: Mapping[str, str]) -> None:
    tool = _notify_send(environ)
    if tool is None:
        raise DeliveryError("notify-send is not installed: no desktop notification")
    # the body is markup to the notification servers that show one (GNOME, KDE, dunst,
    # mako): a link or a bold line a step's output or a model's text carried into the
    # reason was shown as the notice's own, a link to follow from "Trestle"
    body = _as_text(str(payload["text"]))
    done = subprocess.run(
        [tool, "--app-name=trestle", str(payload["title"]), body],
        capture_output=True,
        timeout=DESKTOP_TIMEOUT,
        env=dict(environ),
        check=False,
    )
    if done.returncode != 0:
        raise DeliveryError(f"notify-send failed: {done.stderr.decode(errors='replace')[:200]}")


def _as_text(text: str) -> str:
    """``text`` with ``&``, ``<`` and ``>`` as entities: shown, not read as markup."""
    return html.escape(text, quote=False)
