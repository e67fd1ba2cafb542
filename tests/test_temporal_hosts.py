"""Temporal workers that share nothing but the Temporal address and a PostgreSQL store.

Each worker here has a working directory, a temporary directory and a home of its own
(the approval key copied into it, as a deployment gives every host the key): nothing is
shared but the run's workspace, which the steps act on. The real dev server, real
``trestle worker`` processes, a real PostgreSQL server:

- one worker SIGKILLed mid-step: the other, which can see the lost attempt's processes,
  probes it (its leftovers looked for, its checks run) and finishes the run; nothing
  ran twice, and the payloads too large for the history went through the store;
- the worker that takes over sees other processes (a pid namespace and a host name of
  its own, as another host would): it cannot look for what the lost attempt left, so
  it runs no check and re-runs nothing; the step is escalated, naming the host, the
  worker's pid and the idempotency key to look for there; the operator does what the
  message says and the run ends with each effect once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from temporalio.api.common.v1 import Payload

from forked_cli import Started, start_trestle
from temporal_helpers import Workers, perform_identities, wait_for
from test_cli import Cli, cli_env
from trestle.core.decider import decide
from trestle.core.errors import ConfigError, TrestleError
from trestle.core.events import (
    AnyEvent,
    EngineBinding,
    Event,
    Place,
    RunCreated,
    StepAttemptLost,
    StepEscalated,
    StepProbed,
    StepProbeStarted,
    StepReopened,
    StepStarted,
    idempotency_key,
)
from trestle.core.plan import Plan
from trestle.core.state import RunState, fold
from trestle.engines.temporal.blobs import (
    ENCODING,
    BlobCodec,
    BlobMissingError,
    Blobs,
    StoreBlobs,
    blobs_for,
)
from trestle.execution.places import out_of_sight
from trestle.execution.processes import KEY_VAR, process_view
from trestle.store.memory import InMemoryStore
from trestle.store.postgres import PostgresStore
from trestle.store.sqlite import SqliteStore
from trestle.trust.signing import decision_key

E = TypeVar("E", bound=Event)
HEARTBEAT = "2"  # seconds a silent worker keeps its attempt
# the plan: a file too large for the workflow's history to carry inline, then a step
# whose effect is one line, killed while it sleeps, then one more effect
NOTE = "n" * 6000
PLAN = f"""\
goal: two hosts, one database
steps:
  - id: note
    write: {{path: note.txt, content: "{NOTE}"}}
  - id: slow
    needs: [note]
    run: echo slow >> effects.log && sleep 6
    timeout: 40
    verify:
      - file_contains: effects.log
        text: slow
  - id: after
    needs: [slow]
    run: echo after >> effects.log
"""
# the host's own files: whatever points elsewhere in the test's environment is dropped
PRIVATE = ("TRESTLE_KEY_FILE", "TRESTLE_STORE", "TMPDIR", "TMP", "TEMP")


# --- the parts: hosts, the store, the workers ---------------------------------------------


class Host:
    """A directory standing for a machine: a working directory, ``TMPDIR`` and ``HOME``
    of its own, with the task queue's approval key in its default place there."""

    def __init__(self, root: Path, name: str, key: Path) -> None:
        self.root = root / name
        self.cwd, self.home, self.tmp = self.root / "work", self.root / "home", self.root / "tmp"
        for made in (self.cwd, self.home, self.tmp):
            made.mkdir(parents=True)
        keys = self.home / ".config" / "trestle"
        keys.mkdir(parents=True)
        shutil.copy2(key, keys / "approval.key")

    def env(self, url: str) -> dict[str, str]:
        env = {k: v for k, v in cli_env().items() if k not in PRIVATE and not k.startswith("XDG_")}
        env.update(HOME=str(self.home), TMPDIR=str(self.tmp), TRESTLE_STORE=url)
        env["TRESTLE_TEMPORAL_HEARTBEAT"] = HEARTBEAT
        return env


