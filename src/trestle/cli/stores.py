"""Which store a command opens, and which run a RUN argument names.

The rule (the README and docs/architecture.md say it too):

- ``trestle run`` and ``trestle agent`` record the run in ``--store``, else
  ``$TRESTLE_STORE``, else ``.trestle/trestle.db`` in the run's workspace; they print
  the store's path and remember it in the user's index of recent stores.
- A command that reads uses ``--store``, else ``$TRESTLE_STORE``, else the nearest
  ``.trestle/trestle.db`` from the current directory upward. It never creates a store:
  with none there it says where it looked (exit 8).
- A command given a RUN looks there too, and when the run is not there (or no store
  is), in the recent stores, newest first. RUN may be a unique tail of the run's id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from trestle.core.errors import NoStoreError, TrestleError, UnknownRunError
from trestle.store import STORE_ENV, RecentStores, SqliteStore, nearest_store
from trestle.store.location import DEFAULT_STORE


def chosen_store(explicit: Path | None) -> Path | None:
    """``--store``, else ``$TRESTLE_STORE``, else None (look for one)."""
    if explicit is not None:
        return explicit
    env = os.environ.get(STORE_ENV)
    return Path(env) if env else None


def _looked(here: Path) -> str:
    return f"looked for {DEFAULT_STORE} in {here} and every directory above it"


def reading_store(explicit: Path | None) -> Path:
    """The store a command that reads across runs uses; NoStoreError if there is none."""
    chosen = chosen_store(explicit)
    if chosen is not None:
        return chosen
    here = Path.cwd()
    found = nearest_store(here)
    if found is not None:
        return found
    recent = [p for p in RecentStores().paths() if p.is_file()]
    hint = f"; stores used recently: {', '.join(map(str, recent))}" if recent else ""
    raise NoStoreError(
        f"no store found: {_looked(here)}; pass --store PATH or set ${STORE_ENV}{hint}"
    )


def run_in(store: SqliteStore, run: str) -> str | None:
    """The id of the run ``run`` names in ``store`` (its id or a unique tail), or None.

    Raises:
        UnknownRunError: the tail matches more than one run; names them.
    """
    ids = [row.run_id for row in store.runs()]
    if run in ids:
        return run
    tails = [run_id for run_id in ids if run_id.endswith(run)] if run else []
    if len(tails) > 1:
        raise UnknownRunError(_ambiguous(run, [(store.path, t) for t in tails]))
    return tails[0] if tails else None


def _ambiguous(run: str, found: list[tuple[Path, str]]) -> str:
    listed = ", ".join(f"{run_id} (in {path})" for path, run_id in found)
    return f"run {run!r} is ambiguous: it matches {len(found)} runs: {listed}; give more of the id"


def _recent_besides(here: Path | None) -> list[Path]:
    seen = {here.resolve()} if here is not None else set()
    stores = []
    for path in RecentStores().paths():
        with suppress(OSError):
            if path.is_file() and path.resolve() not in seen:
                seen.add(path.resolve())
                stores.append(path)
    return stores


@contextmanager
def store_with_run(explicit: Path | None, run: str) -> Iterator[tuple[SqliteStore, str]]:
    """The store holding the run ``run`` names, opened, and the run's full id."""
    store, run_id = _find(explicit, run)
    try:
        yield store, run_id
    finally:
        store.close()


def _find(explicit: Path | None, run: str) -> tuple[SqliteStore, str]:
    chosen = chosen_store(explicit)
    if chosen is not None:
        store = SqliteStore(chosen, create=False)
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
    recent = _recent_besides(nearest)
    if nearest is None and not recent:
        raise NoStoreError(
            f"no store found for run {run!r}: {_looked(here)}, and no run was started "
            f"recently; pass --store PATH or set ${STORE_ENV}"
        )
    # the nearest store first, then the recent ones, newest first: an exact id wins,
    # else a tail that only one run in all of them ends with
    opened: list[SqliteStore] = []
    tails: list[tuple[SqliteStore, str]] = []
    try:
        for path in [nearest, *recent] if nearest is not None else recent:
            try:
                store = SqliteStore(path, create=False)
            except TrestleError:
                if path == nearest:
                    raise
                continue  # a recent store that is gone or damaged is not this run's
            opened.append(store)
            ids = _ids(store, required=path == nearest)
            if run in ids:
                return _keep(store, opened), run
            tails += [(store, run_id) for run_id in ids if run and run_id.endswith(run)]
        if len(tails) == 1:
            return _keep(tails[0][0], opened), tails[0][1]
        if tails:
            raise UnknownRunError(_ambiguous(run, [(s.path, r) for s, r in tails]))
        where = ", ".join(str(s.path) for s in opened) or "no store that could be read"
        raise UnknownRunError(
            f"no run {run!r} in the nearest store or the stores used recently "
            f"(looked in {where}); `trestle runs --store PATH` lists a store's runs"
        )
    except BaseException:
        for store in opened:
            store.close()
        raise


def _ids(store: SqliteStore, *, required: bool) -> list[str]:
    try:
        return [row.run_id for row in store.runs()]
    except TrestleError:
        if required:
            raise
        return []


def _keep(store: SqliteStore, opened: list[SqliteStore]) -> SqliteStore:
    for other in opened:
        if other is not store:
            other.close()
    return store
