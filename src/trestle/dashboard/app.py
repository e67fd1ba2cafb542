"""The dashboard's web application: its pages, its live streams and its actions.

Every request must name an allowed host; every page needs a session (see
:mod:`trestle.dashboard.security`); every action that changes a run is a POST that
carries the session's CSRF token from the dashboard's own origin, and goes through the
CLI's path: :func:`trestle.lifecycle.approvals.queue_decision`,
:func:`trestle.lifecycle.runs.request_decision`, :func:`trestle.lifecycle.cancel.cancel_run`,
:func:`trestle.lifecycle.rewinding.rewind`.

Logging in, joining by invitation and logging out are :mod:`trestle.dashboard.logins`;
what a request must carry is :mod:`trestle.dashboard.forms`. A decision made in an
invited person's session is signed with their own key (:meth:`Gate.signer`).

Live pages hold a server-sent-events stream: the server looks at the store a few times a
second and, when the run has new events, sends the page's live part rendered again
(one fragment however many events came in between), which ``live.js`` swaps in. The
runs list and a run's page are sent again also when a run's status as shown
(:func:`drivings`) changes with nothing recorded, as when its driver was killed.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from markupsafe import Markup, escape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trestle.core.budget import DIMENSIONS
from trestle.core.errors import TrestleError
from trestle.dashboard import forms, views
from trestle.dashboard.accounts import LoginRefused
from trestle.dashboard.conversation import chat
from trestle.dashboard.finding import ENGINES, RunFilter, run_filter
from trestle.dashboard.forms import Refused, back
from trestle.dashboard.logins import WRONG_PASSWORD_DELAY, add_login_routes
from trestle.dashboard.security import PAGES, PAGES_SCOPE, Gate, Session
from trestle.lifecycle.approvals import split_ref, trusted_state
from trestle.lifecycle.driven import driving, drivings, interrupted_note
from trestle.notifications.ledger import trouble_text, troubles_if_any
from trestle.operations.health import run_health
from trestle.presentation.descriptions import action_text
from trestle.presentation.wording import clip, clock, shown, visible
from trestle.store.base import RequestKind, Store, subtree
from trestle.store.location import is_store_url, open_store

POLL = 0.25  # seconds between looks at the store while a stream is open
KEEPALIVE = 15.0  # seconds between comments that keep an idle stream open
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
EVENTS_PAGE_MOST = 10_000  # events one request of a run's JSON history may ask for
ALIVE_EVERY = 5.0  # seconds between checks that a stream's session still stands
# as runs are shown (trestle.lifecycle.driven.driving): a run nothing drives is interrupted
STATUSES = (
    "created",
    "running",
    "interrupted",
    "needs_human",
    "succeeded",
    "partial",
    "stopped",
    "cancelled",
)


@dataclass(frozen=True)
class Settings:
    store: str | Path  # an SQLite file, or a postgresql:// URL (store.location.store_where)
    gate: Gate
    poll: float = POLL
    wrong_password_delay: float = WRONG_PASSWORD_DELAY
    alive_every: float = ALIVE_EVERY


HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class Guard:
    """Refuses a request that names a host the server does not answer to (this also
    stops DNS rebinding), and adds the headers every answer carries. Plain ASGI, so a
    stream passes through untouched."""

    def __init__(self, app: ASGIApp, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if not self.gate.host_ok(host):
            await Response("unknown host\n", status_code=421, media_type="text/plain")(
                scope, receive, send
            )
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


class Pages:
    """Serves a session's pages from under its own address, ``/s/KEY/``
    (:attr:`~trestle.dashboard.security.Session.pages`): the routes see the path below
    it, and the address is kept in the scope (:data:`PAGES_SCOPE`) for
    :func:`~trestle.dashboard.forms.session_of` to match with the session. Plain ASGI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            parts = scope["path"][len(root) :].split("/", 3)  # "", "s", KEY, the rest
            if len(parts) >= 3 and parts[0] == "" and PAGES.fullmatch(f"/s/{parts[2]}"):
                pages = f"/s/{parts[2]}"
                scope = {**scope, "root_path": root + pages, PAGES_SCOPE: pages}
        await self.app(scope, receive, send)


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trestle.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # every value a page shows: controls and bidirectional overrides from a run
        # (a step's output, a model's text, a command awaiting approval) shown as
        # escapes, so a card reads as what is recorded (docs/security.md)
        finalize=lambda value: visible(value) if isinstance(value, str) else value,
    )
    env.filters["shown"] = shown
    env.filters["clip"] = clip
    env.filters["clock"] = lambda at: clock(at, "%H:%M:%S")
    env.filters["stamp"] = lambda at: clock(at, "%m-%d %H:%M")
    env.filters["action"] = action_text
    env.filters["q"] = lambda text: quote(str(text), safe="")
    env.filters["breakable"] = breakable
    return env