class Cluster:
    """A client host (where ``trestle run`` is typed), worker hosts, one shared
    workspace and one PostgreSQL store."""

    def __init__(self, root: Path, url: str, address: str) -> None:
        self.root, self.url = root, url
        key = root / "deployed.key"
        decision_key(key)  # the key a deployment hands every host
        self.workspace = root / "workspace"
        self.workspace.mkdir()
        self.client = Host(root, "client", key)
        self.hosts = [Host(root, f"host-{n}", key) for n in "ab"]
        cli = Cli(self.workspace, self.workspace / "unused.db")
        self.workers = Workers(cli, address)
        self.workers.env = self.client.env(url)  # the client's own, not the test's
        self._store: PostgresStore | None = None
        self._wrapped: list[Started] = []

    def start(self, host: Host, wrap: tuple[str, ...] = ()) -> Started:
        worker = self.workers.start(cwd=host.cwd, env=host.env(self.url), wrap=wrap)
        if wrap:
            self._wrapped.append(worker)
        return worker

    def events(self, run_id: str) -> list[AnyEvent]:
        return [s.event for s in self.db().events(run_id)]

    def db(self) -> PostgresStore:
        if self._store is None:
            self._store = PostgresStore(self.url, create=False)
        return self._store

    def run_id(self) -> str | None:
        try:
            runs = self.db().runs()
        except TrestleError:  # the run's command has not created the store yet
            self._store = None
            return None
        return runs[0].run_id if runs else None

    def close(self) -> None:
        # `unshare --fork` ignores SIGTERM while its child runs: stop the worker itself
        for wrapper in self._wrapped:
            children = Path(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children")
            for child in children.read_text().split() if children.exists() else ():
                os.kill(int(child), signal.SIGTERM)
        self.workers.stop()
        if self._store is not None:
            self._store.close()


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, address: str) -> Iterator[Cluster]:
    made = Cluster(tmp_path, postgres_url, address)
    try:
        yield made
    finally:
        made.close()


def start_run(cluster: Cluster) -> tuple[str, Started]:
    """``trestle run`` typed on the client host: it starts the run's workflow and
    follows it. The run's id, once its step ``slow`` has really begun on a worker."""
    plan = cluster.workspace / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    workers = cluster.workers
    following = start_trestle(
        ["run", plan, "--no-live", "--no-prompt", *workers.flags()],
        cwd=cluster.client.cwd,
        env=workers.env,
    )
    workers.following.append(following)
    wait_for(lambda: cluster.run_id() is not None, what="the run to be recorded")
    run_id = cluster.run_id()
    assert run_id is not None
    wait_for(lambda: running_under(f"{run_id}/slow") is not None, what="step slow to run")
    # the process holding the key may still be the sandbox or the shell starting: a worker
    # killed before the step's first effect would leave nothing to find
    wait_for(lambda: "slow" in effects(cluster), what="step slow's first effect")
    return run_id, following


def running_under(fragment: str) -> int | None:
    """The pid of a process whose idempotency key holds ``fragment`` (a step's command
    has begun, not just been scheduled)."""
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            text = environ.read_bytes()
        except OSError:
            continue
        if f"{KEY_VAR}=".encode() in text and fragment.encode() in text:
            return int(environ.parent.name)
    return None


def owner_of(pid: int, workers: list[Started]) -> Started:
    """The worker whose process tree ``pid`` is in (a step's command, maybe inside its
    sandbox, under the worker that runs it)."""
    by_pid = {w.pid: w for w in workers}
    seen = pid
    while seen > 1:
        if seen in by_pid:
            return by_pid[seen]
        stat = Path(f"/proc/{seen}/stat").read_bytes()
        seen = int(stat[stat.rfind(b")") + 2 :].split()[1])
    raise AssertionError(f"pid {pid} runs under no worker")


def effects(cluster: Cluster) -> list[str]:
    """The steps' effects so far, in order (none before the first)."""
    log = cluster.workspace / "effects.log"
    return log.read_text().split() if log.exists() else []


