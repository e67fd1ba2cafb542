"""The hashing embedder's vectors worked out ahead, in a process of their own.

An agent turn's reasoning is known when the model answers, but the drift monitor
judges the turn only once its tool calls have ended. The local engine therefore shows
the monitors each answer as it arrives (:meth:`~trestle.monitors.hub.MonitorHub.look_ahead`),
and the drift monitor hands the texts it may have to embed to this worker, which embeds
them on another core while the answer is committed and the tools run. When the turn is
judged, the embedder takes the worker's vector instead of making its own.

Nothing the monitors decide depends on the worker: it runs the same
:class:`~trestle.monitors.similarity.HashingEmbedder`, and its vectors come back as the
very floats it computed (bit for bit; the embedder is deterministic). A vector not back
within ``WAIT`` seconds, a worker that is still starting, died or cannot start: the
embedder makes the vector itself, the same one. The alerts are raised where they always
are (docs/monitors.md, "When an alert takes effect"); only the time the turn waits for
them changes.

The protocol, over the worker's standard input and output: each request is a frame
(a 4-byte big-endian length, then the text in UTF-8); the worker first writes one byte
(``READY``) once it can embed, then one frame per request, in order: ``A`` and the
vector's arrays (:class:`~trestle.monitors.hashsums.BucketArrays`), or ``D`` and its
entries, or ``Z`` for a vector of nothing. The parent never blocks on a write: at most
``MAX_PENDING`` requests are out at once, and what the pipe does not take at once waits
in a buffer. One worker serves a process (every run of it with the same embedder
settings), started at the first text it is given, ended with the process.

Run as ``python -m trestle.monitors.embedworker DIM TRIGRAM_WEIGHT``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import struct
import subprocess
import sys
import threading
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from trestle.monitors.similarity import HashingEmbedder, SparseVector

READY = b"R"
MAX_PENDING = 4  # requests out at once: the worker is at most this far behind
MAX_TEXT_BYTES = 1 << 16  # a longer text is embedded where it is needed, as before
# seconds a turn waits for a vector before making it itself, which takes about 0.7 ms
# for 1,000 characters of new words: a worker later than this has no core to itself
# (the machine is busy), and waiting longer would cost the turn more than it saves
WAIT = 0.001
# a worker is a Python started with "-m": not where that is some other program (a frozen
# application's), nor where select() cannot wait on a pipe
AVAILABLE = os.name == "posix" and not getattr(sys, "frozen", False)

# bytes asked of the pipe at once: its usual capacity. os.read allocates what it is asked
# for; a megabyte each time cost more than the rest of a reply's handling
_READ_SIZE = 1 << 16
_LENGTH = struct.Struct(">I")
_ARRAYS_HEAD = struct.Struct("<Id")  # entries, norm
_COUNT = struct.Struct("<I")
# what a worker that died, or wrote what it should not, makes the parent's end raise
_FAILURES = (OSError, EOFError, ValueError, struct.error)


def encode_vector(vector: SparseVector) -> bytes:
    """A vector as a reply frame's payload (see the module docstring)."""
    if vector.arrays is not None:
        from trestle.monitors.hashsums import BucketArrays

        arrays = vector.arrays
        assert isinstance(arrays, BucketArrays)  # the only arrays the embedder makes
        return b"".join(
            (
                b"A",
                _ARRAYS_HEAD.pack(arrays.count, arrays.norm),
                arrays.buckets.astype("<u4").tobytes(),
                arrays.values.astype("<f8").tobytes(),
                arrays.first_touch.astype("<i8").tobytes(),
            )
        )
    entries = vector.entries
    if not entries:
        return b"Z"
    return b"".join(
        (
            b"D",
            _COUNT.pack(len(entries)),
            array("Q", entries).tobytes(),
            array("d", entries.values()).tobytes(),
        )
    )


