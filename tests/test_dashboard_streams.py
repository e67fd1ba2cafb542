"""The dashboard's live streams under stress, against a real ``trestle ui`` process:
clients that hang up mid-stream, a run recording a thousand events a second, and a run
whose driver is killed mid-step, in the runs list and on the run's own page."""

from __future__ import annotations

import re
import signal
import socket
import struct
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from dashboard_helpers import Dashboard, csrf_of, dashboard, pages, plan_run, session_cookie
from test_cli import Cli
from test_honest_wording import driven, wait_for
from trestle.core.events import SandboxChosen
from trestle.lifecycle.lease import this_process
from trestle.lifecycle.runs import load_state, summary_json
from trestle.store import SqliteStore
from trestle.store.base import Appended

PLAN = "goal: busy\nsteps:\n  - {id: one, run: 'true'}\n  - {id: two, run: 'true', needs: [one]}\n"


def raw_stream(ui: Dashboard, path: str, cookie: tuple[str, str]) -> socket.socket:
    """A stream request on a bare socket, its first bytes read."""
    where = urlsplit(ui.base)
    sock = socket.create_connection((where.hostname or "127.0.0.1", where.port or 80), timeout=10)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {where.netloc}\r\nCookie: {cookie[0]}={cookie[1]}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    assert b"200 OK" in sock.recv(4096)
    return sock


def test_clients_that_hang_up_mid_stream_leave_the_server_serving(tmp_path: Path) -> None:
    store = tmp_path / "trestle.db"
    run_id = plan_run(store, PLAN, tmp_path)
    with dashboard(store) as ui:
        client = ui.session()
        cookie, at = session_cookie(client), pages(client)
        for n in range(30):
            path = f"{at}/stream/runs/{run_id}" if n % 2 else f"{at}/stream/runs"
            sock = raw_stream(ui, path, cookie)
            if n % 3 == 0:  # a reset rather than a close
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        started = time.monotonic()
        assert client.get("/").status_code == 200
        assert client.get(f"/runs/{run_id}").status_code == 200
        assert time.monotonic() - started < 5
        with client.stream("GET", f"/stream/runs/{run_id}") as live:
            body = ""
            for chunk in live.iter_text():
                body += chunk
                if "run-status" in body:
                    break
        assert ui.process.poll() is None


def test_it_stops_promptly_with_streams_open(tmp_path: Path) -> None:
    store = tmp_path / "trestle.db"
    run_id = plan_run(store, PLAN, tmp_path)
    with dashboard(store) as ui:
        client = ui.session()
        cookie, at = session_cookie(client), pages(client)
        open_streams = [raw_stream(ui, f"{at}/stream/runs/{run_id}", cookie) for _ in range(3)]
        started = time.monotonic()
        ui.process.terminate()
        ui.process.wait(timeout=20)
        assert time.monotonic() - started < 10
        for sock in open_streams:
            sock.close()


def busy(store_path: Path, run_id: str, seconds: float, rate: int, done: list[int]) -> None:
    """Record ``rate`` events a second into the run for ``seconds``, in batches."""
    store = SqliteStore(store_path)
    try:
        lease = store.acquire_lease(run_id, this_process("busy"), ttl=30, now=time.time())
        state = load_state(store, run_id)
        batch = rate // 20
        end = time.monotonic() + seconds
        tick = time.monotonic()
        while time.monotonic() < end:
            events = []
            for i in range(batch):
                event = SandboxChosen(at=time.time(), confined=False, detail=f"busy {i}")
                state.apply(event)
                events.append(event)
            store.append(
                run_id,
                Appended(
                    events=events,
                    first_seq=state.seq - batch + 1,
                    status="running",
                    summary=summary_json(state),
                ),
                token=lease.token,
            )
            done.append(batch)
            tick += 1 / 20
            time.sleep(max(0.0, tick - time.monotonic()))
        store.release_lease(run_id, lease.token)
    finally:
        store.close()


