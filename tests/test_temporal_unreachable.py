"""What a command says when the run's Temporal service does not answer: the address and
the transport's reason on a line of its own, then advice the command can follow (a
flag only where the command has one; a run keeps the address it was made with)."""

from __future__ import annotations

import pytest

from test_cli import Cli, flat, run_id_of

pytest.importorskip("temporalio")

from trestle.engines.temporal.connect import transport_reason

UNREACHED = ("--engine", "temporal", "--address", "127.0.0.1:1")
REFUSED = "cannot reach Temporal at 127.0.0.1:1\n  tcp connect error: Connection refused\n"


def _recorded_run(cli: Cli) -> str:
    plan = cli.write("plan.yaml", "goal: g\nsteps:\n  - id: a\n    run: 'true'\n")
    started = cli("run", plan, "--no-live", "--no-prompt", *UNREACHED)
    assert started.returncode == 2, started.stdout + started.stderr
    assert REFUSED in started.stderr, started.stderr
    said = flat(started.stderr)
    assert "tonic" not in said and "Os {" not in said  # the reason, not the dump
    assert "start the run anew with --address HOST:PORT (or $TRESTLE_TEMPORAL_ADDRESS)" in said
    return run_id_of(started)


def test_resume_gives_advice_it_can_take(cli: Cli) -> None:
    run_id = _recorded_run(cli)
    resumed = cli("resume", run_id, "--no-live", "--no-prompt")
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert REFUSED in resumed.stderr, resumed.stderr
    said = flat(resumed.stderr)
    assert "--address" not in said and "TRESTLE_TEMPORAL_ADDRESS" not in said, said
    assert (
        f"`trestle resume {run_id}` goes on once Temporal answers at 127.0.0.1:1 (for a try: "
        "`temporal server start-dev`); a run keeps the address it was made with"
    ) in said
    history = cli("log", run_id, "--history")
    assert history.returncode == 2, history.stdout + history.stderr
    assert REFUSED in history.stderr
    assert "--address" not in history.stderr
    assert f"`trestle log {run_id}` shows the store's events" in flat(history.stderr)


def test_a_worker_names_its_flag_and_variable(cli: Cli) -> None:
    result = cli("worker", "--engine", "temporal", "--address", "127.0.0.1:1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert REFUSED in result.stderr, result.stderr
    assert "--address HOST:PORT (or $TRESTLE_TEMPORAL_ADDRESS)" in flat(result.stderr)


def test_the_transport_reason_is_its_gist() -> None:
    dns = (
        "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
        'ConnectError(ConnectError("dns error", Custom { kind: Uncategorized, error: '
        '"failed to lookup address information: Name or service not known" })))'
    )
    assert transport_reason(dns) == (
        "dns error: failed to lookup address information: Name or service not known"
    )
    assert transport_reason("something  else\nentirely") == "something else entirely"
    assert len(transport_reason("x" * 500)) == 160
