"""Trestle: a durable runtime that keeps multi-step plans and agents on track.

The public surface is re-exported here; implementation lives in the submodules.
"""

from __future__ import annotations

from trestle.actions import StepContext
from trestle.decider import decide, run_status
from trestle.engine import LocalEngine
from trestle.errors import (
    ConfigError,
    LeaseHeldError,
    LeaseLostError,
    PlanError,
    RunError,
    StoreError,
    TrestleError,
    UnknownRunError,
)
from trestle.events import EVENT_ADAPTER, AnyEvent, CheckResult, StoredEvent
from trestle.plan import Plan, Step
from trestle.planfile import load_plan, parse_plan
from trestle.report import Report, build_report
from trestle.runs import create_run, load_state, request_decision
from trestle.state import RunState, fold
from trestle.store import InMemoryStore, SqliteStore, Store

__version__ = "0.1.0"

__all__ = [
    "EVENT_ADAPTER",
    "AnyEvent",
    "CheckResult",
    "ConfigError",
    "InMemoryStore",
    "LeaseHeldError",
    "LeaseLostError",
    "LocalEngine",
    "Plan",
    "PlanError",
    "Report",
    "RunError",
    "RunState",
    "SqliteStore",
    "Step",
    "StepContext",
    "Store",
    "StoreError",
    "StoredEvent",
    "TrestleError",
    "UnknownRunError",
    "__version__",
    "build_report",
    "create_run",
    "decide",
    "fold",
    "load_plan",
    "load_state",
    "parse_plan",
    "request_decision",
    "run_status",
]