def blob_rows(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM trestle.blobs").fetchone()
    assert row is not None
    return int(row[0])


def of_step(events: list[AnyEvent], kind: type[E], step: str) -> list[E]:
    return [e for e in events if isinstance(e, kind) and getattr(e, "step", None) == step]


def assert_shared_nothing(cluster: Cluster) -> None:
    """No blob directory, and no store file, appeared anywhere: the store kept both."""
    assert not list(cluster.root.rglob("blobs")), "a blob directory was made"
    assert not list(cluster.root.rglob("*.db")), "a store file was made"
    assert blob_rows(cluster.url) > 0, "no payload went through the store"


# --- a worker killed mid-step, another that can see its processes ---------------------------


@pytest.mark.slow
def test_a_worker_killed_mid_step_is_replaced_by_one_sharing_only_the_database(
    cluster: Cluster,
) -> None:
    workers = [cluster.start(host) for host in cluster.hosts]
    for worker in workers:  # each says where its store and blobs are, password withheld
        said = cluster.workers.said[worker.pid]
        assert "; store postgresql://trestle@127.0.0.1:" in said
        assert said.rstrip().endswith("; blobs in the store"), said
        assert cluster.url.split("@")[0].split(":")[-1] not in said  # the password
    run_id, following = start_run(cluster)
    step_pid = running_under(f"{run_id}/slow")
    assert step_pid is not None
    lost = owner_of(step_pid, workers)
    survivor = next(w for w in workers if w is not lost)
    os.kill(lost.pid, signal.SIGKILL)
    lost.wait()

    out, err = following.communicate(timeout=90)
    assert following.returncode == 0, out + err
    # each effect once: the lost attempt was not run again
    assert effects(cluster) == ["slow", "after"]
    assert (cluster.workspace / "note.txt").read_text() == NOTE
    events = cluster.events(run_id)
    assert len(of_step(events, StepStarted, "slow")) == 1
    [gone] = of_step(events, StepAttemptLost, "slow")
    assert gone.ran_on is not None
    assert (gone.ran_on.pid, gone.ran_on.view) == (lost.pid, process_view())
    # the survivor sees the same processes: it looked for the leftovers, then checked
    [probed] = of_step(events, StepProbed, "slow")
    assert probed.reason == "unknown_outcome" and probed.passed
    assert probed.leftovers in ("none", "finished", "killed")
    assert "worker stopped answering" in out
    # the probe and the last step ran on the worker that was left
    blobs = StoreBlobs(cluster.db())
    identities = perform_identities(cluster.workers.address, run_id, blobs)
    assert [i.split("@")[0] for i in identities[-2:]] == [str(survivor.pid)] * 2
    assert_shared_nothing(cluster)


# --- the worker that takes over cannot see the lost attempt's processes --------------------


def elsewhere() -> tuple[str, ...]:
    """A command prefix that runs a worker as on another host: a pid namespace (and so
    a ``/proc``) and a host name of its own."""
    if shutil.which("unshare") is None:
        pytest.fail("no `unshare` (util-linux) to give a worker a pid namespace of its own")
    user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
    spell = 'hostname "$0" && exec "$@"'
    return ("unshare", *user, "--uts", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM",
            "sh", "-c", spell, "far-host")  # fmt: skip


@pytest.mark.slow
def test_a_lost_attempt_out_of_sight_is_escalated_naming_its_host(cluster: Cluster) -> None:
    near, far = cluster.hosts
    lost = cluster.start(near)
    run_id, following = start_run(cluster)  # slow runs on the only worker there is
    # killed before the other host's worker starts: a start slowed by a loaded machine
    # must not outlast the step, or the step ends on its worker and nothing is lost
    os.kill(lost.pid, signal.SIGKILL)
    lost.wait()
    cluster.start(far, wrap=elsewhere())

    out, err = following.communicate(timeout=90)
    assert following.returncode == 3, out + err  # waits on a human
    events = cluster.events(run_id)
    [gone] = of_step(events, StepAttemptLost, "slow")
    assert gone.ran_on is not None
    assert (gone.ran_on.host, gone.ran_on.pid) == (socket.gethostname(), lost.pid)
    [probed] = of_step(events, StepProbed, "slow")
    assert (probed.leftovers, probed.passed, probed.checks) == ("unseen", False, ())
    [escalated] = of_step(events, StepEscalated, "slow")
    key = idempotency_key(run_id, "slow", 1)
    host = socket.gethostname()
    assert f"on host {host!r} (worker pid {lost.pid})" in escalated.reason
    assert f"TRESTLE_IDEMPOTENCY_KEY={key}" in escalated.reason
    assert len(of_step(events, StepStarted, "slow")) == 1  # nothing re-ran it
    assert not of_step(events, StepStarted, "after")
    assert effects(cluster) == ["slow"]

    # the operator does what the message says: on that host, ends what holds the key
    # (the step's sleep, if it outlived its worker), then retries
    while (pid := running_under(key)) is not None:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    retried = cluster.workers.run("retry", run_id, "slow", "--reason", "nothing of it runs")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    wait_for(lambda: cluster.db().run(run_id).status == "succeeded", 60, "the run to finish")
    assert effects(cluster) == ["slow", "after"]  # its checks found it done: not re-run
    assert len(of_step(cluster.events(run_id), StepStarted, "slow")) == 1
    assert_shared_nothing(cluster)


# --- the parts, without the servers ---------------------------------------------------------


def test_blobs_are_kept_in_a_store_that_keeps_them_and_beside_a_file_otherwise(
    tmp_path: Path, postgres_url: str
) -> None:
    store = PostgresStore(postgres_url)
    try:
        kept = blobs_for(store)
        assert isinstance(kept, StoreBlobs) and kept.shown == "in the store"
        codec = BlobCodec(kept, threshold=64)
        large = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"z" * 1000 + b'"')
        [encoded] = asyncio.run(codec.encode([large]))
        assert encoded.metadata["encoding"] == ENCODING
        assert asyncio.run(codec.decode([encoded])) == [large]
        assert blob_rows(postgres_url) == 1
        missing = Payload(metadata={"encoding": ENCODING}, data=b"0" * 64)
        with pytest.raises(BlobMissingError, match="must use one store"):
            asyncio.run(codec.decode([missing]))
        digest = encoded.data.decode()
        store.put_blob("1" * 64, b"not those bytes")
        with pytest.raises(BlobMissingError, match="damaged"):
            kept.get("1" * 64)
        assert kept.get(digest)
    finally:
        store.close()
    sqlite = SqliteStore(tmp_path / "t.db")
    try:
        beside = blobs_for(sqlite)  # an SQLite store's blobs stay beside its file
    finally:
        sqlite.close()
    assert isinstance(beside, Blobs) and beside.root == tmp_path / "blobs"
    assert beside.shown == str(tmp_path / "blobs")
    with pytest.raises(ConfigError, match="a store every worker can reach"):
        blobs_for(InMemoryStore())


