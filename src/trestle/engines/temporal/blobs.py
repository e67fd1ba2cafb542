"""Large payloads kept out of Temporal's history: a content-addressed blob store.

Temporal keeps every activity's input and result in the workflow's history, which is
capped (about 50 MB, and it slows well before that). A codec on the client's and the
workers' data converter writes any payload above ``threshold`` bytes to a blob named
by its SHA-256 and puts only that name in the history; decoding reads it back and
checks it against the name. Workflow code sees the full values either way.

The blob directory must be one that every worker and every client of the task queue
reads (beside the store, by default): a blob is written once and never changed, so a
shared file system or a synced directory both serve.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from trestle.core.errors import StoreError

ENCODING = b"trestle/blob-sha256"
DEFAULT_THRESHOLD = 2048  # bytes: an event or two travels inline, a transcript does not


class BlobMissingError(StoreError):
    """A payload names a blob this process cannot read (a different blob directory)."""


class Blobs:
    """Blobs under ``root``, each at ``root/ab/abcdef...`` named by its SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest  # content-addressed: the same bytes are already there
        target.parent.mkdir(parents=True, exist_ok=True)
        # written whole under a temporary name, then renamed: a reader never sees half
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobMissingError(
                f"blob {digest} is not in {self.root}: every worker and client of a "
                "task queue must share one blob directory (--blobs)"
            ) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise BlobMissingError(f"blob {digest} in {self.root} is damaged")
        return data


class BlobCodec(PayloadCodec):
    """Payloads above ``threshold`` bytes travel as their blob's name."""

    def __init__(self, blobs: Blobs, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.blobs = blobs
        self.threshold = threshold

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.ByteSize() <= self.threshold:
                out.append(payload)
                continue
            digest = self.blobs.put(payload.SerializeToString())
            out.append(Payload(metadata={"encoding": ENCODING}, data=digest.encode()))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)
                continue
            whole = Payload()
            whole.ParseFromString(self.blobs.get(payload.data.decode()))
            out.append(whole)
        return out
