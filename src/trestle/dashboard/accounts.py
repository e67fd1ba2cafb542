"""The dashboard's people: invitations, passwords, sessions, and each person's own key.

One SQLite file (``dashboard.sqlite`` in Trestle's configuration directory, mode 0600;
``$TRESTLE_DASHBOARD_ACCOUNTS`` names another) holds, for each person the operator
invited (``trestle people invite NAME``):

- an Ed25519 identity key made at the invitation and kept here: a decision made in
  their session is signed with it, and its public half is what the operator lists in
  ``[policy.groups]`` (:mod:`trestle.trust.identity`), so an approver rule tells the
  dashboard's people apart;
- their password as scrypt with a random salt, compared in constant time;
- their invitation (only a hash of its token; it expires, and works once) and their
  sessions (only a hash of the session id; each ends at an absolute lifetime and after
  an idle time, and all of them end on "logout everywhere" or when the person is removed).

Wrong passwords are counted per name: past :data:`FAILURES_MOST` within
:data:`LOCKOUT` seconds the name is refused until the window has passed. A lockout is
also something anyone who can reach the login form can cause (a step that keeps the
network, any local program), so a browser the person logged in with before is not held
back by it: each login gives the browser a device token (only its hash kept here,
renewed at every login, forgotten on logout everywhere), which the login form sends
back, and wrong passwords sent with a known device token count against that device
alone.

Pure bookkeeping over the file with an injected clock: nothing here imports the web
framework. A connection is opened per call, so any thread of the server may call.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trestle.core.errors import ConfigError, StoreError
from trestle.trust.identity import accounts_path, key_from_hex, new_key, public_of

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

NAME = re.compile(r"[a-z][a-z0-9._-]{0,31}")
PASSWORD_LEAST = 12  # characters
PASSWORD_MOST = 1024  # characters: scrypt of a longer one would only cost the server
FAILURES_MOST = 5  # wrong passwords for one name within LOCKOUT before it is refused
LOCKOUT = 15 * 60.0  # seconds
DEVICE_LIFETIME = 30 * 24 * 3600.0  # seconds a device token spares its browser a lockout
DEVICES_MOST = 8  # device tokens kept for one person: the latest logins' browsers
INVITATION_LIFETIME = 24 * 3600.0  # seconds, unless the invitation says otherwise
SERVED_AT = "served_at"  # the setting that holds the URL `trestle ui` last printed
SEEN_EVERY = 30.0  # seconds: a session's last use is written at most this often
# scrypt's cost: 16 MiB of memory a check (N=2**14, r=8, p=1, as OWASP recommends)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1

MIGRATIONS = (
    """
    CREATE TABLE people (
        name TEXT PRIMARY KEY,
        identity TEXT NOT NULL,      -- the Ed25519 private key, 64 hex digits
        password TEXT,               -- scrypt$N$r$p$salt$hash, NULL until they join
        invited REAL NOT NULL,
        joined REAL
    );
    CREATE TABLE invitations (
        token_hash TEXT PRIMARY KEY,
        name TEXT NOT NULL REFERENCES people(name) ON DELETE CASCADE,
        expires REAL NOT NULL
    );
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        name TEXT NOT NULL REFERENCES people(name) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        seen REAL NOT NULL,
        expires REAL NOT NULL
    );
    CREATE TABLE failures (name TEXT NOT NULL, at REAL NOT NULL);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    """
    CREATE TABLE devices (
        token_hash TEXT PRIMARY KEY,
        name TEXT NOT NULL REFERENCES people(name) ON DELETE CASCADE,
        expires REAL NOT NULL
    );
    -- wrong passwords sent with a known device token: a table of their own, so an
    -- older Trestle sharing the file still counts its own in failures
    CREATE TABLE device_failures (device TEXT NOT NULL, at REAL NOT NULL);
    """,
)


class LoginRefused(Exception):
    """A login, an invitation or a session the dashboard refuses: the sentence says why."""


@dataclass(frozen=True)
class Lifetimes:
    """How long a session lasts: at most ``absolute`` seconds after logging in, and
    ``idle`` seconds after its last use."""

    absolute: float = 12 * 3600.0
    idle: float = 3600.0


