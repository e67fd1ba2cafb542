"""Which store a command opens, and which run a RUN argument names.

The rule (the README and docs/architecture.md say it too):

- A store is an SQLite file's path or a ``postgresql://`` URL; ``--store`` and
  ``$TRESTLE_STORE`` are read as either by :func:`trestle.store.location.store_where`.
- ``trestle run`` and ``trestle agent`` record the run in ``--store``, else
  ``$TRESTLE_STORE``, else ``.trestle/trestle.db`` in the run's workspace; they print
  where the store is and remember it in the user's index of recent stores.
- A command that reads uses ``--store``, else ``$TRESTLE_STORE``, else the nearest
  ``.trestle/trestle.db`` from the current directory upward. It never creates a store:
  with none there it says where it looked (exit 8).
- A command given a RUN looks there too, and when the run is not there (or no store
  is), in the recent stores, newest first; a remembered database that does not answer
  within :data:`RECENT_CONNECT_TIMEOUT` seconds is passed over like a missing file.
  RUN may be a unique tail of the run's id.

Messages name a store by :func:`~trestle.store.location.store_name`: a URL without its
password, which a suggested ``--store`` still opens where the password comes from
``$PGPASSWORD`` or ``~/.pgpass``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from trestle.core.errors import NoStoreError, StoreError, TrestleError, UnknownRunError
from trestle.presentation.wording import visible
from trestle.store.base import Store
from trestle.store.location import (
    DEFAULT_STORE,
    STORE_ENV,
    RecentStores,
    is_store_url,
    nearest_store,
    open_store,
    recent_stores_file,
    store_name,
    store_where,
    where_shown,
)

# seconds a remembered database may take to answer a lookup before it is passed over
RECENT_CONNECT_TIMEOUT = 3
# stores an unknown RUN's message names before it says how many more it looked in
STORES_NAMED = 5


def chosen_store(explicit: str | Path | None) -> str | Path | None:
    """``--store``, else ``$TRESTLE_STORE``, else None (look for one)."""
    if explicit is not None:
        return store_where(explicit)
    env = os.environ.get(STORE_ENV)
    return store_where(env) if env else None


def looked_for(here: Path) -> str:
    return f"looked for {DEFAULT_STORE} in {here} and every directory above it"


def reading_store(explicit: str | Path | None) -> str | Path:
    """The store a command that reads across runs uses; NoStoreError if there is none."""
    chosen = chosen_store(explicit)
    if chosen is not None:
        return chosen
    here = Path.cwd()
    found = nearest_store(here)
    if found is not None:
        return found
    recent = [w for w in RecentStores().stores() if is_store_url(w) or Path(w).is_file()]
    hint = f"; stores used recently: {_some(list(map(where_shown, recent)))}" if recent else ""
    raise NoStoreError(
        f"no store found: {looked_for(here)}; pass --store PATH or set ${STORE_ENV}{hint}"
    )


def started_in(found: Path) -> bool:
    """Whether a run of this account was started in the store file ``found``: it is
    among the stores remembered, in a file no step can reach."""
    try:
        real = found.resolve()
        return any(real == known.resolve() for known in RecentStores().paths())
    except (OSError, RuntimeError):
        return False


def unknown_store(found: Path) -> str:
    """Why the store ``found`` from the current directory upward is not driven."""
    return (
        f"{visible(str(found))} is the nearest store from here, but no run of yours was "
        f"started in it (it is not among the stores you used, listed in "
        f"{recent_stores_file()}): a step can write a file like it anywhere in its "
        "workspace, holding a run whose python: steps would run in this process; if it is "
        f"yours, name it: --store PATH (or ${STORE_ENV})"
    )


def run_in(store: Store, run: str) -> str | None:
    """The id of the run ``run`` names in ``store`` (its id or a unique tail), or None.

    Raises:
        UnknownRunError: the tail matches more than one run; names them.
    """
    ids = [row.run_id for row in store.runs()]
    if run in ids:
        return run
    tails = [run_id for run_id in ids if run_id.endswith(run)] if run else []
    if len(tails) > 1:
        raise UnknownRunError(_ambiguous(run, [(store, t) for t in tails]))
    return tails[0] if tails else None


def _ambiguous(run: str, found: list[tuple[Store, str]]) -> str:
    listed = ", ".join(f"{run_id} (in {store_name(store)})" for store, run_id in found)
    return f"run {run!r} is ambiguous: it matches {len(found)} runs: {listed}; give more of the id"


def _recent_besides(here: Path | None) -> list[str | Path]:
    seen: set[str | Path] = {here.resolve()} if here is not None else set()
    stores: list[str | Path] = []
    for where in RecentStores().stores():
        if isinstance(where, str):
            if where not in seen:
                seen.add(where)
                stores.append(where)
            continue
        with suppress(OSError):
            if where.is_file() and where.resolve() not in seen:
                seen.add(where.resolve())
                stores.append(where)
    return stores


def _open_recent(where: str | Path) -> Store:
    """A remembered store, opened for a lookup. A database that does not answer within
    :data:`RECENT_CONNECT_TIMEOUT` seconds is a StoreError, like one that refuses: the
    attempt goes on in a daemon thread, which the command does not wait for (a store
    it opens too late is closed when the process ends)."""
    if isinstance(where, Path):
        return open_store(where, create=False)
    outcome: list[Store | BaseException] = []
    answered = threading.Event()

    def attempt() -> None:
        try:
            outcome.append(open_store(where, create=False))
        except BaseException as exc:  # handed to the waiting thread, which raises it
            outcome.append(exc)
        answered.set()

    threading.Thread(target=attempt, name="trestle-recent-store", daemon=True).start()
    if not answered.wait(RECENT_CONNECT_TIMEOUT):
        raise StoreError(f"{where_shown(where)}: no answer within {RECENT_CONNECT_TIMEOUT} seconds")
    opened = outcome[0]
    if isinstance(opened, BaseException):
        raise opened
    return opened


@contextmanager
def store_with_run(
    explicit: str | Path | None, run: str, *, driving: bool = False
) -> Iterator[tuple[Store, str]]:
    """The store holding the run ``run`` names, opened, and the run's full id.

    ``driving``: the command runs the run's work or changes its workspace (``resume``,
    ``rewind``), so the nearest store from here is looked in only if a run of this
    account was started in it (:func:`unknown_store` says why); others read any."""
    store, run_id = _find(explicit, run, driving=driving)
    try:
        yield store, run_id
    finally:
        store.close()


def _find(explicit: str | Path | None, run: str, *, driving: bool) -> tuple[Store, str]:
    if not run.strip():  # every id ends with "": it would match them all, or none
        raise UnknownRunError("RUN is empty: give a run's id or a unique tail of it")
    chosen = chosen_store(explicit)
    if chosen is not None:
        store = open_store(chosen, create=False)
        try:
            found = run_in(store, run)
            if found is None:
                store.run(run)  # names the run and the store, with a near miss if any
            return store, found or run
        except BaseException:
            store.close()
            raise
    here = Path.cwd()
    nearest = nearest_store(here)
    passed_over = None
    if driving and nearest is not None and not started_in(nearest):
        passed_over, nearest = nearest, None  # looked for in the stores you used instead
    recent = _recent_besides(nearest)
    if nearest is None and not recent:
        if passed_over is not None:
            raise NoStoreError(unknown_store(passed_over))
        raise NoStoreError(
            f"no store found for run {run!r}: {looked_for(here)}, and no run was started "
            f"recently; pass --store PATH or set ${STORE_ENV}"
        )
    # the nearest store first, then the recent ones, newest first: an exact id wins,
    # else a tail that only one run in all of them ends with
    opened: list[Store] = []
    tails: list[tuple[Store, str]] = []
    try:
        for where in [nearest, *recent] if nearest is not None else recent:
            try:
                store = open_store(where, create=False) if where == nearest else _open_recent(where)
            except TrestleError:
                if where == nearest:
                    raise
                continue  # a recent store that is gone, damaged or down is not this run's
            opened.append(store)
            ids = _ids(store, required=where == nearest)
            if run in ids:
                return _keep(store, opened), run
            tails += [(store, run_id) for run_id in ids if run and run_id.endswith(run)]
        if len(tails) == 1:
            return _keep(tails[0][0], opened), tails[0][1]
        if tails:
            raise UnknownRunError(_ambiguous(run, tails))
        passed = f"; not looked in: {unknown_store(passed_over)}" if passed_over else ""
        raise UnknownRunError(
            f"no run {run!r} in the nearest store or the stores used recently "
            f"(looked in {_looked_in(opened)}); `trestle runs --store PATH` lists a store's "
            f"runs{passed}"
        )
    except BaseException:
        for store in opened:
            store.close()
        raise


def _looked_in(opened: list[Store]) -> str:
    names = [store_name(s) for s in opened]
    return _some(names) if names else "no store that could be read"


def _some(names: list[str]) -> str:
    """The first :data:`STORES_NAMED` stores by name, and how many more: the index
    keeps up to 500, and a message naming them all would bury its point."""
    more = len(names) - STORES_NAMED
    if more <= 0:
        return ", ".join(names)
    return (
        f"{', '.join(names[:STORES_NAMED])} and {more} more used recently, listed in "
        f"{recent_stores_file()}"
    )


def _ids(store: Store, *, required: bool) -> list[str]:
    try:
        return [row.run_id for row in store.runs()]
    except TrestleError:
        if required:
            raise
        return []


def _keep(store: Store, opened: list[Store]) -> Store:
    for other in opened:
        if other is not store:
            other.close()
    return store
