"""Tools a model may call, behind one gate: the abstraction, the registry and the
coding tools. See ``docs/tools.md``."""

from trestle.tools.artifacts import FetchArtifact
from trestle.tools.base import (
    BlockingTool,
    GatedCall,
    GateVerdict,
    Observation,
    Tool,
    ToolArgs,
    ToolContext,
    ToolFailure,
    ToolGate,
)
from trestle.tools.coding import coding_registry, coding_tools
from trestle.tools.commands import RunCommand, RunTests
from trestle.tools.edits import EditFile, WriteFile
from trestle.tools.env import command_env, is_secret
from trestle.tools.files import ListFiles, ReadFile, SearchText
from trestle.tools.finish import Finish, FinishClaim, finish_claim
from trestle.tools.gitdiff import GitDiff
from trestle.tools.registry import ToolRegistry

__all__ = [
    "BlockingTool",
    "EditFile",
    "FetchArtifact",
    "Finish",
    "FinishClaim",
    "GateVerdict",
    "GatedCall",
    "GitDiff",
    "ListFiles",
    "Observation",
    "ReadFile",
    "RunCommand",
    "RunTests",
    "SearchText",
    "Tool",
    "ToolArgs",
    "ToolContext",
    "ToolFailure",
    "ToolGate",
    "ToolRegistry",
    "WriteFile",
    "coding_registry",
    "coding_tools",
    "command_env",
    "finish_claim",
    "is_secret",
]
