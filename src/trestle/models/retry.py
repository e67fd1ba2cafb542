"""Retrying model calls: exponential backoff with jitter, honouring ``Retry-After``.

Providers turn the SDKs' own retries off and retry here instead, so every provider
retries the same failures the same way, within one bounded budget, with a sleep that
tests replace. A provider's send function raises :class:`RetryableFailure` for a failure
worth another attempt (429, 5xx, timeouts, lost connections) and a
:class:`~trestle.core.errors.ProviderError` for one that is not (bad credentials, a bad
request): those pass straight through.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from trestle.core.errors import ConfigError, ProviderUnavailableError

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[object]]

# HTTP statuses that say "try again later" rather than "this request is wrong".
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429}) | frozenset(range(500, 600))


class RetryableFailure(Exception):
    """A failed attempt that another attempt may fix.

    Args:
        description: what went wrong, for the final error message.
        status: the HTTP status, or None when no response arrived.
        body: the response body, if any.
        retry_after: seconds the server asked us to wait, if it said.
    """

    def __init__(
        self,
        description: str,
        *,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.description = description
        self.status = status
        self.body = body
        self.retry_after = retry_after
        super().__init__(description)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try.

    Attributes:
        max_attempts: requests sent at most, the first included.
        initial_delay: the backoff before the first retry, in seconds; it doubles
            with each retry, up to ``max_delay``.
        max_delay: the longest computed backoff. A server's ``Retry-After`` is
            honoured even when longer, as long as it fits in ``max_total_wait``.
        max_total_wait: seconds spent waiting between attempts, in total, at most.
        jitter: the fraction of each computed backoff that is randomised away, so
            clients that failed together do not retry together.
    """

    max_attempts: int = 5
    initial_delay: float = 1.0
    max_delay: float = 30.0
    max_total_wait: float = 120.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"retry policy: max_attempts must be >= 1, got {self.max_attempts}")
        if min(self.initial_delay, self.max_delay, self.max_total_wait) < 0:
            raise ConfigError("retry policy: delays must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"retry policy: jitter must be within [0, 1], got {self.jitter}")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The computed wait before retry number ``retry`` (1 for the first retry)."""
        full = min(self.max_delay, self.initial_delay * 2.0 ** (retry - 1))
        return full * (1 - self.jitter * rng.random())


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds a response asks the client to wait, or None when it does not say.

    Reads ``retry-after-ms`` (milliseconds, sent by OpenAI), then ``retry-after`` as
    either seconds or an HTTP date. A date in the past means no wait.

    Args:
        headers: the response headers (any case).
        now: the current wall-clock time, as ``time.time()``, for HTTP dates.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    millis = lower.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # a malformed date without a zone; HTTP dates are GMT
        return None
    return max(0.0, when.timestamp() - now)


class Retrier:
    """Runs a send function until it succeeds, fails for good, or the budget runs out.

    Args:
        policy: attempts and waits allowed.
        sleep: awaited between attempts (``asyncio.sleep`` if None); tests pass one
            that records and returns.
        rng: the jitter's source of randomness.
        clock: wall-clock time, to turn a ``Retry-After`` date into seconds.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.sleep: Sleep = sleep or asyncio.sleep
        self.rng = rng or random.Random()
        self.clock = clock

    async def run(self, send: Callable[[], Awaitable[T]], *, provider: str, target: str) -> T:
        """Await ``send()`` until it returns, retrying each :class:`RetryableFailure`.

        Args:
            send: one attempt; raises :class:`RetryableFailure` to ask for another.
            provider: named in the error, e.g. ``"openai"``.
            target: where the requests go, named in the error (the base URL).

        Raises:
            ProviderUnavailableError: the attempts or the total wait ran out; it
                carries the last failure's status and body.
        """
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                return await send()
            except RetryableFailure as failure:
                last = failure
            if attempt >= self.policy.max_attempts:
                reason = "no attempts left"
                raise self._give_up(last, provider, target, attempt, waited, reason) from last
            if last.retry_after is not None:
                delay = last.retry_after
            else:
                delay = self.policy.backoff(attempt, self.rng)
            if waited + delay > self.policy.max_total_wait:
                reason = (
                    f"waiting {delay:.1f}s more would pass the "
                    f"{self.policy.max_total_wait:.0f}s retry budget"
                )
                raise self._give_up(last, provider, target, attempt, waited, reason) from last
            await self.sleep(delay)
            waited += delay

    @staticmethod
    def _give_up(
        last: RetryableFailure,
        provider: str,
        target: str,
        attempts: int,
        waited: float,
        reason: str,
    ) -> ProviderUnavailableError:
        message = (
            f"{provider} at {target!r} is unavailable: {last.description} "
            f"(gave up after {attempts} attempt{'s' if attempts != 1 else ''} and "
            f"{waited:.1f}s of waiting: {reason})"
        )
        return ProviderUnavailableError(
            message, provider=provider, attempts=attempts, status=last.status, body=last.body
        )