@dataclass(frozen=True)
class Invitation:
    name: str
    token: str  # shown once, stored only as a hash
    expires: float
    public_key: str


@dataclass(frozen=True)
class Person:
    name: str
    public_key: str
    joined: bool
    sessions: int  # live ones


@dataclass(frozen=True)
class Login:
    """A person's session: its id (the cookie; stored only as a hash) and CSRF token;
    from a login, also the device token its browser keeps (see :meth:`Accounts.login`)."""

    id: str
    name: str
    csrf: str
    device: str | None = None


class Accounts:
    """The accounts file at ``path``, read with ``clock`` (seconds, like time.time)."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
        lifetimes: Lifetimes | None = None,
    ) -> None:
        self.path = path or accounts_path()
        self.clock = clock
        self.lifetimes = lifetimes or Lifetimes()

    # -- the operator's side (trestle people) --------------------------------------

    def invite(self, name: str, lifetime: float = INVITATION_LIFETIME) -> Invitation:
        """An invitation for ``name``: a new person with a new key, or a new password
        for one who exists (their key stays; their sessions end when they accept)."""
        check_name(name)
        if lifetime <= 0:
            raise ConfigError(f"invitation of {name!r}: its lifetime must be more than 0")
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._db(create=True) as db:
            row = db.execute("SELECT identity FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                key = new_key()
                db.execute(
                    "INSERT INTO people (name, identity, invited) VALUES (?, ?, ?)",
                    (name, key.private_bytes_raw().hex(), now),
                )
            else:
                key = key_from_hex(row[0])
            db.execute("DELETE FROM invitations WHERE name = ?", (name,))
            db.execute(
                "INSERT INTO invitations VALUES (?, ?, ?)", (_hash(token), name, now + lifetime)
            )
        return Invitation(name, token, now + lifetime, public_of(key))

    def people(self) -> list[Person]:
        """Everyone invited, by name, with their public key and live sessions."""
        now = self.clock()
        with self._db() as db:
            rows = db.execute(
                "SELECT p.name, p.identity, p.password IS NOT NULL, COUNT(s.id_hash) "
                "FROM people p LEFT JOIN sessions s ON s.name = p.name "
                "AND s.expires > ? AND s.seen > ? GROUP BY p.name ORDER BY p.name",
                (now, now - self.lifetimes.idle),
            ).fetchall()
        return [Person(n, public_of(key_from_hex(k)), bool(j), c) for n, k, j, c in rows]

    def end_all(self, name: str) -> int:
        """End every session of ``name`` and forget their browsers' device tokens
        (logout everywhere); how many sessions there were."""
        with self._db() as db:
            self._known(db, name)
            db.execute("DELETE FROM devices WHERE name = ?", (name,))
            return db.execute("DELETE FROM sessions WHERE name = ?", (name,)).rowcount

    def remove(self, name: str) -> None:
        """Forget ``name``: their key, password, invitation and sessions."""
        with self._db() as db:
            self._known(db, name)
            db.execute("DELETE FROM people WHERE name = ?", (name,))

    def signing_key(self, name: str) -> Ed25519PrivateKey:
        """The key a decision made in ``name``'s session is signed with."""
        with self._db() as db:
            row = db.execute("SELECT identity FROM people WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise LoginRefused(f"{name!r} is no longer a person of this dashboard")
        return key_from_hex(row[0])

    def remember(self, key: str, value: str) -> None:
        with self._db(create=True) as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))

    def recalled(self, key: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    # -- the person's side (the dashboard) -------------------------------------------

    def any_people(self) -> bool:
        with self._db() as db:
            return (
                db.execute("SELECT 1 FROM people WHERE password IS NOT NULL").fetchone() is not None
            )

    def invited(self, token: str | None) -> str:
        """The name an invitation token is for; LoginRefused when it is wrong, used
        or expired (an expired one is deleted)."""
        with self._db() as db:
            row = db.execute(
                "SELECT name, expires FROM invitations WHERE token_hash = ?",
                (_hash(token or ""),),
            ).fetchone()
            if row is not None and row[1] <= self.clock():
                db.execute("DELETE FROM invitations WHERE token_hash = ?", (_hash(token or ""),))
                row = None
        if row is None:
            raise LoginRefused(
                "this invitation is wrong, used or expired: ask for a new one "
                "(trestle people invite NAME)"
            )
        return str(row[0])

    def accept(self, token: str | None, password: str) -> Login:
        """Set the invited person's password, use the invitation up, end the person's
        earlier sessions, forget their browsers and log them in."""
        name = self.invited(token)
        check_password(password)
        hashed = hash_password(password)  # outside the transaction: it takes a while
        with self._db() as db:
            used = db.execute(
                "DELETE FROM invitations WHERE token_hash = ?", (_hash(token or ""),)
            ).rowcount
            if not used:  # accepted at the same moment elsewhere
                raise LoginRefused("this invitation was used already: ask for a new one")
            db.execute(
                "UPDATE people SET password = ?, joined = ? WHERE name = ?",
                (hashed, self.clock(), name),
            )
            db.execute("DELETE FROM sessions WHERE name = ?", (name,))
            db.execute("DELETE FROM devices WHERE name = ?", (name,))
            db.execute("DELETE FROM failures WHERE name = ?", (name,))
            return self._open_session(db, name, device=None)

    def login(self, name: str, password: str, device: str | None = None) -> Login:
        """A session for ``name`` and the right password; LoginRefused otherwise (the
        same sentence for an unknown name and a wrong password).

        ``device`` is the token an earlier login gave this browser (``Login.device``).
        Wrong passwords are counted per name, and past :data:`FAILURES_MOST` the name is
        refused; one sent with a device token of the name's counts against that device
        alone, so a lockout anyone can cause does not hold back the person's own
        browser, and a stolen token buys no more guesses than a lockout allows."""
        now = self.clock()
        with self._db() as db:
            for table in ("failures", "device_failures"):
                db.execute(f"DELETE FROM {table} WHERE at <= ?", (now - LOCKOUT,))
            db.execute("DELETE FROM devices WHERE expires <= ?", (now,))
            known = None
            if (
                device
                and db.execute(
                    "SELECT 1 FROM devices WHERE token_hash = ? AND name = ?", (_hash(device), name)
                ).fetchone()
            ):
                known = _hash(device)
            # the device's own wrong passwords, or the name's
            table, column, value = (
                ("device_failures", "device", known) if known else ("failures", "name", name)
            )
            failed = db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (value,)
            ).fetchone()
            if failed[0] >= FAILURES_MOST:
                raise LoginRefused(
                    f"too many wrong passwords for {name!r}"
                    + (" from this browser" if known else "")
                    + f": try again in {LOCKOUT / 60:.0f} minutes, or ask for a new invitation"
                )
            row = db.execute("SELECT password FROM people WHERE name = ?", (name,)).fetchone()
            stored = row[0] if row is not None else None
            # an unknown name costs what a known one does: the time tells nothing. Checked
            # inside the write transaction, so guesses sent at once are counted one by
            # one and no more than FAILURES_MOST get through
            right = verify_password(password, stored or _DUMMY)
            if stored is not None and right:
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (value,))
                return self._open_session(db, name, device=known)
            db.execute(f"INSERT INTO {table} VALUES (?, ?)", (value, now))  # kept: no raise
        raise LoginRefused("wrong name or password")

    def session(self, session_id: str, *, touch: bool = True) -> Login:
        """The live session with this id (its last use noted when ``touch``);
        LoginRefused saying why when there is none, and an ended one is deleted."""
        now = self.clock()
        digest = _hash(session_id)
        with self._db() as db:
            row = db.execute(
                "SELECT name, csrf, seen, expires FROM sessions WHERE id_hash = ?", (digest,)
            ).fetchone()
            if row is None:
                raise LoginRefused("not logged in: log in again at /login")
            name, csrf, seen, expires = row
            why = None
            if now >= expires:
                hours = self.lifetimes.absolute / 3600
                why = f"your session ended {hours:g} h after you logged in: log in again at /login"
            elif now - seen >= self.lifetimes.idle:
                minutes = self.lifetimes.idle / 60
                why = (
                    f"your session ended after {minutes:g} minutes without use: log in again "
                    "at /login"
                )
            if why is not None:
                db.execute("DELETE FROM sessions WHERE id_hash = ?", (digest,))
            elif touch and now - seen >= SEEN_EVERY:
                db.execute("UPDATE sessions SET seen = ? WHERE id_hash = ?", (now, digest))
        if why is not None:  # raised once the deletion is committed
            raise LoginRefused(why)
        return Login(session_id, str(name), str(csrf))

    def end(self, session_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE id_hash = ?", (_hash(session_id),))

    # -- the file ----------------------------------------------------------------------

    def _open_session(self, db: sqlite3.Connection, name: str, *, device: str | None) -> Login:
        """A new session of ``name``, and a new device token for its browser, which
        replaces the one it came with (the hash ``device``; None: it had none)."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        login = Login(secrets.token_urlsafe(32), name, secrets.token_urlsafe(32), device=token)
        db.execute(
            "DELETE FROM sessions WHERE expires <= ? OR seen <= ?", (now, now - self.lifetimes.idle)
        )
        db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
            (_hash(login.id), name, login.csrf, now, now, now + self.lifetimes.absolute),
        )
        db.execute("DELETE FROM devices WHERE token_hash IS ?", (device,))
        db.execute(
            "INSERT INTO devices VALUES (?, ?, ?)",
            (_hash(token), name, now + DEVICE_LIFETIME),
        )
        db.execute(  # the latest logins' browsers only
            "DELETE FROM devices WHERE name = ? AND token_hash NOT IN (SELECT token_hash FROM "
            "devices WHERE name = ? ORDER BY expires DESC, rowid DESC LIMIT ?)",
            (name, name, DEVICES_MOST),
        )
        return login

    def _known(self, db: sqlite3.Connection, name: str) -> None:
        if db.execute("SELECT 1 FROM people WHERE name = ?", (name,)).fetchone() is None:
            known = ", ".join(r[0] for r in db.execute("SELECT name FROM people ORDER BY name"))
            raise ConfigError(
                f"{self.path}: no person {name!r} (people: {known or 'none'}; "
                "trestle people invite NAME adds one)"
            )

    def _unreadable(self, exc: Exception) -> StoreError:
        return StoreError(
            f"{self.path}: the dashboard's accounts cannot be read ({exc}); restore the "
            "file from a backup, or move it away and invite the people again "
            "(`trestle people invite NAME`)"
        )

    @contextmanager
    def _db(self, *, create: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction on the file; made (owner-only) when ``create``. Without it,
        a missing file reads as an empty one."""
        if not self.path.exists():
            if not create:
                with _empty() as db:
                    yield db
                return
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            os.chmod(self.path, 0o600)  # the keys and hashes in it are this user's alone
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:  # a directory where the file should be
            raise self._unreadable(exc) from None
        try:
            try:
                db.execute("PRAGMA foreign_keys = ON")
                db.execute("BEGIN IMMEDIATE")
                _migrate(db)
            except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
                if "locked" in str(exc):  # busy past the wait: nothing wrong with the file
                    raise
                raise self._unreadable(exc) from None
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()


@contextmanager
def _empty() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    try:
        _migrate(db)
        yield db
    finally:
        db.close()


def _migrate(db: sqlite3.Connection) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
        for statement in filter(str.strip, sql.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {number}")


def check_name(name: str) -> None:
    if NAME.fullmatch(name) is None:
        raise ConfigError(
            f"name {name!r}: expected a lowercase letter, then up to 31 lowercase letters, "
            "digits, dots, dashes or underscores (like alice or ops.bob)"
        )


def check_password(password: str) -> None:
    if not PASSWORD_LEAST <= len(password) <= PASSWORD_MOST:
        raise LoginRefused(
            f"the password must be {PASSWORD_LEAST} to {PASSWORD_MOST} characters long"
        )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` (from :func:`hash_password`) hashes."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        given = _scrypt(password[:PASSWORD_MOST], bytes.fromhex(salt), int(n), int(r), int(p))
        return kind == "scrypt" and hmac.compare_digest(given, bytes.fromhex(digest))
    except ValueError:
        return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=32,
        maxmem=64 * 1024 * 1024,
    )


def _hash(token: str) -> str:
    """How a token is stored: a random 32-byte token needs no salt or stretching."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


# what an unknown name's password is checked against, so it takes as long as a known one
_DUMMY = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * 16}${'00' * 32}"
