"""Signatures on human decisions, so that only the decision path can approve.

Anything can write a row into the store's request queue: a step's own process can
open the SQLite file, and a model could be talked into printing SQL. A decision only
counts when it carries an HMAC made with a key that lives outside the workspace and
outside every step's environment (``~/.config/trestle/approval.key`` by default, mode
0600). The engine checks the signature before recording the decision; a row without a
valid one is recorded as refused and changes nothing. The engine signs the state
snapshots it writes with the same key (:func:`snapshot_mac`), since a snapshot stands
in for the events, decisions included, that it sums up.

This guards against agents, tools and step output. It is not a boundary against a
hostile program running as the same OS user, which can read the key file as you can.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trestle.core.errors import ConfigError
from trestle.support.home import user_dir

KEY_ENV = "TRESTLE_KEY_FILE"


def config_dir() -> Path:
    """Trestle's configuration directory (where the approval key lives by default)."""
    return user_dir("XDG_CONFIG_HOME", ".config") / "trestle"


def key_path() -> Path:
    """``$TRESTLE_KEY_FILE``, else ``$XDG_CONFIG_HOME/trestle/approval.key``."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV])
    return config_dir() / "approval.key"


def decision_key(path: Path | None = None) -> bytes:
    """The signing key, created (owner-only) on first use."""
    path = path or key_path()
    try:
        return bytes.fromhex(key_text(path))
    except FileNotFoundError:
        pass
    except ValueError:
        raise ConfigError(f"{path}: not a Trestle approval key (expected hex)") from None
    except OSError as exc:  # a directory, a FIFO, a device, no permission
        raise ConfigError(f"{path}: the approval key cannot be read: {exc.strerror}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:  # O_EXCL: of two processes creating it at once, one wins and both use its key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return decision_key(path)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


def existing_key(path: Path | None = None) -> bytes | None:
    """The signing key if one was made (never creating it), else None: what a reader
    checks snapshots with. An unreadable key is no key: the reader folds events."""
    try:
        return bytes.fromhex(key_text(path or key_path()))
    except (OSError, ValueError):
        return None


KEY_MOST_BYTES = 4096  # a key is 64 hex digits; a path to /dev/zero must not be read whole


def key_text(path: Path) -> str:
    """A key file's text: a regular file's first bytes, opened without blocking (a FIFO
    named as the key would wait for ever); OSError for anything else."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return f.read(KEY_MOST_BYTES).decode("utf-8", "replace").strip()


def _canonical(payload: Mapping[str, object]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def sign(payload: Mapping[str, object], key: bytes) -> str:
    return hmac.new(key, _canonical(payload), hashlib.sha256).hexdigest()


def verify(payload: Mapping[str, object], signature: str, key: bytes) -> bool:
    return hmac.compare_digest(sign(payload, key), signature)


def signed_payload(fields: Mapping[str, object], key: bytes, *, identity: str | None = None) -> str:
    """A request's payload: its fields and their signature, as JSON; with ``identity``,
    the decider's own signature over the same fields too (:mod:`trestle.trust.identity`)."""
    body: dict[str, object] = {"fields": dict(fields), "signature": sign(fields, key)}
    if identity is not None:
        body["identity"] = identity
    return json.dumps(body)


def verified_fields(payload: str, key: bytes) -> dict[str, Any] | None:
    """The fields of a payload whose signature verifies, else None."""
    try:
        body = json.loads(payload)
        fields, signature = body["fields"], body["signature"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(fields, dict) or not verify(fields, str(signature), key):
        return None
    return fields


def snapshot_mac(key: bytes, run_id: str, seq: int, state_json: str) -> str:
    """The signature a snapshot row carries. A snapshot replaces the events it sums up,
    so one written by anything but an engine (a step's process can open the store)
    could say an approval was given; a resume uses only a snapshot that verifies."""
    state = state_json.encode("utf-8", "surrogatepass")
    return _mac(key, b"trestle snapshot 2", run_id.encode(), str(seq).encode(), state).hex()


def monitors_mac(key: bytes, run_id: str, seq: int, monitors: bytes) -> bytes:
    """The signature a snapshot's saved monitors carry, apart from the state's, so
    that reading a state (every listing does) never reads the larger save."""
    return _mac(key, b"trestle monitors 1", run_id.encode(), str(seq).encode(), monitors)


def _mac(key: bytes, label: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, label + b"\0", hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))  # lengths first: no two splits collide
        mac.update(part)
    return mac.digest()