def test_a_run_recording_a_thousand_events_a_second_is_followed(tmp_path: Path) -> None:
    store = tmp_path / "trestle.db"
    run_id = plan_run(store, PLAN, tmp_path)
    with dashboard(store) as ui:
        client = ui.session()
        written: list[int] = []
        writer = threading.Thread(target=busy, args=(store, run_id, 4.0, 1000, written))
        fragments: list[str] = []
        answers: list[float] = []

        def follow() -> None:
            # until the stream shows the run as the writer left it: a render slowed by a
            # loaded machine is followed by a longer wait (4x its time), not skipped
            with client.stream("GET", f"/stream/runs/{run_id}", timeout=60) as live:
                fragment = ""
                for line in live.iter_lines():
                    if line.startswith("data: "):
                        fragment += line
                    elif not line and fragment:
                        fragments.append(fragment)
                        fragment = ""
                    done = not writer.is_alive()
                    if done and fragments and f"{sum(written) + 1} events" in fragments[-1]:
                        break

        follower = threading.Thread(target=follow)
        writer.start()
        follower.start()
        with httpx.Client(base_url=client.base_url, cookies=client.cookies, timeout=30) as other:
            while writer.is_alive():
                started = time.monotonic()
                assert other.get("/").status_code == 200
                answers.append(time.monotonic() - started)
                time.sleep(0.2)
        writer.join()
        assert sum(written) >= 3000  # about a thousand a second, for the most part
        # the stream sent the run again as it changed, coalescing the events between
        follower.join(timeout=30)
        assert f"{sum(written) + 1} events" in fragments[-1]
        assert len(fragments) >= 3  # the run as it was, as it changed, as left
        assert max(answers) < 5, answers  # pages kept answering meanwhile
        page = client.get(f"/runs/{run_id}").text
        assert f"{sum(written) + 1} events" in page
        assert ui.process.poll() is None


def test_a_run_whose_driver_is_killed_turns_interrupted_in_the_open_stream(
    tmp_path: Path,
) -> None:
    # kill -9 records nothing: only the status as shown (its owner gone) changes
    cli = Cli(tmp_path, tmp_path / "trestle.db")
    driver, _ = driven(cli, "goal: killed\nsteps:\n  - id: slow\n    run: touch slow; sleep 30\n")
    wait_for(tmp_path / "slow")
    with dashboard(cli.store) as ui:
        client = ui.session()
        with client.stream("GET", "/stream/runs", timeout=60) as live:
            shown: list[str] = []
            for line in live.iter_lines():
                if line.startswith(":") and shown:
                    break  # a keep-alive: the stream went quiet without sending the change
                found = re.search(r'class="state s-(\w+)"', line)
                if found:
                    shown.append(found.group(1))
                    if shown == ["running"]:
                        driver.send_signal(signal.SIGKILL)
                        driver.communicate(timeout=60)
                    else:
                        break
        assert shown == ["running", "interrupted"]


def test_an_open_run_page_turns_interrupted_when_its_driver_is_killed_and_says_what_next(
    tmp_path: Path,
) -> None:
    # kill -9 records nothing: only the status as shown (its owner gone) changes
    cli = Cli(tmp_path, tmp_path / "trestle.db")
    plan = (
        "goal: killed\nsteps:\n  - id: slow\n    run: touch slow; sleep 30\n"
        "  - {id: deploy, run: echo deploy, irreversible: true}\n"
    )
    driver, run_id = driven(cli, plan)
    wait_for(tmp_path / "slow")
    with dashboard(cli.store) as ui:
        client = ui.session()
        shown: list[str] = []
        page, sent = "", ""
        with client.stream("GET", f"/stream/runs/{run_id}", timeout=60) as live:
            for line in live.iter_lines():
                if line.startswith(":") and shown:
                    break  # a keep-alive: the stream went quiet without sending the change
                if line.startswith("data: "):
                    sent += line.removeprefix("data: ") + "\n"
                    continue
                if line or not sent:
                    continue
                page, sent = sent, ""  # one whole fragment, sent
                found = re.search(r'id="run-status">(\w+)<', page)
                assert found is not None
                shown.append(found.group(1))
                if shown != ["running"]:
                    break
                assert "continue with" not in page
                driver.send_signal(signal.SIGKILL)
                driver.communicate(timeout=60)
        assert shown == ["running", "interrupted"]
        # what `trestle show` says of it: what stopped it, the command, the step left
        resume = f"continue with `trestle resume {run_id}`"
        note = f"run {run_id} lost its driver (it was killed, or its machine stopped): {resume}"
        assert note in page and "no live driver" in page
        assert "driven by" not in page
        assert note in client.get(f"/runs/{run_id}").text
        assert note in cli("show", run_id).stdout.replace("\n", "")
        left = client.get(f"/runs/{run_id}").text.split('id="step-slow"')[1].split("</tr>")[0]
        assert "interrupted: driver lost" in left
        # a decision is queued for the resume, not said to be applied by a dead driver
        token = csrf_of(client.get(f"/runs/{run_id}").text)
        approved = client.post(
            f"/inbox/{run_id}.1/approve", data={"csrf": token}, headers={"origin": ui.origin}
        )
        assert approved.status_code == 303
        said = client.get("/inbox").text
        assert f"approved {run_id}.1: queued (request 1); it will be applied or refused" in said
        assert f"when the run is resumed: `trestle resume {run_id}`" in said