LONG_WORD = 24  # characters of a word with no break in it before it may be broken


def breakable(text: object) -> Markup:
    """``text`` escaped (controls shown as escapes, as every value is), with a break
    opportunity every :data:`LONG_WORD` characters inside a longer word (a JSON
    argument, a hash, a path): a table column is then never wider than its longest
    short word, and a short word is never broken in two."""
    parts = []
    for word in re.split(r"(\s+)", visible(str(text))):
        pieces = [word[i : i + LONG_WORD] for i in range(0, len(word), LONG_WORD)] or [""]
        parts.append(Markup("<wbr>").join(escape(piece) for piece in pieces))
    return Markup("").join(parts)


def create_app(settings: Settings) -> FastAPI:
    """The dashboard over the store at ``settings.store``."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    env = _templates()
    gate = settings.gate
    static = files("trestle.dashboard") / "static"

    app.add_middleware(Pages)
    app.add_middleware(Guard, gate=gate)  # added last: the outermost, first to judge

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        # a page asked for without a session's address (a notification's link to a card)
        # is opened in the browser's session, if it has one: see static/pages.js
        elsewhere = exc.status == 401 and request.method == "GET"
        page = env.get_template("refused.html").render(
            why=exc.why, status=exc.status, find_session=elsewhere
        )
        return HTMLResponse(page, status_code=exc.status)

    database: list[Store] = []  # a database's store, once opened (see store())
    opening = threading.Lock()

    @contextmanager
    def store() -> Iterator[Store]:
        # A file is opened per request (cheap, and nothing stays open between them). A
        # database is opened once and shared: a login per request cost 12 ms against
        # 0.03 ms for a listing, and a live page asks up to four times a second. Its
        # store takes one request at a time, and reconnects when the server dropped it.
        if is_store_url(settings.store):
            with opening:
                if not database:
                    database.append(open_store(settings.store, create=False))
            yield database[0]
            return
        opened = open_store(settings.store, create=False)
        try:
            yield opened
        finally:
            opened.close()

    def session_of(request: Request, *, touch: bool = True) -> Session:
        return forms.session_of(gate, request, touch=touch)

    async def changing(request: Request) -> tuple[Session, dict[str, str]]:
        return await forms.changing(gate, request)

    def alive(request: Request) -> Callable[[], bool]:
        """Whether the stream's session still stands (not logged out, expired, removed);
        watching a page is not a use that keeps a session from going idle."""

        def check() -> bool:
            try:
                session_of(request, touch=False)
            except Refused:
                return False
            return True

        return check

    def visible_run(session: Session, run_id: str) -> None:
        if not session.may_see(run_id):
            raise Refused(403, f"refused: this session may not see run {run_id!r}")

    def page(name: str, session: Session, **context: Any) -> HTMLResponse:
        notes = gate.notes(session.id)
        html = env.get_template(name).render(
            session=session, pages=session.pages, notes=notes, **context
        )
        return HTMLResponse(html)

    add_login_routes(app, env, gate, wrong_password_delay=settings.wrong_password_delay)

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        types = {
            "live.js": "text/javascript",
            "login.js": "text/javascript",
            "pages.js": "text/javascript",
            "style.css": "text/css",
        }
        if name not in types:
            raise Refused(404, "no such file")
        return Response((static / name).read_text(encoding="utf-8"), media_type=types[name])

    # -- runs -------------------------------------------------------------------------

    def finder(request: Request) -> RunFilter:
        try:
            return run_filter({k: request.query_params.getlist(k) for k in request.query_params})
        except TrestleError as exc:
            raise Refused(400, f"the runs cannot be filtered so: {exc}") from None

    def runs_fragment(session: Session, find: RunFilter) -> str:
        with store() as st:
            found = views.run_lines(st, visible=session.runs, find=find)
        return env.get_template("_runs.html").render(found=found, find=find, pages=session.pages)

    @app.get("/", response_class=HTMLResponse)
    def runs_page(request: Request) -> HTMLResponse:
        session = session_of(request)
        find = finder(request)
        return page(
            "runs.html",
            session,
            fragment=runs_fragment(session, find),
            find=find,
            statuses=STATUSES,
            engines=ENGINES,
            stream=f"{session.pages}/stream/runs?{find.query_string()}",
        )

    @app.get("/stream/runs")
    async def runs_stream(request: Request) -> Response:
        session = session_of(request)
        find = finder(request)

        def version() -> object:
            # by the status as shown, so a run whose driver died without a word turns
            # interrupted live; only a running row's lease is read
            with store() as st:
                rows = st.runs()
                shown = drivings(st, rows)
                return tuple((r.run_id, r.last_seq, shown[r.run_id].status) for r in rows)

        return _sse(
            request,
            version,
            lambda: runs_fragment(session, find),
            settings.poll,
            alive(request),
            settings.alive_every,
        )

    # -- a run ------------------------------------------------------------------------

    def run_fragment(session: Session, run_id: str, only: str, step: str) -> str:
        visible_run(session, run_id)
        with store() as st:
            try:
                state = trusted_state(st, run_id)
            except TrestleError as exc:
                raise Refused(404, str(exc)) from None
            # a long run's page reads its newest events only (attempts, turns, timeline)
            after = max(0, state.seq - views.EVENTS_MOST)
            events = st.events(run_id, after=after)
            lease = st.lease(run_id)
            now = time.time()
            health = run_health(state, lease, now=now, lease_ttl=views.LEASE_TTL)
            below = subtree(st.runs(), run_id) if state.children else []
            driven = drivings(st, [child for child, _ in below])
        # as `trestle show` says it: what stopped it, the command that moves it, and
        # the steps a driver that died left running
        judged = driving(state.finished or "running", state.interrupted, lease, now=now)
        stopped = judged.status == "interrupted"
        return env.get_template("_run.html").render(
            state=state,
            health=health,
            next=interrupted_note(
                run_id, state.interrupted, judged, state.parent.root if state.parent else None
            )
            if stopped
            else None,
            children=[
                (row.run_id, driven[row.run_id].status, row.goal, depth) for row, depth in below
            ],
            graph=views.plan_graph(state, lost=judged.lost),
            steps=views.step_views(state, events, lost=judged.lost),
            timeline=views.timeline(events, only=only, step=step),
            decisions=views.decisions(state),
            agent=views.agent_view(events),
            csrf=session.csrf,
            pages=session.pages,
            only=only,
            total=state.seq,
            after=after,
            most=views.TIMELINE_MOST,
        )

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str, only: str = "all", step: str = "") -> HTMLResponse:
        session = session_of(request)
        fragment = run_fragment(session, run_id, only, step)
        with store() as st:
            state = trusted_state(st, run_id)
            marks = views.checkpoint_views(st, state)
            blamed = views.blame_view(st, state)
        query = f"only={quote(only)}&step={quote(step)}"
        stream = f"{session.pages}/stream/runs/{quote(run_id)}?{query}"
        return page(
            "run.html",
            session,
            run_id=run_id,
            state=state,
            fragment=fragment,
            stream=stream,
            only=only,
            step=step,
            filters=list(views.TIMELINE_FILTERS),
            checkpoints=marks,
            blame=blamed,
            dimensions=DIMENSIONS,
        )

    @app.get("/stream/runs/{run_id}")
    async def run_stream(
        request: Request, run_id: str, only: str = "all", step: str = ""
    ) -> Response:
        session = session_of(request)
        visible_run(session, run_id)

        def version() -> object:
            # by the status as shown too, so the page of a run whose driver died without
            # a word turns interrupted live; only a running run's lease is read
            with store() as st:
                row = st.run(run_id)
                return (row.last_seq, drivings(st, [row])[run_id].status)

        return _sse(
            request,
            version,
            lambda: run_fragment(session, run_id, only, step),
            settings.poll,
            alive(request),
            settings.alive_every,
        )

    @app.get("/runs/{run_id}/steps/{step}/diff", response_class=HTMLResponse)
    def diff_page(request: Request, run_id: str, step: str) -> HTMLResponse:
        session = session_of(request)
        visible_run(session, run_id)
        with store() as st:
            try:
                state = trusted_state(st, run_id)
            except TrestleError as exc:  # no such run: as its own page says
                raise Refused(404, str(exc)) from None
            if step not in state.steps:
                raise Refused(404, f"run {run_id!r} has no step {step!r}")
            try:
                said, text = views.step_change(st, state, step)
            except TrestleError as exc:
                said, text = f"error: {exc}", ""
        return page("diff.html", session, run_id=run_id, step=step, said=said, text=text)

    @app.get("/runs/{run_id}/events.json")
    def events_json(request: Request, run_id: str, after: int = 0, limit: int = 1000) -> Response:
        """The run's event history as ``trestle log RUN --json`` prints it, a page at a
        time: the events after ``after``, at most ``limit`` (up to 10,000)."""
        session = session_of(request)
        visible_run(session, run_id)
        if after < 0 or not 1 <= limit <= EVENTS_PAGE_MOST:
            raise Refused(400, f"after must be 0 or more and limit 1 to {EVENTS_PAGE_MOST}")
        with store() as st:
            try:
                trusted_state(st, run_id)
            except TrestleError as exc:
                raise Refused(404, str(exc)) from None
            events = st.events(run_id, after=after, limit=limit)
        body = [{"seq": e.seq, **e.event.model_dump(mode="json")} for e in events]
        return Response(
            json.dumps(body, ensure_ascii=True, indent=1),
            media_type="application/json",
        )

    @app.get("/runs/{run_id}/chat", response_class=HTMLResponse)
    def chat_page(request: Request, run_id: str) -> HTMLResponse:
        session = session_of(request)
        visible_run(session, run_id)
        with store() as st:
            try:
                state = trusted_state(st, run_id)
            except TrestleError as exc:
                raise Refused(404, str(exc)) from None
            events = st.events(run_id, after=max(0, state.seq - views.EVENTS_MOST))
        return page("chat.html", session, run_id=run_id, state=state, entries=chat(events))

    @app.post("/runs/{run_id}/cancel")
    async def cancel(request: Request, run_id: str) -> Response:
        from trestle.lifecycle.cancel import cancel_run

        session, form = await changing(request)
        visible_run(session, run_id)
        reason = form.get("reason", "").strip()

        def act() -> str:
            with store() as st:
                done = cancel_run(st, run_id, reason, by=session.by)
            if done.already:
                return f"run {run_id} was already {done.state.cancelled}"
            how = f" (its driver {done.by} stopped it)" if done.by else ""
            far = "".join(f"; NOT ENDED: {line}" for line in done.elsewhere)
            return f"run {run_id} cancelled{how}: {reason}{far}"

        await _act(gate, session, act)
        return back(run_page_of(session, run_id))

    @app.post("/runs/{run_id}/budget")
    async def raise_budget_form(request: Request, run_id: str) -> Response:
        from trestle.lifecycle.topup import parse_add, raise_budget

        session, form = await changing(request)
        visible_run(session, run_id)
        given = f"{form.get('dimension', '')}={form.get('amount', '')}"
        reason = form.get("reason", "").strip()

        def act() -> str:
            dim, amount = parse_add(given)  # as `trestle budget --add` reads it
            with store() as st:
                raise_budget(
                    st,
                    run_id,
                    {dim: amount},
                    by=session.by,
                    reason=reason,
                    identity=gate.signer(session),  # the person's own key, as a decision's
                )
            return (
                f"raised the {dim} limit of run {run_id} by {amount:g}; continue with "
                f"`trestle resume {run_id}`"
            )

        await _act(gate, session, act)
        return back(run_page_of(session, run_id))

    @app.post("/runs/{run_id}/steps/{step}/{kind}")
    async def retry_or_skip(request: Request, run_id: str, step: str, kind: str) -> Response:
        from trestle.lifecycle.runs import request_decision

        session, form = await changing(request)
        visible_run(session, run_id)
        if kind not in ("retry", "skip"):
            raise Refused(404, f"no action {kind!r}")
        default = "retry requested" if kind == "retry" else ""
        reason = form.get("reason", "").strip() or default
        if not reason:
            raise Refused(400, "a skip needs a reason: say why the step is not needed")

        which: RequestKind = "retry" if kind == "retry" else "skip"

        def act() -> str:
            with store() as st:
                queued = request_decision(st, run_id, which, step, reason, by=session.by)
                return _queued(st, f"{kind} of {step!r}", run_id, queued.id)

        await _act(gate, session, act)
        return back(_local(form.get("next", ""), session.pages) or run_page_of(session, run_id))

    @app.post("/runs/{run_id}/rewind")
    async def rewind_run(request: Request, run_id: str) -> Response:
        from trestle.lifecycle.lease import this_process
        from trestle.lifecycle.rewinding import rewind
        from trestle.workspace.shadow import shadow_dir_for

        session, form = await changing(request)
        visible_run(session, run_id)
        to = form.get("to", "")

        def act() -> str:
            with store() as st:
                shadow = shadow_dir_for(st, Path(st.run(run_id).workspace))
                if shadow is None or not shadow.exists():
                    return "error: this store has no workspace checkpoints"
                done = rewind(
                    st,
                    run_id,
                    to,
                    shadow_dir=shadow,
                    owner=this_process("dashboard"),
                    by=session.by,
                )
            return (
                f"workspace restored to before {to!r}; reopened {', '.join(done.reopened)}; "
                f"the workspace as it was is kept as checkpoint {done.safety[:12]} (`trestle "
                f"rewind {run_id} --to-checkpoint {done.safety[:12]}` puts it back); "
                f"continue with `trestle resume {run_id}`"
            )

        await _act(gate, session, act)
        return back(run_page_of(session, run_id))

    # -- inbox ------------------------------------------------------------------------

    @app.get("/inbox", response_class=HTMLResponse)
    def inbox_page(request: Request) -> HTMLResponse:
        session = session_of(request)
        with store() as st:
            cards = views.card_views(st, visible=session.runs)
        return page("inbox.html", session, cards=cards)

    @app.post("/inbox/{ref}/preview", response_class=HTMLResponse)
    async def preview(request: Request, ref: str) -> HTMLResponse:
        session, form = await changing(request)
        visible_run(session, _run_of(ref))

        def show() -> list[views.CardView]:
            with store() as st:
                cards = views.card_views(st, visible=session.runs)
                return [
                    views.preview_edit(st, v, form.get("edited", "")) if v.card.ref == ref else v
                    for v in cards
                ]

        try:
            cards = await anyio.to_thread.run_sync(show)
        except TrestleError as exc:
            gate.note(session.id, f"error: {exc}")
            return inbox_page(request)
        return page("inbox.html", session, cards=cards)

    @app.post("/inbox/{ref}/{verdict}")
    async def decide(request: Request, ref: str, verdict: str) -> Response:
        from trestle.lifecycle.approvals import edit_from_yaml, queue_decision

        session, form = await changing(request)
        visible_run(session, _run_of(ref))
        reason = form.get("reason", "").strip()
        if verdict not in ("approve", "reject", "modify"):
            raise Refused(404, f"no decision {verdict!r}")

        def act() -> str:
            identity = gate.signer(session)  # the person's own key; None: this user's
            with store() as st:
                if verdict == "modify":
                    edited = edit_from_yaml(form.get("edited", ""))
                    queued = queue_decision(
                        st,
                        ref,
                        "modify",
                        edited=edited,
                        reason=reason,
                        by=session.by,
                        identity=identity,
                    )
                    what = f"approved {queued.ref} as edited"
                elif verdict == "approve":
                    top = form.get("top_up", "").strip()
                    similar = form.get("similar") == "on"
                    queued = queue_decision(
                        st,
                        ref,
                        "approve",
                        reason=reason,
                        similar=similar,
                        # the group as this page showed it: refused if it changed since
                        group=(form.get("group") or None) if similar else None,
                        top_up=float(top) if top else None,
                        by=session.by,
                        identity=identity,
                    )
                    what = f"approved {queued.ref}"
                else:
                    queued = queue_decision(
                        st, ref, "reject", reason=reason, by=session.by, identity=identity
                    )
                    what = f"rejected {queued.ref}"
                return _queued(st, what, queued.run_id, queued.request_id)

        await _act(gate, session, act)
        return back(f"{session.pages}/inbox")

    # -- health -----------------------------------------------------------------------

    @app.get("/health", response_class=HTMLResponse)
    def health_page(request: Request) -> HTMLResponse:
        session = session_of(request)
        with store() as st:
            runs = views.health_lines(st, visible=session.runs)
            letters = views.dead_letter_views(st, visible=session.runs)
        # the operator's notifications, from their ledger, as `trestle health` says them
        failing = [trouble_text(t) for t in troubles_if_any()]
        return page("health.html", session, runs=runs, letters=letters, failing=failing)

    return app


def _run_of(ref: str) -> str:
    """The run an approval reference names, or a refusal for one that names none."""
    try:
        return split_ref(ref)[0]
    except TrestleError as exc:
        raise Refused(404, str(exc)) from None


def _local(url: str, pages: str) -> str:
    """``url`` if it is a page of the session whose pages are under ``pages``, else
    nothing (no redirect elsewhere)."""
    return url if url.startswith(f"{pages}/") and "\\" not in url else ""


def run_page_of(session: Session, run_id: str) -> str:
    """The address of run ``run_id``'s page in ``session``."""
    return f"{session.pages}/runs/{quote(run_id)}"