def decode_vector(payload: bytes, dim: int) -> SparseVector:
    """The vector :func:`encode_vector` encoded, with the same floats."""
    kind, body = payload[:1], payload[1:]
    if kind == b"Z":
        return SparseVector(dim, {})
    if kind == b"D":
        (count,) = _COUNT.unpack_from(body)
        indices, values = array("Q"), array("d")
        indices.frombytes(body[4 : 4 + 8 * count])
        values.frombytes(body[4 + 8 * count : 4 + 16 * count])
        return SparseVector(dim, dict(zip(indices.tolist(), values.tolist(), strict=True)))
    if kind != b"A":
        raise ValueError(f"an embedding worker's reply of unknown kind {kind!r}")
    import numpy as np

    from trestle.monitors.hashsums import BucketArrays

    count, norm = _ARRAYS_HEAD.unpack_from(body)
    at = _ARRAYS_HEAD.size
    buckets = np.frombuffer(body, dtype="<u4", count=count, offset=at).astype(np.uint32)
    at += 4 * count
    unit = np.frombuffer(body, dtype="<f8", count=count, offset=at).astype(np.float64)
    at += 8 * count
    first_touch = np.frombuffer(body, dtype="<i8", count=count, offset=at).astype(np.intp)
    arrays = BucketArrays(buckets, unit, first_touch, norm)
    return SparseVector(dim, norm=norm, arrays=arrays)


