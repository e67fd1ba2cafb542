"""What the SDK-backed providers share: the call path, error mapping and usage.

:class:`SDKModel` runs one call: check the request guard, build the SDK's arguments,
send them through the :class:`~trestle.models.retry.Retrier`, turn the reply into a
:class:`~trestle.core.conversation.ModelResponse` and price it. Subclasses
(:class:`~trestle.models.openai.OpenAIModel`,
:class:`~trestle.models.anthropic.AnthropicModel`) only translate records to and from
their wire format. Both official SDKs share one error hierarchy shape
(``APIStatusError`` with ``status_code`` and ``response``, ``APIConnectionError``,
``APITimeoutError``), which :func:`translate_sdk_error` maps onto Trestle's errors.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import random
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar
from urllib.parse import urlsplit

from trestle.core.conversation import (
    MAX_ANSWER,
    Message,
    ModelResponse,
    ToolCall,
    ToolSchema,
    Usage,
)
from trestle.core.errors import (
    MissingExtraError,
    ProviderAuthError,
    ProviderConnectError,
    ProviderRequestError,
    ProviderResponseError,
)
from trestle.core.estimate import estimate_text_tokens, estimate_tokens
from trestle.models.guard import ensure_request_allowed
from trestle.models.pricing import DEFAULT_PRICES, PriceTable
from trestle.models.retry import (
    RETRYABLE_STATUSES,
    Retrier,
    RetryableFailure,
    RetryPolicy,
    Sleep,
    parse_retry_after,
)

DEFAULT_TIMEOUT = 300.0
# A usage count below the offline estimate divided by this is replaced by the estimate:
# the estimate is about 4 characters a token, and no tokenizer packs 128 characters in
# one but on long runs of one character. It catches a server reporting nothing or next
# to nothing; one that under-reports by less still moves the budget less than it spent.
UNDER_REPORTED = 32
# The most of one answer's body read, decoded: MAX_ANSWER characters at up to six bytes
# each in JSON (``\uXXXX``, as Python's json writes anything not ASCII), and the rest of
# the reply. A server's 1 GB answer was read whole (4.2 GB of the driver's memory), and
# again on each retry, before the answer's length was checked.
ANSWER_BYTES_MOST = 6 * MAX_ANSWER + (1 << 20)
_BODY_EXCERPT = 2000
_REASON_LIMIT = 64  # characters of a finish reason kept: it is a label, not a message


def import_sdk(module: str, extra: str) -> ModuleType:
    """Import an optional SDK, or say which extra installs it.

    Raises:
        MissingExtraError: the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, extra) from exc


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message, short: a validation error can quote a huge input."""
    text = str(exc).strip().splitlines()
    first = " ".join(line.strip() for line in text[:3])
    return first if len(first) <= limit else first[:limit] + "…"


def finish_reason(raw: object, known: Mapping[str, str]) -> str:
    """The normalised finish reason: ``known``'s name for it, else the reason as sent
    (as text, cut to a label's length), or ``"unknown"`` when there is none. A reason
    that is not text is no reason to refuse the whole answer."""
    if raw is None or raw == "":
        return "unknown"
    reason = raw if isinstance(raw, str) else str(raw)
    return known.get(reason, reason[:_REASON_LIMIT])


@dataclass(frozen=True)
class ParsedReply:
    """A provider's reply, unpacked from the SDK object; token counts None when unreported."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    model: str
    input_tokens: int | None
    output_tokens: int | None


def _body_text(exc: Any) -> str | None:
    try:
        text = exc.response.text
    except Exception:  # a streamed or closed response has no text to give
        return None
    return text if isinstance(text, str) else None


def _excerpt(body: str | None) -> str:
    """What the server said, for a message: the error's own words when the body is an
    API error (:func:`error_words`), else the body, cut at ``_BODY_EXCERPT`` characters.
    The whole body stays on the error (``body=``) and in the run's records."""
    if not body:
        return "(empty body)"
    # on one line, as error_words makes an API error's: the message becomes a step's
    # error, a line of the report and the progress, and a body's lines read as theirs
    text = error_words(body) or " ".join(body.split())
    if len(text) <= _BODY_EXCERPT:
        return text
    return text[:_BODY_EXCERPT] + f"... ({len(text) - _BODY_EXCERPT} more characters)"


def error_words(body: str) -> str | None:
    """The message of an API error body, its lines joined, with its type: the shape
    OpenAI, Anthropic and the servers copying them send (``{"error": {"message": ...,
    "type": ...}}``), or ``{"error": "..."}`` as some local servers do; None for any
    other body. A proxy's message often spans lines (LiteLLM's does), which would
    break the one-line error a CLI prints."""
    if len(body) > 64 * _BODY_EXCERPT:  # an error body is small; a page is not one
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        message, kind = error.get("message"), error.get("type")
    else:
        message, kind = error, None
    if not isinstance(message, str) or not message.strip():
        return None
    words = " ".join(message.split())
    return f"{words} ({kind})" if isinstance(kind, str) and kind.strip() else words


def wrong_address(exc: BaseException, url: str) -> str | None:
    """Why ``url`` cannot be reached, when the failure behind ``exc`` says the address
    is wrong (the connection refused, the host unknown); None for anything a retry may
    fix (a reset, a timeout)."""
    for current in _chain(exc):
        if isinstance(current, ConnectionRefusedError):
            return f"cannot connect to {url!r}: connection refused (is the server running there?)"
        if isinstance(current, socket.gaierror):
            host = urlsplit(url).hostname
            return f"cannot connect to {url!r}: host {host!r} not found ({current.strerror})"
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or during, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unreachable(url: str, *, timeout: float = 3.0) -> str | None:
    """Why nothing can be sent to ``url``, found by connecting to its host and port (no
    request is sent): the host has no address, or the connection is refused. None when
    a connection opens, or fails in a way a retry may fix."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:
        return f"{url!r} is not a URL with a host"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"{url!r} has no valid port"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return wrong_address(exc, url)


def _under(count: object, estimate: int) -> bool:
    """Whether ``count`` is a count of tokens far below the ``estimate`` of them."""
    return type(count) is int and 0 <= count < estimate // UNDER_REPORTED


def bounded_client(sdk: ModuleType, what: str) -> Any:
    """The SDK's own HTTP client, with its defaults, reading each answer of ``what``
    up to :data:`ANSWER_BYTES_MOST` decoded bytes (:mod:`trestle.support.bounded_http`)."""
    from trestle.support.bounded_http import bounded_hooks  # httpx2: the SDK's, on use

    return sdk.DefaultAsyncHttpxClient(event_hooks=bounded_hooks(ANSWER_BYTES_MOST, what))


def _refused_body(exc: BaseException) -> str | None:
    """Why the body behind ``exc`` was not read on (too long, an encoding not asked
    for), if that is what failed."""
    from trestle.support.bounded_http import BodyRefused

    return next((str(e) for e in _chain(exc) if isinstance(e, BodyRefused)), None)


def translate_sdk_error(
    exc: Exception, sdk: ModuleType, *, provider: str, target: str, now: float
) -> Exception | None:
    """Map an SDK exception onto what the retrier and the caller understand.

    Returns:
        A :class:`RetryableFailure` (429, 5xx, 408, 409, timeouts, connection errors,
        or ``x-should-retry: true``), a :class:`ProviderError` subclass to raise as is,
        or None when ``exc`` is not one of the SDK's errors.
    """
    if isinstance(exc, sdk.APIStatusError):
        status = int(exc.status_code)
        body = _body_text(exc)
        headers = exc.response.headers
        where = f"{provider} at {target!r}"
        if status in (401, 403):
            return ProviderAuthError(
                f"{where} refused the credentials (HTTP {status}): {_excerpt(body)}",
                provider=provider,
                status=status,
                body=body,
            )
        should_retry = headers.get("x-should-retry")
        if should_retry == "true" or (status in RETRYABLE_STATUSES and should_retry != "false"):
            return RetryableFailure(
                f"HTTP {status}: {_excerpt(body)}",
                status=status,
                body=body,
                retry_after=parse_retry_after(headers, now),
            )
        hint = " (check the model name and the base URL)" if status == 404 else ""
        return ProviderRequestError(
            f"{where} refused the request (HTTP {status}){hint}: {_excerpt(body)}",
            provider=provider,
            status=status,
            body=body,
        )
    if isinstance(exc, sdk.APITimeoutError):
        return RetryableFailure("the request timed out")
    refused = _refused_body(exc)
    if refused is not None:  # not retried: the server would only send it again
        return ProviderResponseError(refused, provider=provider)
    if isinstance(exc, sdk.APIConnectionError):
        wrong = wrong_address(exc, target)
        if wrong is not None:
            return ProviderConnectError(f"{provider}: {wrong}", provider=provider)
        cause = exc.__cause__ or exc
        return RetryableFailure(f"connection failed: {type(cause).__name__}: {cause}")
    if isinstance(exc, sdk.APIError):
        return ProviderResponseError(
            f"{provider} at {target!r} sent a reply that could not be read: {exc}",
            provider=provider,
        )
    return None


def not_json(provider: str, target: str, body: str | bytes) -> ProviderResponseError:
    """A reply whose body is not JSON: both SDKs hand such a body back as text instead
    of failing (a proxy's HTML error page sent as ``text/plain``, a web server that is
    not the API). It is the server's failure, said with what it sent, not an empty answer
    from the model."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    shown = " ".join(text.split())[:300] or "(empty body)"
    return ProviderResponseError(
        f"{provider} at {target!r} answered with a body that is not JSON (is the base URL "
        f"the API's, and is nothing in between answering for it?): {shown}",
        provider=provider,
        body=text,
    )


class SDKModel(ABC):
    """The call path shared by the providers built on an official SDK.

    Args:
        model: the provider's model id, e.g. ``"gpt-4o-mini"``.
        prices: the price table for :attr:`Usage.cost`; :data:`DEFAULT_PRICES` if None.
        retry: attempts and waits; :class:`RetryPolicy` defaults if None.
        sleep: awaited between retries (tests inject one that does not wait).
        rng: the source of backoff jitter.
        clock: wall-clock time, for ``Retry-After`` dates.
    """

    provider: ClassVar[str]
    # seconds a whole answer may take: the SDKs' own timeout is a read's, so a server
    # sending a byte a second never timed out (the step's timeout ended it, 30 minutes on)
    timeout: float = DEFAULT_TIMEOUT

    def __init__(
        self,
        model: str,
        *,
        prices: PriceTable | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.name = f"{self.provider}:{model}"
        self.prices = prices if prices is not None else DEFAULT_PRICES
        self.retrier = Retrier(retry, sleep=sleep, rng=rng, clock=clock)

    # Set by each subclass's constructor.
    _base_url: str
    _module: ModuleType
    _client: Any

    @property
    def base_url(self) -> str:
        """The API root requests go to."""
        return self._base_url

    async def aclose(self) -> None:
        """Close the SDK client's connections."""
        await self._client.close()

    @abstractmethod
    def _request(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema],
        max_tokens: int | None,
        temperature: float | None,
    ) -> dict[str, Any]:
        """The keyword arguments of the SDK's create call."""

    @abstractmethod
    async def _create(self, request: dict[str, Any]) -> Any:
        """Send one request with the SDK; return its reply object."""

    @abstractmethod
    def _parse(self, reply: Any) -> ParsedReply:
        """Unpack the SDK's reply object."""

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSchema] = (),
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelResponse:
        """Send the conversation; retry transient failures; return the priced answer.

        Raises:
            ModelRequestBlockedError: requests are blocked and the base URL is not loopback.
            ProviderAuthError: the credentials were refused (401/403).
            ProviderRequestError: the request was refused (400, 404, 422, ...).
            ProviderUnavailableError: transient failures outlasted the retry budget.
            ProviderResponseError: the reply could not be understood.
        """
        ensure_request_allowed(self.provider, self.base_url)
        request = self._request(messages, tools, max_tokens, temperature)
        reply = await self.retrier.run(
            lambda: self._send(request), provider=self.provider, target=self.base_url
        )
        if isinstance(reply, str | bytes):
            raise not_json(self.provider, self.base_url, reply)
        try:
            parsed = self._parse(reply)
            # inside the try: a validation error (negative or non-finite usage, a
            # name that is not text) is a reply that cannot be understood
            return ModelResponse(
                text=parsed.text,
                tool_calls=parsed.tool_calls,
                usage=self._usage(parsed, messages, tools),
                finish_reason=parsed.finish_reason,
                model=parsed.model or self.model,
            )
        except (
            AttributeError,
            KeyError,
            TypeError,
            ValueError,
            OverflowError,
            RecursionError,  # arguments sent as an object nested too deep to re-encode
        ) as exc:
            raise ProviderResponseError(
                f"{self.provider} at {self.base_url!r} sent a reply of an unexpected "
                f"shape: {type(exc).__name__}: {_first_line(exc)}",
                provider=self.provider,
            ) from exc

    async def _send(self, request: dict[str, Any]) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._create(request)
        except TimeoutError:
            raise RetryableFailure(f"no whole answer within {self.timeout:g} s") from None
        except Exception as exc:
            mapped = translate_sdk_error(
                exc,
                self._module,
                provider=self.provider,
                target=self.base_url,
                now=self.retrier.clock(),
            )
            if mapped is not None:
                raise mapped from exc
            # the SDK could not decode the body it got (a RecursionError: JSON nested
            # 100,000 deep)
            if isinstance(exc, ValueError | RecursionError):
                raise ProviderResponseError(
                    f"{self.provider} at {self.base_url!r} sent a body that could not be "
                    f"read: {type(exc).__name__}: {_first_line(exc)}",
                    provider=self.provider,
                ) from exc
            raise

    def _usage(
        self, parsed: ParsedReply, messages: Sequence[Message], tools: Sequence[ToolSchema]
    ) -> Usage:
        # what the request and the answer hold, estimated offline: a count the server
        # reports far below it (0 tokens for a 10,000-token prompt let a run past its
        # token limit, 16 calls where 4 were allowed) is not believed
        sent = estimate_tokens(messages, tools)
        said = estimate_text_tokens(parsed.text) + sum(
            estimate_text_tokens(c.name) + estimate_text_tokens(c.arguments)
            for c in parsed.tool_calls
        )
        input_tokens, output_tokens = parsed.input_tokens, parsed.output_tokens
        estimated = False
        # a count that is not one (negative, not finite, text) stays as it is: Usage
        # refuses it, and the reply cannot be understood
        if input_tokens is None or _under(input_tokens, sent):
            input_tokens, estimated = sent, True
        if output_tokens is None or _under(output_tokens, said):
            output_tokens, estimated = said, True
        # the higher of the two prices known: the reply names its model, so a server
        # that named a cheaper one than configured made every call cost less
        costs = [
            c
            for c in {
                self.prices.cost(m, input_tokens, output_tokens) for m in (parsed.model, self.model)
            }
            if c is not None
        ]
        cost = max(costs) if costs else None
        return Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            estimated=estimated,
        )
