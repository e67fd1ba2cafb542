"""Trestle: a durable runtime that keeps multi-step plans and agents on track.

The public surface is re-exported here; implementation lives in the submodules.
Model providers, coding tools and test servers live in the subpackages
``trestle.models``, ``trestle.tools`` and ``trestle.testing`` (imported on demand, so
``import trestle`` stays light). The names below are loaded on first use too, so a
command that needs little (``trestle --help``) imports little.
"""

from __future__ import annotations

import typing as _typing

from trestle.lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from trestle.actions import StepContext
    from trestle.agent.launch import run_agent, start_agent
    from trestle.agent.runtime import AgentPerformer
    from trestle.agent.settings import AgentSettings
    from trestle.agent.trajectory import ReplayModel, Trajectory, trajectory_of
    from trestle.approvals import feedback, find_approval, inbox, submit_decision
    from trestle.budget import Budget, Limit
    from trestle.cancel import Cancelled, cancel_run, cancel_tree
    from trestle.card import HandoffCard, build_card
    from trestle.checkpoints import Checkpoint, checkpoints, rewind
    from trestle.coordination import Board, BoardValue, Group, Letter, Mailbox, Sent, Written
    from trestle.decider import decide, run_status
    from trestle.engine import LocalEngine, StepPerformer, StepWork
    from trestle.errors import (
        ConfigError,
        LeaseHeldError,
        LeaseLostError,
        MissingExtraError,
        MissingKeyError,
        ModelRequestBlockedError,
        NoStoreError,
        PlanError,
        ProviderAuthError,
        ProviderConnectError,
        ProviderError,
        ProviderRequestError,
        ProviderResponseError,
        ProviderUnavailableError,
        RunCancelledError,
        RunError,
        ScriptExhaustedError,
        StoreDamagedError,
        StoreError,
        TrestleError,
        UnknownGroupError,
        UnknownRunError,
    )
    from trestle.events import EVENT_ADAPTER, AlertRaised, AnyEvent, CheckResult, Gate, StoredEvent
    from trestle.groups import group_of
    from trestle.handoff import HandoffPacket
    from trestle.health import RunHealth, health
    from trestle.monitors.alerts import Alert, Monitor
    from trestle.monitors.catalog import default_monitors
    from trestle.monitors.policy import MonitorSettings
    from trestle.packets import build_packet, sender_packet
    from trestle.plan import ChildAgent, Delegation, Plan, Step
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
    from trestle.topup import Raised, raise_budget

__version__ = "0.1.0"

__all__ = [
    "EVENT_ADAPTER",
    "ActionFacts",
    "AgentPerformer",
    "AgentSettings",
    "Alert",
    "AlertRaised",
    "AnyEvent",
    "Board",
    "BoardValue",
    "Budget",
    "Cancelled",
    "CheckResult",
    "Checkpoint",
    "ChildAgent",
    "ConfigError",
    "Delegation",
    "Gate",
    "Group",
    "HandoffCard",
    "HandoffPacket",
    "InMemoryStore",
    "LeaseHeldError",
    "LeaseLostError",
    "Letter",
    "Limit",
    "LocalEngine",
    "Mailbox",
    "MissingExtraError",
    "MissingKeyError",
    "ModelRequestBlockedError",
    "Monitor",
    "MonitorSettings",
    "NoStoreError",
    "Plan",
    "PlanError",
    "Policy",
    "ProviderAuthError",
    "ProviderConnectError",
    "ProviderError",
    "ProviderRequestError",
    "ProviderResponseError",
    "ProviderUnavailableError",
    "Raised",
    "ReplayModel",
    "Report",
    "RestoreConflictError",
    "RestoreResult",
    "Rule",
    "RunCancelledError",
    "RunError",
    "RunHealth",
    "RunState",
    "Scope",
    "ScriptExhaustedError",
    "Sent",
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
    "UnknownGroupError",
    "UnknownRunError",
    "UnknownSnapshotError",
    "Written",
    "__version__",
    "action_hash",
    "build_card",
    "build_packet",
    "build_report",
    "cancel_run",
    "cancel_tree",
    "checkpoints",
    "classify",
    "create_run",
    "decide",
    "default_monitors",
    "feedback",
    "find_approval",
    "fold",
    "group_of",
    "health",
    "inbox",
    "load_plan",
    "load_policy",
    "load_state",
    "monitor_settings",
    "operator_policy",
    "parse_plan",
    "raise_budget",
    "request_decision",
    "rewind",
    "run_agent",
    "run_status",
    "sender_packet",
    "start_agent",
    "submit_decision",
    "trajectory_of",
]

