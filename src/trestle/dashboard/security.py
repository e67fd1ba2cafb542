"""Who may use the dashboard, and how a request proves it.

- The person who started ``trestle ui`` gets a URL with a one-time login token. The
  token is exchanged once for a session cookie (HttpOnly, SameSite=Strict); a second
  use of the token is refused.
- A session's pages are under an address of its own, ``/s/KEY/`` (:attr:`Session.pages`),
  and its cookie, named after it, is sent only there. A browser sends a host's cookies
  to every port of it, so a cookie for all of ``127.0.0.1`` reached any server there the
  operator's browser was sent to (one a step with the network started, or another
  user's): it took the cookie and approved with it. The key is not in the cookie's
  value, and a request with the cookie elsewhere opens nothing. The key is this
  server's own too (:attr:`Gate.instance`): a program that takes the port of a stopped
  dashboard, to which an open page reconnects with its cookie and key, gets an invited
  person's session (kept in the accounts file) but no key any other dashboard answers.
- Every form carries the session's CSRF token, and a request that changes anything must
  carry it, come from the dashboard's own origin (``Origin``, else ``Referer``) and name
  an allowed host (``Host``; this also stops DNS rebinding).
- A session may be limited to some runs (``trestle ui --run``); a run outside them is
  not shown and cannot be acted on.
- The people the operator invited (:mod:`trestle.dashboard.accounts`) log in with a
  name and password instead; their sessions live in the accounts file, expire, and end
  everywhere at once. A decision made in such a session is theirs: recorded
  ``by dashboard:NAME`` and signed with their own key (:meth:`Gate.signer`).

Pure bookkeeping: nothing here imports the web framework.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from trestle.dashboard.accounts import Accounts, Login, LoginRefused

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SESSION_COOKIE = "trestle_session"  # then "_" and the key of its address: see cookie_name
PAGES_SCOPE = "trestle.pages"  # the ASGI scope's key for the session address a request is under
PAGES = re.compile(r"/s/[0-9a-f]{32}")  # a session's address, as pages_of makes it
NOT_LOGGED_IN = (
    "not logged in here: open the URL `trestle ui` printed, or log in at /login (a "
    "session's pages are under /s/ and a key of its own)"
)


def derived(purpose: str, *secrets: str) -> str:
    """A value derived from ``secrets`` for one ``purpose`` (the hex SHA-256 of both):
    it tells nothing of them, and is another for every other purpose."""
    return hashlib.sha256("\0".join(("trestle", purpose, *secrets)).encode()).hexdigest()


def pages_of(csrf: str, instance: str) -> str:
    """The address a session's pages are under: ``/s/`` and a digest of its CSRF token,
    a secret of the session's its cookie does not hold (a leaked cookie does not give
    the address) and which every page of the session already shows, with the secret of
    the server that serves it (``instance``)."""
    return f"/s/{derived('dashboard pages', instance, csrf)[:32]}"


def cookie_name(pages: str) -> str:
    """The name of the cookie of the session whose address is ``pages``: a cookie
    another port of the host set for all of it (``trestle_session=junk; Path=/``) is
    never the one read, so it cannot shut the session out."""
    return f"{SESSION_COOKIE}_{pages.rpartition('/')[2]}"


@dataclass(frozen=True)
class Session:
    """A logged-in browser: who it acts as, its CSRF token, and which runs it sees."""

    id: str
    user: str
    csrf: str
    pages: str  # the address its pages are under (see pages_of)
    runs: frozenset[str] | None = None  # None: every run in the store
    # the invited person it is logged in as; None: whoever started `trestle ui`
    person: str | None = None
    # from a login just made: the token its browser keeps to be spared a lockout of the
    # person's name (see Accounts.login)
    device: str | None = None

    def may_see(self, run_id: str) -> bool:
        return self.runs is None or run_id in self.runs

    @property
    def cookie(self) -> str:
        """The name of its cookie (see :func:`cookie_name`)."""
        return cookie_name(self.pages)

    @property
    def by(self) -> str:
        """How a decision made in this session is recorded."""
        return f"dashboard:{self.user}"

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


@dataclass
class Gate:
    """The login token, the live sessions, and the hosts the server answers to."""

    user: str
    hosts: frozenset[str]  # "127.0.0.1:8765", "localhost:8765", ...
    runs: frozenset[str] | None = None
    login_token: str | None = field(default_factory=lambda: secrets.token_urlsafe(32))
    accounts: Accounts | None = None  # the invited people; None: only the login token
    # this server's own secret, in every session's address (see pages_of): an invited
    # person's session outlives a server, its address does not
    instance: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _sessions: dict[str, Session] = field(default_factory=dict)
    _notes: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def exchange(self, token: str | None) -> Session | None:
        """A new session for the one-time login token; None when it is wrong or used."""
        with self._lock:
            if (
                token is None
                or self.login_token is None
                or not hmac.compare_digest(token.encode(), self.login_token.encode())
            ):
                return None
            self.login_token = None  # once only
            csrf = secrets.token_urlsafe(32)
            session = Session(
                id=secrets.token_urlsafe(32),
                user=self.user,
                csrf=csrf,
                pages=pages_of(csrf, self.instance),
                runs=self.runs,
            )
            self._sessions[session.id] = session
            return session

    def session(self, pages: str | None, cookie: str | None) -> Session | None:
        """The live session ``cookie`` opens under the address ``pages``, or None."""
        try:
            return self.admit(pages, cookie, touch=False)
        except LoginRefused:
            return None

    def admit(self, pages: str | None, cookie: str | None, *, touch: bool = True) -> Session:
        """The live session ``cookie`` opens under the address ``pages`` (its own: see
        :func:`pages_of`); LoginRefused saying why there is none (an expired or idle
        person's session is ended). ``touch`` counts this as a use, which only a request
        under the session's own address is."""
        if pages and cookie:
            with self._lock:
                found = self._sessions.get(cookie)
            if found is None and self.accounts is not None:
                found = self._theirs(self.accounts.session(cookie, touch=False))
            if found is not None and hmac.compare_digest(found.pages, pages):
                if touch and found.person is not None and self.accounts is not None:
                    self.accounts.session(cookie, touch=True)
                return found
        raise LoginRefused(NOT_LOGGED_IN)

    def login(self, name: str, password: str, device: str | None = None) -> Session:
        """A session for an invited person's name and password, from a browser holding
        the ``device`` token an earlier login gave it; LoginRefused if not."""
        if self.accounts is None:
            raise LoginRefused("this dashboard has no people: open the URL `trestle ui` printed")
        return self._theirs(self.accounts.login(name, password, device))

    def accept(self, token: str | None, password: str) -> Session:
        """A session for the person an invitation names, who sets their password."""
        if self.accounts is None:
            raise LoginRefused("this dashboard takes no invitations")
        return self._theirs(self.accounts.accept(token, password))

    def signer(self, session: Session) -> Ed25519PrivateKey | None:
        """The key a decision made in ``session`` is signed with: the person's own, or
        None for this user's ``identity.key`` (the login token's session)."""
        if session.person is None or self.accounts is None:
            return None
        return self.accounts.signing_key(session.person)

    def _theirs(self, login: Login) -> Session:
        pages = pages_of(login.csrf, self.instance)
        return Session(login.id, login.name, login.csrf, pages, self.runs, login.name, login.device)

    def end(self, session_id: str) -> None:
        """Log the session out: its cookie opens nothing any more."""
        with self._lock:
            self._sessions.pop(session_id, None)
            self._notes.pop(session_id, None)
        if self.accounts is not None:
            self.accounts.end(session_id)

    def end_everywhere(self, session: Session) -> int:
        """Log out every session of the person ``session`` is (just it, for the login
        token's); how many ended."""
        self.end(session.id)
        if session.person is None or self.accounts is None:
            return 1
        return 1 + self.accounts.end_all(session.person)

    def note(self, session_id: str, text: str) -> None:
        """Something to tell the session on its next page (what an action did)."""
        with self._lock:
            self._notes.setdefault(session_id, []).append(text)

    def notes(self, session_id: str) -> list[str]:
        """The session's notes, once."""
        with self._lock:
            return self._notes.pop(session_id, [])

    def host_ok(self, host: str | None) -> bool:
        return host is not None and host.lower() in self.hosts

    def origin_ok(self, origin: str | None, referer: str | None) -> bool:
        """Whether a changing request comes from the dashboard's own pages: its
        ``Origin`` (or, lacking one, its ``Referer``) is one of this server's origins."""
        source = origin if origin and origin != "null" else referer
        if not source:
            return False
        parts = urlsplit(source)
        return parts.scheme == "http" and parts.netloc.lower() in self.hosts


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` values a server bound to ``host``:``port`` answers to."""
    names = {host, *extra}
    if host in ("127.0.0.1", "localhost", "::1"):
        names |= {"127.0.0.1", "localhost"}
    hosts = {f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names}
    return frozenset(h.lower() for h in hosts)