def lost(ran_on: Place | None, *, idempotent: bool = True) -> RunState:
    """A run whose step ``s`` (re-runnable unless told otherwise, with a check) was
    lost mid-attempt on the worker at ``ran_on``."""
    plan = Plan.model_validate(
        {
            "goal": "g",
            "steps": [
                {
                    "id": "s",
                    "run": "true",
                    "idempotent": idempotent,
                    "verify": [{"file_exists": "done"}],
                }
            ],
        }
    )
    on = EngineBinding(address="temporal:7233")  # a Temporal run: its attempts run on workers
    state = fold([RunCreated(at=0.0, run_id="r", plan=plan, workspace="/w", engine=on)])
    state.apply(StepStarted(at=1.0, step="s", attempt=1, key=idempotency_key("r", "s", 1)))
    state.apply(StepAttemptLost(at=2.0, step="s", attempt=1, why="gone", ran_on=ran_on))
    return state


HERE = Place(host="near", pid=41, view="v-near")
THERE = Place(host="far", pid=42, view="v-far")
PROBE = StepProbeStarted(at=3.0, step="s", reason="unknown_outcome")


def test_only_a_worker_that_sees_the_attempts_processes_looks_for_them() -> None:
    assert not out_of_sight(lost(HERE), PROBE, HERE.view, unplaced=True)
    assert out_of_sight(lost(THERE), PROBE, HERE.view, unplaced=True)
    assert out_of_sight(lost(None), PROBE, HERE.view, unplaced=True)  # its worker never said
    retry = StepProbeStarted(at=3.0, step="s", reason="before_retry")
    assert not out_of_sight(lost(THERE), retry, HERE.view, unplaced=True)  # checks only


@pytest.mark.parametrize("idempotent", [True, False])
def test_an_attempt_lost_out_of_sight_is_escalated_even_when_it_could_re_run(
    idempotent: bool,
) -> None:
    state = lost(THERE, idempotent=idempotent)
    [probe] = decide(state, 3.0)
    assert isinstance(probe, StepProbeStarted)
    state.apply(probe)
    state.apply(
        StepProbed(at=4.0, step="s", reason="unknown_outcome", passed=False, leftovers="unseen")
    )
    [escalated] = decide(state, 5.0)
    assert isinstance(escalated, StepEscalated)
    key = idempotency_key("r", "s", 1)
    assert escalated.reason.startswith("attempt 1 ran on host 'far' (worker pid 42)")
    assert f"On 'far', end every process whose environment holds {KEY_VAR}={key}" in (
        escalated.reason
    )
    state.apply(escalated)
    assert state.steps["s"].status == "escalated"
    # the human made sure, and retries: the step's checks run before anything re-runs
    state.apply(StepReopened(at=6.0, step="s", reason="nothing of it runs", by="op"))
    [looked] = decide(state, 7.0)
    assert isinstance(looked, StepProbeStarted) and looked.reason == "before_retry"


def test_a_lost_attempt_in_sight_is_probed_and_re_run_as_before() -> None:
    state = lost(HERE)
    state.apply(decide(state, 3.0)[0])
    state.apply(
        StepProbed(at=4.0, step="s", reason="unknown_outcome", passed=False, leftovers="none")
    )
    [again] = decide(state, 5.0)
    assert isinstance(again, StepStarted) and again.attempt == 2