# name -> the module that defines it, imported the first time the name is used
_EXPORTS = {
    "StepContext": "trestle.actions",
    "run_agent": "trestle.agent.launch",
    "start_agent": "trestle.agent.launch",
    "AgentPerformer": "trestle.agent.runtime",
    "AgentSettings": "trestle.agent.settings",
    "ReplayModel": "trestle.agent.trajectory",
    "Trajectory": "trestle.agent.trajectory",
    "trajectory_of": "trestle.agent.trajectory",
    "feedback": "trestle.approvals",
    "find_approval": "trestle.approvals",
    "inbox": "trestle.approvals",
    "submit_decision": "trestle.approvals",
    "Budget": "trestle.budget",
    "Limit": "trestle.budget",
    "Cancelled": "trestle.cancel",
    "cancel_run": "trestle.cancel",
    "cancel_tree": "trestle.cancel",
    "HandoffCard": "trestle.card",
    "HandoffPacket": "trestle.handoff",
    "build_packet": "trestle.packets",
    "sender_packet": "trestle.packets",
    "build_card": "trestle.card",
    "Checkpoint": "trestle.checkpoints",
    "checkpoints": "trestle.checkpoints",
    "rewind": "trestle.checkpoints",
    "Board": "trestle.coordination",
    "BoardValue": "trestle.coordination",
    "Group": "trestle.coordination",
    "Letter": "trestle.coordination",
    "Mailbox": "trestle.coordination",
    "Sent": "trestle.coordination",
    "Written": "trestle.coordination",
    "decide": "trestle.decider",
    "run_status": "trestle.decider",
    "LocalEngine": "trestle.engine",
    "StepPerformer": "trestle.engine",
    "StepWork": "trestle.engine",
    "ConfigError": "trestle.errors",
    "LeaseHeldError": "trestle.errors",
    "LeaseLostError": "trestle.errors",
    "MissingExtraError": "trestle.errors",
    "MissingKeyError": "trestle.errors",
    "ModelRequestBlockedError": "trestle.errors",
    "NoStoreError": "trestle.errors",
    "PlanError": "trestle.errors",
    "ProviderAuthError": "trestle.errors",
    "ProviderConnectError": "trestle.errors",
    "ProviderError": "trestle.errors",
    "ProviderRequestError": "trestle.errors",
    "ProviderResponseError": "trestle.errors",
    "ProviderUnavailableError": "trestle.errors",
    "RunCancelledError": "trestle.errors",
    "RunError": "trestle.errors",
    "ScriptExhaustedError": "trestle.errors",
    "StoreDamagedError": "trestle.errors",
    "StoreError": "trestle.errors",
    "TrestleError": "trestle.errors",
    "UnknownGroupError": "trestle.errors",
    "UnknownRunError": "trestle.errors",
    "EVENT_ADAPTER": "trestle.events",
    "AlertRaised": "trestle.events",
    "AnyEvent": "trestle.events",
    "CheckResult": "trestle.events",
    "Gate": "trestle.events",
    "StoredEvent": "trestle.events",
    "group_of": "trestle.groups",
    "RunHealth": "trestle.health",
    "health": "trestle.health",
    "Alert": "trestle.monitors.alerts",
    "Monitor": "trestle.monitors.alerts",
    "default_monitors": "trestle.monitors.catalog",
    "MonitorSettings": "trestle.monitors.policy",
    "ChildAgent": "trestle.plan",
    "Delegation": "trestle.plan",
    "Plan": "trestle.plan",
    "Step": "trestle.plan",
    "load_plan": "trestle.planfile",
    "parse_plan": "trestle.planfile",
    "ActionFacts": "trestle.policy",
    "Policy": "trestle.policy",
    "Rule": "trestle.policy",
    "Scope": "trestle.policy",
    "TierDecision": "trestle.policy",
    "action_hash": "trestle.policy",
    "classify": "trestle.policy",
    "load_policy": "trestle.policyfile",
    "monitor_settings": "trestle.policyfile",
    "operator_policy": "trestle.policyfile",
    "Report": "trestle.report",
    "build_report": "trestle.report",
    "create_run": "trestle.runs",
    "load_state": "trestle.runs",
    "request_decision": "trestle.runs",
    "RestoreConflictError": "trestle.shadow",
    "RestoreResult": "trestle.shadow",
    "ShadowRepo": "trestle.shadow",
    "ShadowRepoError": "trestle.shadow",
    "SnapshotRef": "trestle.shadow",
    "UnknownSnapshotError": "trestle.shadow",
    "RunState": "trestle.state",
    "fold": "trestle.state",
    "Raised": "trestle.topup",
    "raise_budget": "trestle.topup",
    "InMemoryStore": "trestle.store",
    "SqliteStore": "trestle.store",
    "Store": "trestle.store",
}


__getattr__ = _lazy_exports(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
