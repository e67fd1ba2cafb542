"""Large payloads kept out of Temporal's history: a content-addressed blob store.

Temporal keeps every activity's input and result in the workflow's history, which is
capped (about 50 MB, and it slows well before that). A codec on the client's and the
workers' data converter writes any payload above ``threshold`` bytes to a blob named
by its SHA-256 and puts only that name in the history; decoding reads it back and
checks it against the name. Workflow code sees the full values either way.

Every worker and every client of a task queue must read the same blobs. Where they are
is chosen from the store (:func:`blobs_for`): a store that keeps blobs itself (a
PostgreSQL database, through its ``put_blob`` and ``blob``) keeps them, so workers that
share that store share nothing else; an SQLite store's are files in ``blobs/`` beside
it, which a blob being written once and never changed lets a shared file system or a
synced directory serve.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from trestle.core.errors import ConfigError, StoreError
from trestle.store.location import store_name

ENCODING = b"trestle/blob-sha256"
DEFAULT_THRESHOLD = 2048  # bytes: an event or two travels inline, a transcript does not


class BlobMissingError(StoreError):
    """A payload names a blob this process cannot read (another store or blob
    directory than the workflow's), or one whose bytes no longer match its name."""


class BlobStore(Protocol):
    """Where the codec keeps blobs: ``put`` returns the SHA-256 (hex) it is named by;
    ``get`` returns those very bytes, or raises :class:`BlobMissingError`."""

    @property
    def shown(self) -> str:
        """Where the blobs are, in words (a worker's first line says it)."""
        ...

    def put(self, data: bytes) -> str: ...

    def get(self, digest: str) -> bytes: ...


@runtime_checkable
class BlobKeeper(Protocol):
    """A store that keeps blobs itself (the PostgreSQL store)."""

    def put_blob(self, digest: str, data: bytes) -> None: ...

    def blob(self, digest: str) -> bytes | None: ...


def blobs_for(store: object) -> BlobStore:
    """The blobs of the runs in ``store``: in the store itself when it keeps them, else
    in ``blobs/`` beside its file.

    Raises:
        ConfigError: a store with neither (one kept in memory).
    """
    if isinstance(store, BlobKeeper):
        return StoreBlobs(store)
    path = getattr(store, "path", None)
    if not isinstance(path, Path):
        raise ConfigError(
            "a run on Temporal needs a store every worker can reach: an SQLite file "
            "(--store PATH) or a PostgreSQL database (--store postgresql://...)"
        )
    return Blobs(path.parent / "blobs")


def _checked(digest: str, data: bytes, where: str) -> bytes:
    if hashlib.sha256(data).hexdigest() != digest:
        raise BlobMissingError(f"blob {digest} in {where} is damaged")
    return data


class StoreBlobs:
    """Blobs kept in the store, by SHA-256: workers and clients that share the store
    share its blobs, with no directory besides."""

    def __init__(self, store: BlobKeeper) -> None:
        self.store = store

    @property
    def shown(self) -> str:
        return "in the store"

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.store.put_blob(digest, data)  # written once: the same bytes are kept once
        return digest

    def get(self, digest: str) -> bytes:
        where = store_name(self.store)
        data = self.store.blob(digest)
        if data is None:
            raise BlobMissingError(
                f"blob {digest} is not in {where}: every worker and client of a task "
                "queue must use one store (--store)"
            )
        return _checked(digest, data, where)


class Blobs:
    """Blobs under ``root``, each at ``root/ab/abcdef...`` named by its SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def shown(self) -> str:
        return str(self.root)

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
                "task queue must share one blob directory (the store's, beside its file)"
            ) from None
        return _checked(digest, data, str(self.root))


class BlobCodec(PayloadCodec):
    """Payloads above ``threshold`` bytes travel as their blob's name. Blobs are written
    and read in a thread: a file's fsync or a database's round trip must not hold up
    the worker's event loop, which runs its workflows and heartbeats."""

    def __init__(self, blobs: BlobStore, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.blobs = blobs
        self.threshold = threshold

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.ByteSize() <= self.threshold:
                out.append(payload)
                continue
            digest = await asyncio.to_thread(self.blobs.put, payload.SerializeToString())
            out.append(Payload(metadata={"encoding": ENCODING}, data=digest.encode()))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)
                continue
            whole = Payload()
            whole.ParseFromString(await asyncio.to_thread(self.blobs.get, payload.data.decode()))
            out.append(whole)
        return out
