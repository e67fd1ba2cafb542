"""What a request must carry before the dashboard serves it, and how it is refused.

A page needs a live session (its cookie) and must be asked for under the session's own
address (``/s/KEY/``, see :attr:`~trestle.dashboard.security.Session.pages`); a request
that changes something is a POST from the dashboard's own origin whose form carries the
session's CSRF token (:mod:`trestle.dashboard.security` holds the sessions and says
which origins are its own). A refusal is :class:`Refused`, its status and the sentence
the page shows.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse

from trestle.dashboard.accounts import LoginRefused
from trestle.dashboard.security import PAGES_SCOPE, Gate, Session, cookie_name


class Refused(Exception):
    """A request the dashboard will not serve: its status and the sentence that says why."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


def session_of(gate: Gate, request: Request, *, touch: bool = True) -> Session:
    """The request's live session, or a 401 saying why there is none (and how to log
    in again); ``touch`` counts the request as a use of it. A session's cookie opens it
    only under its own address: whoever holds the cookie alone gets nothing."""
    pages = request.scope.get(PAGES_SCOPE)
    cookie = request.cookies.get(cookie_name(pages)) if pages else None
    try:
        return gate.admit(pages, cookie, touch=touch)
    except LoginRefused as exc:
        raise Refused(401, str(exc)) from None


async def posted(gate: Gate, request: Request) -> dict[str, str]:
    """The form of a POST from the dashboard's own pages, or a refusal."""
    if not gate.origin_ok(request.headers.get("origin"), request.headers.get("referer")):
        raise Refused(403, "refused: the request does not come from the dashboard's pages")
    form = await request.form()
    # a browser sends a textarea's lines ending in CR LF: the text as typed has LF
    return {k: v.replace("\r\n", "\n") for k, v in form.items() if isinstance(v, str)}


async def changing(gate: Gate, request: Request) -> tuple[Session, dict[str, str]]:
    """The session and form of a request that changes something, or a refusal."""
    session = session_of(gate, request)
    fields = await posted(gate, request)
    if not session.csrf_ok(fields.get("csrf")):
        raise Refused(403, "refused: the form's CSRF token is missing or wrong; reload")
    return session, fields


def back(url: str) -> RedirectResponse:
    """See ``url`` next (after a POST, so a reload does not post again)."""
    return RedirectResponse(url, status_code=303)
