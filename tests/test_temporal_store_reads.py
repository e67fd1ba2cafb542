"""A Temporal worker reads the store beside its writes, not behind them.

Its activities wrote and read through one thread and one connection: a lease's renewal
waiting for a store another process held (up to 30 s) held back the load of every
attempt's run behind it, so no attempt began until the store was let go (seen as a run
of 64 steps whose commands waited four minutes for their start). The activities run
here as the worker calls them, over a real SQLite store held by a second connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from trestle.core.events import RunCreated
from trestle.engines.temporal.activities import TrestleActivities
from trestle.engines.temporal.shapes import LeaseAsk
from trestle.formats.planfile import parse_plan
from trestle.lifecycle.runs import create_run
from trestle.store import SqliteStore
from trestle.store.base import Owner


def test_a_run_loads_while_the_workers_lease_renewal_waits_for_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "trestle.db")
    plan = parse_plan("goal: g\nsteps:\n  - {id: one, run: 'true'}\n")
    run_id = create_run(store, plan, workspace=tmp_path)
    lease = store.acquire_lease(run_id, Owner(name="w", pid=0, host="h"), ttl=60, now=time.time())
    activities = TrestleActivities(store)
    held = sqlite3.connect(store.path, timeout=1)  # another process's transaction
    held.execute("BEGIN IMMEDIATE")

    async def load_beside_the_renewal() -> str:
        ask = LeaseAsk(run_id=run_id, owner="w", ttl=60, token=lease.token)
        renewing = asyncio.ensure_future(activities.renew(ask))
        await asyncio.sleep(0.5)
        assert not renewing.done()  # it waits for the store
        try:
            loaded = await asyncio.wait_for(activities.load(run_id), timeout=10)
            waited = not renewing.done()
        finally:
            held.rollback()
        await renewing  # and renews once the store is let go
        assert waited
        return loaded.state

    try:
        state = asyncio.run(load_beside_the_renewal())
    finally:
        held.close()
        activities.close()
    assert run_id in state
    assert isinstance(store.events(run_id)[0].event, RunCreated)
    assert store.lease(run_id) is not None