class EmbedWorker:
    """The parent's end of one worker process (see the module docstring).

    Engines in several threads of a process share it: each call holds its lock. Every
    failure of the worker makes it
    ``broken``, after which it takes no more texts.
    """

    def __init__(self, dim: int, trigram_weight: float, *, wait: float = WAIT) -> None:
        self.dim = dim
        self.trigram_weight = trigram_weight
        self.wait = wait  # seconds a result is waited for (see WAIT)
        self.broken = False
        self.ready = False
        self.served = 0  # vectors handed out
        self._pid = os.getpid()
        self._process: subprocess.Popen[bytes] | None = None
        self._issued = 0  # tickets given out
        self._answered = 0  # the ticket whose reply comes next
        self._wanted: set[int] = set()  # tickets still waited for (others' replies dropped)
        self._replies: dict[int, bytes] = {}
        self._unsent = bytearray()  # request bytes the pipe has not taken yet
        self._lock = threading.Lock()
        self._received = bytearray()

    @property
    def pending(self) -> int:
        """Requests out whose replies are not read yet."""
        return self._issued - self._answered

    def submit(self, text: str) -> int | None:
        """Send ``text`` to be embedded; a ticket for :meth:`result`, or None when the
        worker cannot take it now (broken, too far behind, the text too long)."""
        with self._lock:
            if self.broken or not AVAILABLE or os.getpid() != self._pid:
                return None
            data = text.encode("utf-8", "surrogatepass")
            if len(data) > MAX_TEXT_BYTES:
                return None
            try:
                if self._process is None:
                    self._start()
                self._pump(0.0)
                if self.pending >= MAX_PENDING:
                    return None
                self._unsent += _LENGTH.pack(len(data)) + data
                self._pump(0.0)
            except _FAILURES:
                self._fail()
                return None
            ticket = self._issued
            self._issued += 1
            self._wanted.add(ticket)
            return ticket

    def result(self, ticket: int, *, wait: float | None = None) -> SparseVector | None:
        """The vector for ``ticket``, waiting up to ``wait`` seconds for it (default: the
        worker's ``wait``); None when it is not there by then (the ticket is then given
        up) or the worker is still starting."""
        with self._lock:
            if ticket not in self._wanted:
                return None
            deadline = time.monotonic() + (self.wait if wait is None else wait)
            try:
                while ticket not in self._replies and not self.broken:
                    if not self.ready:
                        self._pump(0.0)
                        if not self.ready:
                            break  # still starting: making the vector here is sooner
                        continue
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break  # late: the machine is busy; made here, it is the same vector
                    self._pump(left)
            except _FAILURES:
                self._fail()
            self._wanted.discard(ticket)
            payload = self._replies.pop(ticket, None)
            if payload is None:
                return None
            try:
                vector = decode_vector(payload, self.dim)
            except _FAILURES:  # not a reply this code writes: the vector is made here
                self._fail()
                return None
            self.served += 1
            return vector

    def started(self, *, wait: float) -> bool:
        """Whether the worker is ready for texts, waiting up to ``wait`` seconds for it
        to start (it starts at the first text submitted)."""
        with self._lock:
            deadline = time.monotonic() + wait
            try:
                while self._process is not None and not self.ready and not self.broken:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._pump(left)
            except _FAILURES:
                self._fail()
            return self.ready and not self.broken

    def give_up(self, ticket: int) -> None:
        """No longer wait for ``ticket`` (its reply is dropped when it comes)."""
        with self._lock:
            self._wanted.discard(ticket)
            self._replies.pop(ticket, None)

    def close(self) -> None:
        """End the worker: it sees its input close and exits."""
        process, self._process = self._process, None
        self.broken = True
        if process is None or os.getpid() != self._pid:
            return
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _start(self) -> None:
        # the worker imports this very trestle, whatever the parent's sys.path was made of
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_root, env.get("PYTHONPATH"))))
        # the driver's working directory is usually the workspace, which the run's
        # commands write: "-m" would put it first on the worker's sys.path, and a planted
        # trestle/ or numpy/ would run unconfined as the driver. -P leaves it off, and
        # the root directory makes an empty or relative PYTHONPATH entry name no workspace
        self._process = subprocess.Popen(
            [sys.executable, "-P", "-m", __name__, str(self.dim), repr(self.trigram_weight)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env=env,
            bufsize=0,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        os.set_blocking(self._process.stdin.fileno(), False)

    def _pump(self, timeout: float) -> bool:
        """Send what the pipe takes and read what came back, waiting up to ``timeout``
        seconds for either; whether anything came back."""
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        out_fd, in_fd = process.stdin.fileno(), process.stdout.fileno()
        writers = [out_fd] if self._unsent else []
        readable, writable, _ = select.select([in_fd], writers, [], max(timeout, 0.0))
        if writable:
            try:
                sent = os.write(out_fd, self._unsent)
            except BlockingIOError:
                sent = 0
            del self._unsent[:sent]
        if not readable:
            return False
        chunk = os.read(in_fd, _READ_SIZE)
        if not chunk:
            raise EOFError("the embedding worker ended")
        self._received += chunk
        self._take_replies()
        return True

    def _take_replies(self) -> None:
        received = self._received
        if not self.ready and received:
            if received[:1] != READY:
                raise ValueError("the embedding worker did not start as expected")
            del received[:1]
            self.ready = True
        while len(received) >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(received)
            end = _LENGTH.size + size
            if len(received) < end:
                return
            ticket = self._answered
            self._answered += 1
            if ticket in self._wanted:
                self._replies[ticket] = bytes(received[_LENGTH.size : end])
            del received[:end]

    def _fail(self) -> None:
        self._wanted.clear()
        self._replies.clear()
        self.close()


@dataclass(frozen=True)
class Ticket:
    """A text sent to a worker: its vector, when it comes (a
    :class:`~trestle.monitors.similarity.Foreseen`)."""

    worker: EmbedWorker
    number: int

    def result(self) -> SparseVector | None:
        return self.worker.result(self.number)

    def give_up(self) -> None:
        self.worker.give_up(self.number)


def send_ahead(embedder: HashingEmbedder, text: str) -> bool:
    """Have this process's worker embed ``text`` for ``embedder``, which then takes the
    worker's vector when asked for it; whether the worker took the text."""
    worker = shared_worker(embedder.dim, embedder.trigram_weight)
    number = worker.submit(text)
    if number is None:
        return False
    embedder.foresee(text, Ticket(worker, number))
    return True


_workers: dict[tuple[int, float], EmbedWorker] = {}
_workers_lock = threading.Lock()


def shared_worker(dim: int, trigram_weight: float) -> EmbedWorker:
    """This process's worker for these embedder settings (started at its first text)."""
    key = (dim, trigram_weight)
    with _workers_lock:
        worker = _workers.get(key)
        if worker is None or worker._pid != os.getpid():  # a forked child starts its own
            worker = _workers[key] = EmbedWorker(dim, trigram_weight)
        return worker


@atexit.register
def _close_workers() -> None:
    for worker in _workers.values():
        worker.close()


def serve(source: BinaryIO, sink: BinaryIO, embedder: HashingEmbedder) -> None:
    """Embed each text read from ``source`` and write its vector to ``sink``, until
    ``source`` ends (the worker's side of the protocol)."""
    _ = embedder.vectorised  # numpy, when installed, is imported before READY
    sink.write(READY)
    sink.flush()
    while head := source.read(_LENGTH.size):
        if len(head) < _LENGTH.size:
            return
        (size,) = _LENGTH.unpack(head)
        text = source.read(size).decode("utf-8", "surrogatepass")
        (vector,) = embedder.embed([text])
        assert isinstance(vector, SparseVector)  # the hashing embedder's
        payload = encode_vector(vector)
        sink.write(_LENGTH.pack(len(payload)) + payload)
        sink.flush()


def main(argv: list[str]) -> int:
    dim, trigram_weight = int(argv[0]), float(argv[1])
    serve(sys.stdin.buffer, sys.stdout.buffer, HashingEmbedder(dim, trigram_weight))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
