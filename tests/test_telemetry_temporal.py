"""Traces of a run on the Temporal engine: its workers (real ``trestle worker``
processes on the real dev server) emit the spans of the batches they commit, from
their commit activity, never from workflow code; two workers' spans make one trace,
with no span twice, that the run's id names."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.proto")
pytest.importorskip("temporalio")

from temporal_helpers import Workers, dev_server
from test_cli import Cli, run_id_of
from trestle.telemetry.ids import trace_id_for
from trestle.testing.otlp import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.slow

PLAN = """\
    steps:
      - id: fetch
        run: echo a > a.txt
      - id: left
        needs: [fetch]
        run: echo left > left.txt
        verify: [{file_exists: left.txt}]
      - id: right
        needs: [fetch]
        run: exit 4
"""


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def test_temporal_workers_send_one_trace_of_the_run(tmp_path: Path, receiver: OtlpReceiver) -> None:
    cli = Cli(tmp_path, tmp_path / ".trestle" / "trestle.db")
    with dev_server() as address:
        workers = Workers(cli, address, TRESTLE_TEMPORAL_HEARTBEAT="2", **receiver.env())
        try:
            workers.start()
            workers.start()
            plan = cli.write("plan.yaml", PLAN)
            done = workers.run("run", plan, "--no-live", "--no-prompt", *workers.flags())
            assert done.returncode != 0, done.stdout + done.stderr  # 'right' fails
            run_id = run_id_of(done)

            def finished(spans: list[ReceivedSpan]) -> bool:
                return any(s.parent_id is None for s in spans)

            spans = receiver.wait_for(finished, timeout=30)
        finally:
            workers.stop()
    assert {s.trace_id for s in spans} == {f"{trace_id_for(run_id):032x}"}
    assert max(Counter(s.span_id for s in spans).values()) == 1
    ids = {s.span_id for s in spans}
    assert all(s.parent_id is None or s.parent_id in ids for s in spans)
    names = Counter(s.name for s in spans)
    assert names["invoke_workflow plan"] == 1
    for step in ("fetch", "left", "right"):
        assert names[f"step {step}"] == 1 and names[f"attempt {step}#1"] == 1
    # emitted by the workers (the processes that committed), not by the client
    assert {s.resource["process.pid"] for s in spans} <= {w.pid for w in workers.running}
    [failed] = [s for s in spans if s.name == "attempt right#1"]
    assert failed.attributes["error.type"] == "failed"
