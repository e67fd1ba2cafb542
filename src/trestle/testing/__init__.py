"""Test doubles that ship with Trestle: loopback servers for the real provider SDKs.

:class:`OpenAIServer` and :class:`AnthropicServer` listen on 127.0.0.1, answer from a
queue of scripted replies and record every request, so tests run the real ``openai``
and ``anthropic`` clients without the network. For tests that need no HTTP at all, see
:class:`trestle.models.ScriptedModel` and :class:`trestle.models.FunctionModel`.
"""

from __future__ import annotations

from trestle.testing.anthropic_server import AnthropicServer
from trestle.testing.loopback import LoopbackServer, RecordedRequest, ScriptedReply
from trestle.testing.openai_server import OpenAIServer
from trestle.testing.sleep import RecordingSleep

__all__ = [
    "AnthropicServer",
    "LoopbackServer",
    "OpenAIServer",
    "RecordedRequest",
    "RecordingSleep",
    "ScriptedReply",
]