def _queued(store: Store, what: str, run_id: str, request_id: int) -> str:
    """What became of a queued request, as the CLI says it (without waiting)."""
    from trestle.lifecycle.outcomes import driven_live

    driver = driven_live(store, run_id, time.time())
    if driver is not None:
        return f"{what}: queued (request {request_id}); {driver} drives the run and applies it"
    from trestle.lifecycle.doorbell import root_of

    return (
        f"{what}: queued (request {request_id}); it will be applied or refused when the run "
        f"is resumed: `trestle resume {root_of(store, run_id)}`"
    )


async def _act(gate: Gate, session: Session, act: Callable[[], str]) -> None:
    """Do a change off the event loop; what it did (or the error) is the next page's note."""
    try:
        note = await anyio.to_thread.run_sync(act)
    except (TrestleError, ValueError, LoginRefused) as exc:
        note = f"error: {exc}"
    gate.note(session.id, note)


def _sse(
    request: Request,
    version: Callable[[], object],
    render: Callable[[], str],
    poll: float,
    alive: Callable[[], bool],
    alive_every: float,
) -> StreamingResponse:
    """A stream that sends ``render()`` whenever ``version()`` changes, and ends once
    ``alive()`` says its session ended (looked at every ``alive_every`` seconds)."""

    async def events() -> AsyncIterator[str]:
        seen: object = None
        quiet = checked = time.monotonic()
        took = 0.0  # how long the last render took
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            if time.monotonic() - checked > alive_every:
                if not await anyio.to_thread.run_sync(alive):
                    break  # logged out, expired or removed: it sees nothing more
                checked = time.monotonic()
            try:
                now = await anyio.to_thread.run_sync(version)
                if now != seen:
                    started = time.monotonic()
                    html = await anyio.to_thread.run_sync(render)
                    took = time.monotonic() - started
            except (Refused, TrestleError):
                break  # the run went away, or the session may no longer see it
            if now != seen:
                seen = now
                yield "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"
                quiet = time.monotonic()
            elif time.monotonic() - quiet > KEEPALIVE:
                yield ": still here\n\n"
                quiet = time.monotonic()
            # a long run's page costs more to render: render it less often, so a busy
            # run with many watchers spends at most about a fifth of the time rendering
            await asyncio.sleep(max(poll, 4 * took))

    return StreamingResponse(events(), media_type="text/event-stream")
