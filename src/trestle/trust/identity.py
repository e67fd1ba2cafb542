"""Each approver's own key: who signed a decision, as the operator's approver groups
(:mod:`trestle.core.approvers`) name their members.

The decision key (:mod:`trestle.trust.signing`) proves that a decision came through the
decision path; it is one HMAC key, which every approver of a deployment holds, so it
cannot say which of them decided. For that each person has an Ed25519 key pair of their
own, ``identity.key`` in their configuration directory (mode 0600, made on first use):
the decision path signs a decision's fields with it and names its public key in them
(``signer``), and the operator lists public keys, never names a decider types, in
``[policy.groups]``. A decision whose identity signature does not verify names no
signer, and counts for no group.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trestle.core.errors import ConfigError
from trestle.trust.signing import config_dir, key_text, verified_fields

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

IDENTITY_ENV = "TRESTLE_IDENTITY_FILE"
ACCOUNTS_ENV = "TRESTLE_DASHBOARD_ACCOUNTS"
PREFIX = "ed25519:"


def identity_path() -> Path:
    """``$TRESTLE_IDENTITY_FILE``, else ``identity.key`` in the configuration directory."""
    if os.environ.get(IDENTITY_ENV):
        return Path(os.environ[IDENTITY_ENV])
    return config_dir() / "identity.key"


def accounts_path() -> Path:
    """The dashboard's accounts file, which holds its invited people's identity keys
    (:mod:`trestle.dashboard.accounts`): ``$TRESTLE_DASHBOARD_ACCOUNTS``, else
    ``dashboard.sqlite`` in the configuration directory (hidden from every step, as the
    whole directory is; one named elsewhere is hidden too)."""
    if os.environ.get(ACCOUNTS_ENV):
        return Path(os.environ[ACCOUNTS_ENV])
    return config_dir() / "dashboard.sqlite"


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise ConfigError(
            'approver keys need the cryptography package: pip install "cryptography>=42"'
        ) from None
    return ed25519


def private_key(path: Path | None = None) -> Ed25519PrivateKey:
    """This person's identity key, created (owner-only) on first use."""
    ed25519 = _ed25519()
    path = path or identity_path()
    try:
        return ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_text(path)))  # type: ignore[no-any-return]
    except FileNotFoundError:
        pass
    except ValueError:
        raise ConfigError(f"{path}: not a Trestle identity key (expected 64 hex digits)") from None
    except OSError as exc:  # a directory, a FIFO (read, it waited for ever), a device
        raise ConfigError(f"{path}: the identity key cannot be read: {exc.strerror}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where its directory would be
        raise ConfigError(
            f"{path.parent}: cannot make the key's directory: {exc.strerror}"
        ) from None
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes_raw()
    try:  # O_EXCL: of two processes creating it at once, one wins and both use its key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return private_key(path)
    with os.fdopen(fd, "w") as f:
        f.write(raw.hex())
    return key  # type: ignore[no-any-return]


def public_key(path: Path | None = None) -> str:
    """This person's public key as the operator lists it: ``ed25519:`` and 64 hex digits."""
    return PREFIX + private_key(path).public_key().public_bytes_raw().hex()


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def new_key() -> Ed25519PrivateKey:
    """A fresh identity key, for a key kept elsewhere than a file (a dashboard account's:
    :mod:`trestle.dashboard.accounts`)."""
    return _ed25519().Ed25519PrivateKey.generate()  # type: ignore[no-any-return]


def key_from_hex(text: str) -> Ed25519PrivateKey:
    """The identity key written as 64 hex digits (as ``identity.key`` holds it)."""
    return _ed25519().Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))  # type: ignore[no-any-return]


def public_of(key: Ed25519PrivateKey) -> str:
    """``key``'s public half as the operator lists it: ``ed25519:`` and 64 hex digits."""
    return PREFIX + key.public_key().public_bytes_raw().hex()


def with_identity(
    fields: dict[str, Any], path: Path | None = None, key: Ed25519PrivateKey | None = None
) -> tuple[dict[str, Any], str]:
    """``fields`` naming this person's public key as ``signer``, and their signature
    over them (base64), for :func:`trestle.trust.signing.signed_payload`'s ``extra``.
    ``key`` signs instead of the key file at ``path`` (a dashboard account's key)."""
    key = key if key is not None else private_key(path)
    named = {**fields, "signer": public_of(key)}
    return named, base64.b64encode(key.sign(_canonical(named))).decode()


def decision_fields(payload: str, key: bytes) -> dict[str, Any] | None:
    """A request's fields if the decision path signed it (:func:`verified_fields`), with
    ``signer`` kept only when the identity signature verifies with the key it names
    (else None): what both engines judge a request by."""
    fields = verified_fields(payload, key)
    if fields is None:
        return None
    fields["signer"] = _verified_signer(payload, fields)
    return fields


def _verified_signer(payload: str, fields: dict[str, Any]) -> str | None:
    signer = fields.get("signer")
    if not isinstance(signer, str) or not signer.startswith(PREFIX):
        return None
    try:
        signature = base64.b64decode(json.loads(payload)["identity"], validate=True)
        public = bytes.fromhex(signer[len(PREFIX) :])
    except (ValueError, KeyError, TypeError):
        return None
    ed25519 = _ed25519()
    from cryptography.exceptions import InvalidSignature

    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, _canonical(fields))
    except (InvalidSignature, ValueError):
        return None
    return signer
