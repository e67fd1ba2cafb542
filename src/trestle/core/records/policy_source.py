"""Where a run's operator policy came from, recorded in its first event.

A ``trestle.toml`` that a step could have written is obeyed only once a human accepted
it, pinned by its SHA-256 (``trestle.trust.policy_trust`` holds the check and the IO); the
run records which file it obeyed, its hash, and why it was trusted, so its header,
``trestle show`` and its report can say which policy it runs under.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from trestle.core.record import Record

# "accepted": a file a step could write (in the workspace or its repository), obeyed
#   because a human accepted exactly these bytes
# "outside": a file named with --policy outside the workspace and its repository,
#   trusted as the operator's own
# "none": no file; the plan's policy and the defaults apply
Trust = Literal["accepted", "outside", "none"]


class PolicySource(Record):
    """The operator policy file a run obeys, and why it may."""

    trust: Trust
    path: str | None = None
    sha256: str | None = None
    accepted_at: float | None = None  # for "accepted": when a human accepted this hash

    def describe(self) -> str:
        """One line for a header or a report, e.g. ``/w/trestle.toml (sha256
        3f2a...c9d1, accepted 2026-11-24 17:29 UTC)``."""
        if self.trust == "none" or self.path is None:
            return "no policy file: the plan's policy and the defaults"
        digest = short_digest(self.sha256) if self.sha256 else "no hash"
        if self.trust == "outside":
            why = "outside the workspace: trusted as yours"
        elif self.accepted_at is not None:
            why = f"accepted {when(self.accepted_at)}"
        else:
            why = "accepted"
        return f"{self.path} (sha256 {digest}, {why})"


def policy_line(source: PolicySource | None, *, has_policy: bool) -> str:
    """Which policy a run runs under, for its report: ``source`` described, or for a run
    that did not record one (made before it was recorded, or by the Python API without
    saying), as much as its first event tells."""
    if source is not None:
        return source.describe()
    if has_policy:
        return "an operator policy from a file not recorded with the run"
    return PolicySource(trust="none").describe()


def short_digest(sha256: str) -> str:
    """The first and last 8 hex digits: enough to tell two files apart at a glance."""
    return f"{sha256[:8]}...{sha256[-8:]}" if len(sha256) > 16 else sha256


def when(at: float) -> str:
    """A moment as ``2026-11-24 17:29 UTC``."""
    # a pure conversion of a recorded moment, not a reading of the clock
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
