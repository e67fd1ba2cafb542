"""A local run on a PostgreSQL store, its driver killed on one host, taken up on another.

Real ``trestle run`` drivers, real step processes, a real PostgreSQL server. The far
driver runs in a pid namespace and under a host name of its own (``unshare``), as on
another machine: the run's lease names that host, so the near side waits for it to
expire, as it would for a machine that went away.

- ``trestle resume`` on the near side cannot look for the killed attempt's processes:
  it runs no check and re-runs nothing, and escalates the step naming the host, the
  driver's pid and the idempotency key; whether the step's processes outlived their
  driver there (an orphan, still running) or died with its namespace. The operator
  does what the message says, and the run ends with each effect once;
- ``trestle cancel`` on the near side says plainly what it cannot end there;
- killed and resumed on one host, a run is probed as before: its leftovers looked
  for, its checks run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from forked_cli import run_trestle
from test_cli import cli_env, flat
from trestle.core.events import (
    EVENT_ADAPTER,
    AnyEvent,
    Event,
    Place,
    RunCreated,
    RunResumed,
    StepEscalated,
    StepProbed,
    StepProbeStarted,
    StepStarted,
    idempotency_key,
)
from trestle.core.plan import Plan
from trestle.core.state import fold
from trestle.execution.places import here, out_of_sight, unseen
from trestle.execution.processes import KEY_VAR, leftovers, process_view
from trestle.store.postgres import PostgresStore

E = TypeVar("E", bound=Event)
# the step writes its effect, then works on: killed mid-step, its check would pass
PLAN = """\
goal: one database, two hosts
steps:
  - id: slow
    run: echo slow >> effects.log; sleep 60; echo late >> effects.log
    timeout: 90
    verify: [{file_contains: effects.log, regex: "^slow$"}]
  - id: after
    needs: [slow]
    run: echo after >> effects.log
"""


def far(host: str, *, init: bool) -> tuple[str, ...]:
    """A command prefix that runs a driver as on another host: a pid namespace (and so
    a ``/proc``) and a host name of its own. ``init``: the driver is the namespace's
    first process, so every process in it dies with it; otherwise a shell is, and the
    step's processes outlive the driver as orphans there."""
    if shutil.which("unshare") is None:
        pytest.fail("no `unshare` (util-linux) to give a driver a pid namespace of its own")
    user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
    then = 'hostname "$0" && exec "$@"' if init else 'hostname "$0" && "$@"; sleep 300'
    return ("unshare", *user, "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", then, host)


