"""Build a provider from a ``PROVIDER:MODEL`` string, as the CLI's ``--model`` takes it."""

from __future__ import annotations

from typing import Any

from trestle.core.conversation import Model
from trestle.core.errors import ConfigError

PROVIDERS = ("anthropic", "openai")


def model_from_spec(
    spec: str, *, base_url: str | None = None, api_key: str | None = None, **options: Any
) -> Model:
    """Build the model named by ``spec``, e.g. ``"openai:gpt-4o-mini"``.

    Args:
        spec: ``PROVIDER:MODEL``; the provider is ``openai`` (any OpenAI-compatible
            server, with ``base_url``) or ``anthropic``.
        base_url: the server's API root, if not the provider's own.
        api_key: the key, if not from the provider's environment variable.
        **options: passed on to the provider's constructor (``timeout``, ``retry``, ...).

    Raises:
        ConfigError: the spec is malformed or names an unknown provider.
        MissingExtraError: the provider's SDK is not installed.
    """
    provider, sep, model = spec.partition(":")
    if not sep or not provider or not model:
        raise ConfigError(
            f"model {spec!r}: expected PROVIDER:MODEL, e.g. 'openai:gpt-4o-mini' or "
            "'anthropic:claude-sonnet-4-6'"
        )
    if provider == "openai":
        from trestle.models.openai import OpenAIModel

        return OpenAIModel(model, base_url=base_url, api_key=api_key, **options)
    if provider == "anthropic":
        from trestle.models.anthropic import AnthropicModel

        return AnthropicModel(model, base_url=base_url, api_key=api_key, **options)
    raise ConfigError(
        f"model {spec!r}: unknown provider {provider!r}; known: {', '.join(PROVIDERS)}"
    )
