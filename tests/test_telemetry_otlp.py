"""Traces over the wire: the real ``trestle`` executable, configured only by the standard
``OTEL_*`` environment, sends OTLP/HTTP to a receiver on 127.0.0.1
(:class:`trestle.testing.otlp.OtlpReceiver`), including across a driver SIGKILLed
mid-step and a ``trestle resume``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.proto")

from test_cli import Cli
from trestle.testing.otlp import OtlpReceiver, ReceivedSpan


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def traced_cli(tmp_path: Path, receiver: OtlpReceiver) -> tuple[Cli, dict[str, str]]:
    cli = Cli(tmp_path, tmp_path / "t.db")
    env = {**cli.env(), **receiver.env(), "TRESTLE_SANDBOX": "off"}
    env = {k: v for k, v in env.items() if k not in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER")}
    return cli, env


def has_root(spans: list[ReceivedSpan]) -> bool:
    return any(s.parent_id is None for s in spans)


def test_trestle_run_sends_its_trace_to_the_otlp_endpoint(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    cli, env = traced_cli(tmp_path, receiver)
    cli.write("plan.yaml", "steps:\n  - id: a\n    run: echo a\n  - id: b\n    run: exit 2\n")
    done = subprocess.run(
        cli.argv("run", "plan.yaml", "--no-live"), cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0, done.stderr  # b fails
    spans = receiver.wait_for(has_root)
    assert receiver.refused == 0
    names = Counter(s.name for s in spans)
    assert names == Counter(
        ["invoke_workflow plan", "step a", "attempt a#1", "step b", "attempt b#1"]
    )
    assert {s.service for s in spans} == {"trestle"}
    assert len({s.trace_id for s in spans}) == 1
    [failed] = [s for s in spans if s.name == "attempt b#1"]
    assert failed.error is not None and failed.attributes["error.type"] == "failed"
    assert failed.attributes["trestle.action.exit_code"] == 2


def test_a_run_killed_mid_step_and_resumed_keeps_one_trace_and_no_span_twice(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    cli, env = traced_cli(tmp_path, receiver)
    cli.write(
        "plan.yaml",
        """\
        steps:
          - id: first
            run: echo one
          - id: slow
            needs: [first]
            idempotent: true
            run: touch started; sleep 1; touch done
            verify: [{file_exists: done}]
        """,
    )
    driver = subprocess.Popen(
        cli.argv("run", "plan.yaml", "--no-live"), cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.02)
    # the batch processor sends every 100 ms: let the first step's spans go first
    receiver.wait_for(lambda spans: any(s.name == "step first" for s in spans))
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    run_id = next(iter(cli.json("runs")))["run_id"]
    resumed = subprocess.run(
        cli.argv("resume", run_id, "--no-live"), cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    spans = receiver.wait_for(has_root)
    assert len({s.trace_id for s in spans}) == 1
    ids = Counter(s.span_id for s in spans)
    assert max(ids.values()) == 1, [s.name for s in spans if ids[s.span_id] > 1]
    # the attempt the crash cut short is ended by the resume that found it
    [lost] = [s for s in spans if s.name == "attempt slow#1"]
    assert lost.attributes["error.type"] == "outcome_unknown"
    [root] = [s for s in spans if s.parent_id is None]
    assert "trestle.run.resumed" in root.event_names
    assert root.attributes["trestle.run.status"] == "succeeded"
    [step] = [s for s in spans if s.name == "step slow"]
    assert {s.name for s in spans if s.parent_id == step.span_id} == {
        "attempt slow#1",
        "probe slow",
        "attempt slow#2",
    }


def test_a_reason_with_a_secret_and_a_name_not_in_utf8_reaches_the_receiver_cleaned(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    # a python: check's reason named a file whose bytes are not UTF-8 (os.listdir gave
    # them back as unpaired surrogates) and quoted a secret of the driver's environment:
    # the exporter dropped the whole batch, and the secret went with any other reason
    cli, env = traced_cli(tmp_path, receiver)
    token = "hunter2-but-longer"
    env["DEPLOY_TOKEN"] = token
    (tmp_path / b"out\xff\xed\xa0\x80name".decode("utf-8", "surrogateescape")).write_text("x")
    cli.write(
        "checks.py",
        "import os\n"
        "def look(ctx):\n"
        "    odd = [n for n in os.listdir('.') if n.startswith('out')]\n"
        f"    raise AssertionError('unexpected files: ' + ', '.join(odd) + ' token={token}')\n",
    )
    cli.write(
        "plan.yaml",
        "steps:\n  - id: a\n    run: echo a\n    verify: [{python: 'checks:look'}]\n",
    )
    done = subprocess.run(
        cli.argv("run", "plan.yaml", "--no-live"), cwd=tmp_path, env=env, capture_output=True,
        text=True, errors="replace", timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0, done.stderr  # the check fails
    spans = receiver.wait_for(has_root)
    assert receiver.refused == 0 and "Failed to encode" not in done.stderr
    [step] = [s for s in spans if s.name == "step a"]
    assert (
        step.error is not None and "unexpected files: out\ufffd\ufffd\ufffd\ufffdname" in step.error
    )
    said = repr([(s.attributes, s.error, s.events) for s in spans])
    assert token not in said and "[redacted: $DEPLOY_TOKEN]" in step.error
