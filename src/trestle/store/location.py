"""Where stores are: the one a run starts in, and where commands look for one.

A store is named by a path (an SQLite file) or by a ``postgresql://`` URL (a
PostgreSQL database, :mod:`trestle.store.postgres`): :func:`open_store` opens either.
Where a person names a store (``--store``, ``$TRESTLE_STORE``), the text becomes a
store's location through :func:`store_where` alone: a URL stays text (a ``Path`` would
fold its ``//``), anything else is a path.

A run is recorded in ``--store``, else ``$TRESTLE_STORE``, else
``.trestle/trestle.db`` in its workspace. A command that reads looks in ``--store``,
else ``$TRESTLE_STORE``, else the nearest ``.trestle/trestle.db`` from the current
directory upward (as git finds ``.git``; only files are found this way); a command
given a RUN also looks in the stores runs were started in recently, files and URLs,
which a small user-level index remembers (:class:`RecentStores`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from trestle.core.errors import ConfigError
from trestle.support.home import user_dir
from trestle.support.whole_files import write_whole

if TYPE_CHECKING:
    from trestle.store.base import Store

STORE_ENV = "TRESTLE_STORE"
DEFAULT_STORE = Path(".trestle") / "trestle.db"
# enough that stores still in use are not pushed out by newer ones (a store whose
# file is gone gives its place up first; see RecentStores.remember)
RECENT_LIMIT = 500
URL_SCHEMES = ("postgresql://", "postgres://")
# any other URL (mysql://, sqlite:///x.db) would otherwise be read as a relative path
# and a store created under a directory named after the scheme
_ANY_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_URL_PASSWORD = re.compile(r"^([^/]*//[^/@:]*):[^/@]*@")


def is_store_url(where: str | Path) -> bool:
    """True when ``where`` names a PostgreSQL database rather than an SQLite file."""
    return isinstance(where, str) and where.startswith(URL_SCHEMES)


def store_where(text: str | Path) -> str | Path:
    """The store ``text`` names, as :func:`open_store` takes it: a ``postgresql://``
    URL stays text, anything else is a path.

    Raises:
        ConfigError: ``text`` is a URL of another kind (``mysql://``, ``sqlite://``).
    """
    if isinstance(text, Path) or is_store_url(text):
        return text
    if not text.strip():  # Path("") is the current directory, never meant
        raise ConfigError(
            "the store's name is empty: give an SQLite file's path or a postgresql:// URL"
        )
    scheme = _ANY_URL.match(text)
    if scheme is not None:
        shown = _URL_PASSWORD.sub(r"\1@", text)  # never print a password
        raise ConfigError(
            f"store {shown!r}: {scheme.group(0)!r} URLs are not "
            "stores: name an SQLite store by its file's path (.trestle/trestle.db), a "
            "PostgreSQL one by a postgresql:// URL"
        )
    return Path(text)


def where_shown(where: str | Path) -> str:
    """How a message names a store it has not opened: a URL without its password (in
    the authority or as a ``password`` parameter), a path as given.

    What is left still opens the store wherever the password comes from elsewhere
    (``$PGPASSWORD``, ``~/.pgpass``), so a command a message suggests stays usable.
    """
    if not is_store_url(where):
        return str(where)
    try:
        from trestle.store.postgres import describe

        describe(str(where))
    except ImportError:
        pass  # without the extra: as written, less the password read below
    except ConfigError:  # misread, the URL's parts may hold pieces of its password
        return "postgresql://... (a URL that cannot be read)"
    parts = urlsplit(str(where))
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}{at}{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = parts.query
    if any(key in ("password", "sslpassword") for key, _ in pairs):
        query = urlencode([(k, v) for k, v in pairs if k not in ("password", "sslpassword")])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def open_store(where: str | Path, *, create: bool = True) -> Store:
    """The store ``where`` names: a ``postgresql://`` URL, else an SQLite file's path.

    ``create=False`` never leaves a new store behind: a missing file is NoStoreError,
    a database without Trestle's tables is refused (see :mod:`trestle.store.postgres`).
    """
    if is_store_url(where):
        from trestle.store.postgres import PostgresStore

        return PostgresStore(str(where), create=create)
    from trestle.store.sqlite import SqliteStore

    return SqliteStore(Path(where), create=create)


def store_name(store: object) -> str:
    """How messages name a store: its file's absolute path, or its URL without the
    password."""
    where = getattr(store, "where", None)
    if isinstance(where, str):
        return where
    path = getattr(store, "path", None)
    return str(Path(path).absolute()) if isinstance(path, Path) else "the store"


def default_store(workspace: Path | None = None) -> str | Path:
    """``$TRESTLE_STORE`` (a path or URL) if set, else ``.trestle/trestle.db`` under
    the workspace."""
    env = os.environ.get(STORE_ENV)
    if env:
        return store_where(env)
    return (workspace or Path.cwd()) / DEFAULT_STORE


def nearest_store(start: Path) -> Path | None:
    """The ``.trestle/trestle.db`` in ``start`` or the nearest directory above it."""
    here = start.absolute()
    for directory in (here, *here.parents):
        candidate = directory / DEFAULT_STORE
        if candidate.is_file():
            return candidate
    return None


def recent_stores_file(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/trestle/stores``, else ``~/.local/state/trestle/stores``."""
    return user_dir("XDG_STATE_HOME", ".local/state", environ) / "trestle" / "stores"


class RecentStores:
    """The stores runs were started in, newest first, one a line: a file's absolute
    path, or a ``postgresql://`` URL kept as given.

    A convenience, never a source of truth: a missing, unreadable or corrupt file reads
    as no stores, lines that are neither absolute paths nor URLs are skipped, and a
    failure to write it is ignored (a run must not fail because the index could not be
    kept). Writes replace the file whole, readable by its owner alone (a URL may hold
    a password); of two processes writing at once, one's entry may be lost, which
    costs only a lookup.
    """

    def __init__(self, file: Path | None = None, *, limit: int = RECENT_LIMIT) -> None:
        self.file = file or recent_stores_file()
        self.limit = limit

    def stores(self) -> list[str | Path]:
        """The stores remembered, newest first: paths and URLs."""
        try:
            text = self.file.read_text(encoding="utf-8", errors="replace")
        except (OSError, ValueError):
            return []
        found: dict[str | Path, None] = {}  # a set that keeps the order: one lookup each
        for line in text.splitlines():
            line = line.strip()
            if not line or "\ufffd" in line or "\x00" in line:
                continue
            if is_store_url(line):
                found.setdefault(line)
            elif os.path.isabs(line):
                found.setdefault(Path(line))
        return list(found)[: self.limit]

    def paths(self) -> list[Path]:
        """The store files remembered, newest first."""
        return [where for where in self.stores() if isinstance(where, Path)]

    def remember(self, store: str | Path) -> None:
        """Put ``store`` first (bounded to ``limit`` entries), replacing the file whole.
        Past the limit, store files that no longer exist are let go before the oldest
        stores that do, so a run in a store still there is found however many stores
        were made (and removed) since."""
        store = store_where(store)
        if isinstance(store, Path):
            store = store.absolute()
        if any(c in str(store) for c in "\n\r"):  # one a line: it would be read as two
            return
        others = [s for s in self.stores() if s != store]
        if len(others) >= self.limit:
            others = [s for s in others if _still_there(s)] + [
                s for s in others if not _still_there(s)
            ]
        kept = [store, *others][: self.limit]
        with suppress(OSError, ValueError):
            self.file.parent.mkdir(parents=True, exist_ok=True)
            write_whole(self.file, "".join(f"{s}\n" for s in kept))


def _still_there(where: str | Path) -> bool:
    """A database (whose server is not asked) or a store file that still exists."""
    return not isinstance(where, Path) or where.is_file()
