"""The drift monitor's embedding worker against what a run's commands and a hostile
model can do to it: code planted in the workspace it is started from, replies it did
not write, texts made to differ in its hands. A real worker process each time.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from trestle.monitors.embedworker import _LENGTH, EmbedWorker
from trestle.monitors.similarity import HashingEmbedder, SparseVector

DIM, TRIGRAM_WEIGHT = 1 << 18, 0.4
PLANTED = ("trestle/__init__.py", "numpy/__init__.py", "array.py", "select.py")


@pytest.fixture
def worker() -> Iterator[EmbedWorker]:
    started = EmbedWorker(DIM, TRIGRAM_WEIGHT, wait=30.0)  # however busy the machine
    yield started
    started.close()


def _ready(worker: EmbedWorker) -> None:
    first = worker.submit("warming up")
    assert first is not None and worker.started(wait=30.0), "the worker did not start"
    _same(worker.result(first), "warming up")


def _same(made: SparseVector | None, text: str) -> None:
    (own,) = HashingEmbedder(DIM, TRIGRAM_WEIGHT).embed([text])
    assert isinstance(made, SparseVector) and isinstance(own, SparseVector)
    assert list(made.entries.items()) == list(own.entries.items()), repr(text[:40])


def test_a_worker_started_in_the_workspace_runs_nothing_a_command_planted_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker: EmbedWorker
) -> None:
    """The driver's working directory is the workspace; an earlier run's command (or
    the repository itself) left modules there that a fresh driver's worker would import
    first, running unconfined as the driver."""
    for name in PLANTED:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(
            f"import pathlib\npathlib.Path({str(tmp_path)!r}, 'pwned').write_text({name!r})\n"
        )
    monkeypatch.chdir(tmp_path)
    # an empty entry, as "PYTHONPATH=$PYTHONPATH:/x" leaves it, names the working directory
    monkeypatch.setenv("PYTHONPATH", os.pathsep + os.environ.get("PYTHONPATH", ""))
    text = "read the workspace's sources " * 40  # enough new words for numpy's sums
    ticket = worker.submit(text)
    assert ticket is not None
    started = worker.started(wait=30.0)
    assert not (tmp_path / "pwned").exists(), (tmp_path / "pwned").read_text()
    assert started, "the worker did not start"
    _same(worker.result(ticket), text)


def test_hostile_texts_come_back_as_the_embedders_own_vectors(worker: EmbedWorker) -> None:
    _ready(worker)
    texts = [
        "\ud83d\ude00 a surrogate pair written as two code points, not one",
        "NUL\x00inside\x00words and \r\n line ends \ufeff\uffff",
        "x" * 60_000,  # one giant word, just under the worker's limit
        " ".join(f"w{i}" for i in range(9_000)),  # thousands of distinct words
        "\udcff\udc80 bytes smuggled as surrogateescape",
    ]
    for text in texts:
        ticket = worker.submit(text)
        assert ticket is not None
        _same(worker.result(ticket), text)
    assert worker.submit("y" * (1 << 17)) is None  # too long: embedded where needed


def test_a_reply_the_worker_did_not_write_is_not_taken_and_does_not_raise(
    worker: EmbedWorker,
) -> None:
    """A process of the driver's user outside any sandbox writes into the worker's
    reply pipe through /proc: a frame of the right length whose vector does not decode.
    The embedder must make the vector itself, as for a dead worker."""
    _ready(worker)
    assert worker._process is not None
    pid = worker._process.pid
    os.kill(pid, signal.SIGSTOP)  # it answers nothing more itself
    ticket = worker.submit("parse the response")
    assert ticket is not None
    forged = b"A" + (10**6).to_bytes(4, "little") + bytes(8)  # a million entries, none sent
    with open(f"/proc/{pid}/fd/1", "wb") as pipe:
        pipe.write(_LENGTH.pack(len(forged)) + forged)
    assert worker.result(ticket) is None  # made where it is needed, the same vector
    assert worker.broken and worker.submit("anything else") is None
