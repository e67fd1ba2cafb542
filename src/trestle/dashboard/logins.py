"""The dashboard's doors: logging in with the login token `trestle ui` printed, or as an
invited person (:mod:`trestle.dashboard.accounts`) with a name and password; joining
through an invitation; logging out, here or everywhere.

A session's cookie is sent only to the session's own address, ``/s/KEY/``, where every
page of it is (see :attr:`~trestle.dashboard.security.Session.pages`): a browser sends a
host's cookies to every port of it, so any other server on 127.0.0.1 would get a cookie
sent to all of it. An invitation's URL carries its token only until it is opened: the
answer moves it into a cookie that only ``/invite/KEY`` receives (a digest of the token:
another server does not get it either) and sends the browser there, so the address bar,
the history and any ``Referer`` no longer hold it. The login and
invitation forms come before any session, so each carries a CSRF token of its own (the
login form's in a cookie beside it, the invitation's derived from its token), and both
must come from the dashboard's own origin, as every action must.

A person's login also gives their browser a device token (see
:meth:`~trestle.dashboard.accounts.Accounts.login`), which spares it a lockout of their
name that another program caused. It must reach only this origin's own storage, which
no other port can read: it comes in a short-lived cookie sent only to the new session's
pages, whose script moves it into ``localStorage``, and the login form's script sends it
back.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets

import anyio
import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from trestle.dashboard.accounts import PASSWORD_LEAST, LoginRefused
from trestle.dashboard.forms import Refused, back, changing, posted
from trestle.dashboard.security import Gate, Session, derived

WRONG_PASSWORD_DELAY = 1.0  # seconds a wrong password waits before it is answered
LOGIN_COOKIE = "trestle_login"  # the login form's CSRF token, before there is a session
INVITE_COOKIE = "trestle_invite"  # an invitation's token, moved out of the URL
# a new device token on its way to the browser's storage (static/pages.js moves it), sent
# only to the new session's pages, which no other port knows the address of; named after
# them too ("_" and the address's key), as another port may set a cookie of any other
# name for the whole host, which the page would read
DEVICE_COOKIE = "trestle_device"


def add_login_routes(
    app: FastAPI, env: jinja2.Environment, gate: Gate, *, wrong_password_delay: float
) -> None:
    """``/login``, ``/invite``, ``/logout`` and ``/logout-everywhere`` on ``app``; a
    wrong password is answered after ``wrong_password_delay`` seconds."""

    def logged_in(session: Session) -> Response:
        response = back(f"{session.pages}/")
        response.set_cookie(
            session.cookie, session.id, httponly=True, samesite="strict", path=session.pages
        )
        # read by the page's script, so not HttpOnly; Lax, as a Strict cookie is hidden
        # from the script of a page a link from elsewhere led to (an invitation's)
        if session.device is not None:
            response.set_cookie(
                f"{DEVICE_COOKIE}_{session.pages.rpartition('/')[2]}",
                f"{session.user}:{session.device}",
                samesite="lax",
                path=session.pages,
                max_age=300,
            )
        return response

    def people() -> bool:
        return gate.accounts is not None and gate.accounts.any_people()

    def login_form(why: str = "", name: str = "", status: int = 200) -> Response:
        csrf = secrets.token_urlsafe(32)
        html = env.get_template("login.html").render(why=why, name=name, csrf=csrf)
        response = HTMLResponse(html, status_code=status)
        response.set_cookie(LOGIN_COOKIE, csrf, httponly=True, samesite="strict", path="/login")
        return response

    @app.get("/login")
    def login(token: str | None = None) -> Response:
        if token is None and people():
            return login_form()
        session = gate.exchange(token)
        if session is None:
            raise Refused(
                403, "this login link is wrong or was used already: start `trestle ui` again"
            )
        return logged_in(session)

    @app.post("/login")
    async def login_with_password(request: Request) -> Response:
        form = await posted(gate, request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(form.get("csrf", ""), expected):
            return login_form("the form was stale: log in again", status=403)
        name = form.get("name", "").strip()
        try:
            session = await anyio.to_thread.run_sync(
                gate.login, name, form.get("password", ""), form.get("device") or None
            )
        except LoginRefused as exc:
            # every wrong guess waits, so guessing is slow even across many names
            await asyncio.sleep(wrong_password_delay)
            return login_form(str(exc), name=name, status=401)
        response = logged_in(session)
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    def invitation_csrf(token: str) -> str:
        return derived("invitation form", token)

    def invitation_page(token: str) -> str:
        """Where the invitation's form is: its token's cookie is sent only there."""
        return f"/invite/{derived('invitation page', token)[:32]}"

    def invitation_token(request: Request, key: str) -> str:
        """The token of the invitation whose form is at ``/invite/key``, from its cookie."""
        token = request.cookies.get(INVITE_COOKIE, "")
        if not token or not hmac.compare_digest(invitation_page(token), f"/invite/{key}"):
            raise Refused(403, "refused: open your invitation's URL again")
        return token

    def invite_form(token: str, why: str = "", status: int = 200) -> Response:
        assert gate.accounts is not None
        try:
            name = gate.accounts.invited(token)
        except LoginRefused as exc:
            raise Refused(403, str(exc)) from None
        html = env.get_template("invite.html").render(
            name=name,
            why=why,
            csrf=invitation_csrf(token),
            least=PASSWORD_LEAST,
            action=invitation_page(token),
        )
        return HTMLResponse(html, status_code=status)

    @app.get("/invite")
    def invitation(token: str | None = None) -> Response:
        if gate.accounts is None:
            raise Refused(404, "this dashboard takes no invitations")
        if token is None:
            raise Refused(403, "refused: open your invitation's URL again")
        invite_form(token)  # refused when it is wrong, used or expired
        # the token leaves the address bar, the history and any Referer at once: the
        # form is served from /invite/KEY, with the token in a cookie only that gets.
        # Lax, not Strict: an invitation is usually a link clicked in mail or chat, and a
        # Strict cookie set on that cross-site navigation would not come back with its
        # redirect; the form it opens is still posted only from this origin, with a
        # CSRF token derived from the invitation's
        page = invitation_page(token)
        response = back(page)
        response.set_cookie(
            INVITE_COOKIE, token, httponly=True, samesite="lax", path=page, max_age=3600
        )
        return response

    @app.get("/invite/{key}")
    def invitation_form(request: Request, key: str) -> Response:
        if gate.accounts is None:
            raise Refused(404, "this dashboard takes no invitations")
        return invite_form(invitation_token(request, key))

    @app.post("/invite/{key}")
    async def join(request: Request, key: str) -> Response:
        form = await posted(gate, request)
        token = invitation_token(request, key)
        if not hmac.compare_digest(form.get("csrf", ""), invitation_csrf(token)):
            raise Refused(403, "refused: open your invitation's URL again")
        if form.get("password", "") != form.get("again", ""):
            return invite_form(token, "the two passwords differ: type them again", 400)
        try:
            session = await anyio.to_thread.run_sync(gate.accept, token, form.get("password", ""))
        except LoginRefused as exc:
            return invite_form(token, str(exc), 400)
        response = logged_in(session)
        response.delete_cookie(INVITE_COOKIE, path=invitation_page(token))
        return response

    def logged_out(session: Session, why: str) -> Response:
        response = HTMLResponse(
            env.get_template("refused.html").render(
                status="Logged out", why=why, find_session=False
            )
        )
        response.delete_cookie(session.cookie, path=session.pages)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session, _ = await changing(gate, request)
        gate.end(session.id)
        if session.person is not None:
            return logged_out(session, "logged out: log in again at /login")
        return logged_out(session, "logged out: start `trestle ui` again to log in")

    @app.post("/logout-everywhere")
    async def logout_everywhere(request: Request) -> Response:
        session, _ = await changing(gate, request)
        ended = await anyio.to_thread.run_sync(gate.end_everywhere, session)
        many = "session" if ended == 1 else "sessions"
        return logged_out(
            session, f"logged out everywhere ({ended} {many} ended): log in again at /login"
        )
