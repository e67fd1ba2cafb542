"""A switch that keeps tests from calling real model providers.

While requests are blocked, a provider refuses to send to any base URL that is not a
loopback address (``127.0.0.0/8``, ``localhost``, ``::1``), so a test that forgot to
point a model at :mod:`trestle.testing`'s servers fails at once, with an error that
says so, instead of spending money or hanging on the network.

Block in either of two ways:

- set the environment variable ``TRESTLE_BLOCK_MODEL_REQUESTS=1`` (e.g. in a test
  suite's ``conftest.py`` or CI environment);
- wrap code in ``with block_model_requests():``. The context manager wins over the
  environment, so ``block_model_requests(False)`` lifts the block for a block of code.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import urlsplit

from trestle.core.errors import ModelRequestBlockedError

BLOCK_ENV_VAR = "TRESTLE_BLOCK_MODEL_REQUESTS"

_FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})

# A ContextVar rather than a module flag, so concurrent tests and tasks do not see
# each other's setting; asyncio tasks inherit the value current when they start.
_blocked: ContextVar[bool | None] = ContextVar("trestle_block_model_requests", default=None)


def model_requests_blocked() -> bool:
    """True when providers must refuse non-loopback requests."""
    override = _blocked.get()
    if override is not None:
        return override
    return os.environ.get(BLOCK_ENV_VAR, "").strip().lower() not in _FALSE_WORDS


@contextmanager
def block_model_requests(blocked: bool = True) -> Iterator[None]:
    """Block (or, with ``blocked=False``, allow) non-loopback model requests within the block."""
    token = _blocked.set(blocked)
    try:
        yield
    finally:
        _blocked.reset(token)


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is this machine: ``localhost``, ``127.0.0.0/8`` or ``::1``."""
    host = urlsplit(url).hostname
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def may_connect(base_url: str) -> bool:
    """Whether anything may be sent to ``base_url`` now (see the module)."""
    return not model_requests_blocked() or is_loopback_url(base_url)


def ensure_request_allowed(provider: str, base_url: str) -> None:
    """Refuse a request to ``base_url`` while requests are blocked, unless it is loopback.

    Raises:
        ModelRequestBlockedError: requests are blocked and ``base_url`` is not loopback.
    """
    if model_requests_blocked() and not is_loopback_url(base_url):
        raise ModelRequestBlockedError(
            f"{provider}: refusing to send a model request to {base_url!r}: real model "
            f"requests are blocked ({BLOCK_ENV_VAR} or block_model_requests()); point the "
            "model at a loopback server such as trestle.testing.OpenAIServer, or use a "
            "ScriptedModel"
        )
