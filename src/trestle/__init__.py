"""Trestle: a durable runtime that keeps multi-step plans and agents on track.

The public surface is re-exported here; implementation lives in the submodules.
Model providers, coding tools and test servers live in the subpackages
``trestle.models``, ``trestle.tools`` and ``trestle.testing`` (imported on demand, so
``import trestle`` stays light).
"""

from __future__ import annotations

from trestle.actions import StepContext
from trestle.agent.launch import run_agent, start_agent
from trestle.agent.runtime import AgentPerformer
from trestle.agent.settings import AgentSettings
from trestle.agent.trajectory import ReplayModel, Trajectory, trajectory_of
from trestle.approvals import feedback, find_approval, inbox, submit_decision
from trestle.budget import Budget, Limit
from trestle.card import HandoffCard, build_card
from trestle.checkpoints import Checkpoint, checkpoints, rewind
from trestle.decider import decide, run_status
from trestle.engine import LocalEngine, StepPerformer, StepWork
from trestle.errors import (
    ConfigError,
    LeaseHeldError,
    LeaseLostError,
    MissingExtraError,
    ModelRequestBlockedError,
    NoStoreError,
    PlanError,
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    ProviderResponseError,
    ProviderUnavailableError,
    RunError,
    ScriptExhaustedError,
    StoreDamagedError,
    StoreError,
    TrestleError,
    UnknownRunError,
)
from trestle.events import EVENT_ADAPTER, AlertRaised, AnyEvent, CheckResult, Gate, StoredEvent
from trestle.health import RunHealth, health
from trestle.monitors.alerts import Alert, Monitor
from trestle.monitors.catalog import default_monitors
from trestle.monitors.policy import MonitorSettings
from trestle.plan import Plan, Step
from trestle.planfile import load_plan, parse_plan
from trestle.policy import ActionFacts, Policy, Rule, Scope, TierDecision, action_hash, classify
from trestle.policyfile import load_policy, monitor_settings, operator_policy
from trestle.report import Report, build_report
from trestle.runs import create_run, load_state, request_decision
from trestle.shadow import (
    RestoreConflictError,
    RestoreResult,
    ShadowRepo,
    ShadowRepoError,
    SnapshotRef,
    UnknownSnapshotError,
)
from trestle.state import RunState, fold
from trestle.store import InMemoryStore, SqliteStore, Store

__version__ = "0.1.0"

__all__ = [
    "EVENT_ADAPTER",
    "ActionFacts",
    "AgentPerformer",
    "AgentSettings",
    "Alert",
    "AlertRaised",
    "AnyEvent",
    "Budget",
    "CheckResult",
    "Checkpoint",
    "ConfigError",
    "Gate",
    "HandoffCard",
    "InMemoryStore",
    "LeaseHeldError",
    "LeaseLostError",
    "Limit",
    "LocalEngine",
    "MissingExtraError",
    "ModelRequestBlockedError",
    "Monitor",
    "MonitorSettings",
    "NoStoreError",
    "Plan",
    "PlanError",
    "Policy",
    "ProviderAuthError",
    "ProviderError",
    "ProviderRequestError",
    "ProviderResponseError",
    "ProviderUnavailableError",
    "ReplayModel",
    "Report",
    "RestoreConflictError",
    "RestoreResult",
    "Rule",
    "RunError",
    "RunHealth",
    "RunState",
    "Scope",
    "ScriptExhaustedError",
    "ShadowRepo",
    "ShadowRepoError",
    "SnapshotRef",
    "SqliteStore",
    "Step",
    "StepContext",
    "StepPerformer",
    "StepWork",
    "Store",
    "StoreDamagedError",
    "StoreError",
    "StoredEvent",
    "TierDecision",
    "Trajectory",
    "TrestleError",
    "UnknownRunError",
    "UnknownSnapshotError",
    "__version__",
    "action_hash",
    "build_card",
    "build_report",
    "checkpoints",
    "classify",
    "create_run",
    "decide",
    "default_monitors",
    "feedback",
    "find_approval",
    "fold",
    "health",
    "inbox",
    "load_plan",
    "load_policy",
    "load_state",
    "monitor_settings",
    "operator_policy",
    "parse_plan",
    "request_decision",
    "rewind",
    "run_agent",
    "run_status",
    "start_agent",
    "submit_decision",
    "trajectory_of",
]