class Site:
    """A run's workspace, its driver started far away, and the store they share."""

    def __init__(self, root: Path, url: str, host: str, *, init: bool) -> None:
        self.url, self.host = url, host
        self.dir = root / host
        self.dir.mkdir()
        (self.dir / "plan.yaml").write_text(PLAN)
        argv = [sys.executable, "-m", "trestle", "run", "plan.yaml", "--store", url, "--no-live"]
        self.outer = subprocess.Popen(
            [*far(host, init=init), *argv],
            cwd=self.dir,
            env=cli_env(TRESTLE_SANDBOX="off"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.init = init
        self.run_id = ""

    def effects(self) -> list[str]:
        log = self.dir / "effects.log"
        return log.read_text().split() if log.exists() else []

    def driver(self) -> int:
        """The driver's pid as this namespace sees it: the namespace's first process
        (under ``unshare``), or that one's only child."""
        first = _children(self.outer.pid)[0]
        return first if self.init else _children(first)[0]

    def kill_driver(self, store: PostgresStore) -> None:
        """Once its step has begun, SIGKILL the driver (only the driver)."""
        deadline = time.monotonic() + 60
        while self.effects() != ["slow"]:
            assert self.outer.poll() is None and time.monotonic() < deadline, "no step ran"
            time.sleep(0.05)
        [row] = [r for r in store.runs() if Path(r.workspace) == self.dir]
        self.run_id = row.run_id
        os.kill(self.driver(), signal.SIGKILL)

    def trestle(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``trestle`` typed on this host (the near one)."""
        return run_trestle(
            [*args, "--store", self.url],
            cwd=self.dir,
            env=cli_env(TRESTLE_SANDBOX="off"),
            timeout=120,
        )

    def close(self) -> None:
        # the namespace's first process: everything in the namespace dies with it
        for first in _children(self.outer.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(first, signal.SIGKILL)
        self.outer.wait(30)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    made = PostgresStore(postgres_url)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def sites(tmp_path: Path, postgres_url: str) -> Iterator[list[Site]]:
    made: list[Site] = []
    try:
        yield made
    finally:
        for site in made:
            site.close()


def events(store: PostgresStore, run_id: str) -> list[AnyEvent]:
    return [s.event for s in store.events(run_id)]


def of_step(found: list[AnyEvent], kind: type[E], step: str) -> list[E]:
    return [e for e in found if isinstance(e, kind) and getattr(e, "step", None) == step]


def wait_for_lease(store: PostgresStore, run_id: str) -> None:
    """Until the dead driver's lease expires (its host, not this one, could tell it
    died)."""
    lease = store.lease(run_id)
    assert lease is not None
    time.sleep(max(0.0, lease.expires_at - time.time()) + 0.2)


# --- resumed on another host --------------------------------------------------------------


@pytest.mark.slow
def test_a_run_killed_on_another_host_is_escalated_there_not_probed_here(
    tmp_path: Path, postgres_url: str, store: PostgresStore, sites: list[Site]
) -> None:
    orphaned = Site(tmp_path, postgres_url, "far-a", init=False)
    sites.append(orphaned)
    perished = Site(tmp_path, postgres_url, "far-b", init=True)
    sites.append(perished)
    for site in sites:
        site.kill_driver(store)
    key = idempotency_key(orphaned.run_id, "slow", 1)
    assert leftovers(key, None), "the orphan's step did not outlive its driver"
    for site in sites:
        wait_for_lease(store, site.run_id)

    for site in sites:
        [started] = of_step(events(store, site.run_id), StepStarted, "slow")
        assert started.v == 2 and started.ran_on is not None
        assert started.ran_on.host == site.host and started.ran_on.view != process_view()
        resumed = site.trestle("resume", site.run_id, "--no-live")
        said = flat(resumed.stdout)
        assert resumed.returncode == 3, (resumed.stdout, resumed.stderr)  # a human decides
        found = events(store, site.run_id)
        # no leftover looked for, no check run, nothing re-run
        [probed] = of_step(found, StepProbed, "slow")
        assert (probed.leftovers, probed.passed, probed.checks) == ("unseen", False, ())
        assert len(of_step(found, StepStarted, "slow")) == 1
        assert not of_step(found, StepStarted, "after")
        [escalated] = of_step(found, StepEscalated, "slow")
        key = idempotency_key(site.run_id, "slow", 1)
        where = f"on host {site.host!r} (driver pid {started.ran_on.pid})"
        assert where in escalated.reason, escalated.reason
        assert f"On {site.host!r}, end every process whose environment holds" in (escalated.reason)
        assert f"{KEY_VAR}={key}" in escalated.reason
        assert site.host in said and key in said, said
        assert site.effects() == ["slow"]

    # the orphan runs on, untouched: this host could not have seen it on another
    key = idempotency_key(orphaned.run_id, "slow", 1)
    assert leftovers(key, None)
    # the operator does what the message says: on that host, ends what holds the key,
    # then retries; the step's check finds its work done, and it is not run again
    orphaned.close()
    assert not leftovers(key, None)
    for site in sites:
        retried = site.trestle("retry", site.run_id, "slow", "--reason", "nothing of it runs")
        assert retried.returncode == 0, retried.stdout + retried.stderr
        done = site.trestle("resume", site.run_id, "--no-live")
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert site.effects() == ["slow", "after"]
        assert len(of_step(events(store, site.run_id), StepStarted, "slow")) == 1


# --- cancelled from another host ----------------------------------------------------------


@pytest.mark.slow
def test_a_cancel_from_another_host_says_what_it_cannot_end(
    tmp_path: Path, postgres_url: str, store: PostgresStore, sites: list[Site]
) -> None:
    site = Site(tmp_path, postgres_url, "far-c", init=False)
    sites.append(site)
    site.kill_driver(store)
    key = idempotency_key(site.run_id, "slow", 1)
    wait_for_lease(store, site.run_id)

    cancelled = site.trestle("cancel", site.run_id, "--reason", "wrong day")
    said = flat(cancelled.stdout)
    assert cancelled.returncode == 0, (cancelled.stdout, cancelled.stderr)
    assert f"run {site.run_id} cancelled: wrong day" in said
    [started] = of_step(events(store, site.run_id), StepStarted, "slow")
    assert started.ran_on is not None
    assert (
        f"NOT ENDED: step 'slow': attempt 1 ran on host 'far-c' (driver pid "
        f"{started.ran_on.pid}), whose processes cannot be seen or ended from here; "
        f"on 'far-c', end every process whose environment holds {KEY_VAR}={key}"
    ) in said, said
    assert leftovers(key, None), "a process of another host's was ended from here"
    state = fold(events(store, site.run_id))
    assert state.finished == "cancelled" and state.cancelled is not None


# --- killed and resumed on one host --------------------------------------------------------


def test_a_run_killed_and_resumed_on_one_host_is_probed_as_before(
    tmp_path: Path, postgres_url: str, store: PostgresStore
) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN.replace("sleep 60", "sleep 1"))
    driver = subprocess.Popen(
        [sys.executable, "-m", "trestle", "run", "plan.yaml", "--store", postgres_url],
        cwd=tmp_path,
        env=cli_env(TRESTLE_SANDBOX="off"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "effects.log").exists():
        assert driver.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    [row] = store.runs()

    resumed = run_trestle(
        ["resume", row.run_id, "--store", postgres_url],
        cwd=tmp_path,
        env=cli_env(TRESTLE_SANDBOX="off"),
        timeout=120,
    )
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    found = events(store, row.run_id)
    [started] = of_step(found, StepStarted, "slow")
    assert started.ran_on == Place(host=here().host, pid=driver.pid, view=process_view())
    # its leftovers were looked for here, then its check ran and found the work done
    [probed] = of_step(found, StepProbed, "slow")
    assert probed.leftovers in ("none", "finished", "killed") and probed.passed
    assert (tmp_path / "effects.log").read_text().split() == ["slow", "after"]


# --- the parts ----------------------------------------------------------------------------


def test_a_start_recorded_before_places_is_probed_where_the_driver_runs() -> None:
    """An old store's start (v1, no place) reads as place unknown: a local driver looks
    for its leftovers where it runs, as it always did; a Temporal worker does not."""
    old = EVENT_ADAPTER.validate_json(
        '{"v": 1, "kind": "step_started", "at": 1.0, "step": "s", "attempt": 1, '
        '"key": "r/s/1", "gate": null}'
    )
    assert isinstance(old, StepStarted) and old.ran_on is None
    plan = Plan.model_validate({"goal": "g", "steps": [{"id": "s", "run": "true"}]})
    state = fold(
        [
            RunCreated(at=0.0, run_id="r", plan=plan, workspace="/w"),
            old,
            RunResumed(at=2.0, owner="o"),
        ]
    )
    st = state.steps["s"]
    assert st.status == "unknown" and st.ran_on is None
    assert not unseen(st, "any view", unplaced=False)
    probe = StepProbeStarted(at=3.0, step="s", reason="unknown_outcome")
    assert out_of_sight(state, probe, "any view", unplaced=True)
