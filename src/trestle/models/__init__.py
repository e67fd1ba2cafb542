"""Models behind one protocol: OpenAI-compatible, Anthropic, scripted and function models.

The SDK-backed providers (:class:`OpenAIModel`, :class:`AnthropicModel`) load on first
use, and their SDKs only when a model is built, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trestle.core.conversation import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    Role,
    ToolCall,
    ToolSchema,
    Usage,
    canonical_json,
    request_hash,
)
from trestle.core.estimate import estimate_tokens
from trestle.models.guard import (
    BLOCK_ENV_VAR,
    block_model_requests,
    is_loopback_url,
    model_requests_blocked,
)
from trestle.models.pricing import DEFAULT_PRICES, Price, PriceTable
from trestle.models.retry import RetryPolicy
from trestle.models.scripted import FunctionModel, ScriptedModel
from trestle.models.spec import model_from_spec
from trestle.support.lazy import lazy_exports

if TYPE_CHECKING:
    from trestle.models.anthropic import AnthropicModel
    from trestle.models.openai import OpenAIModel

_LAZY = {
    "AnthropicModel": "trestle.models.anthropic",
    "OpenAIModel": "trestle.models.openai",
}


__getattr__ = lazy_exports(__name__, _LAZY, globals())

__all__ = [
    "BLOCK_ENV_VAR",
    "DEFAULT_PRICES",
    "AnthropicModel",
    "FunctionModel",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "OpenAIModel",
    "Price",
    "PriceTable",
    "RetryPolicy",
    "Role",
    "ScriptedModel",
    "ToolCall",
    "ToolSchema",
    "Usage",
    "block_model_requests",
    "canonical_json",
    "estimate_tokens",
    "is_loopback_url",
    "model_from_spec",
    "model_requests_blocked",
    "request_hash",
]
