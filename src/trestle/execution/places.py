"""Where an attempt runs, and whether this process can look for what it left behind.

An attempt's leftover processes are found by reading ``/proc``
(:mod:`trestle.execution.processes`), which shows only the processes of one host and
pid namespace: a view (:func:`~trestle.execution.processes.process_view`). A driver or
worker in another view finds nothing, and must not take that for their absence. So an
attempt records where it runs (its :class:`~trestle.core.events.Place`): the local
engine on the ``StepStarted`` it commits before dispatching, a Temporal worker in its
sealed heartbeats (``StepAttemptLost.ran_on``). A probe of an attempt out of sight
looks for nothing and runs no check (``leftovers="unseen"``), and the decider
escalates the step with the host, the pid and the idempotency key to look for there.
"""

from __future__ import annotations

import os
import socket

from trestle.core.events import Place, StepProbeStarted, StepStarted
from trestle.core.state import RunState
from trestle.core.step_state import StepState
from trestle.execution.processes import process_view


def here() -> Place:
    """This process's place: its host, its pid, and which processes it can see."""
    return Place(host=socket.gethostname(), pid=os.getpid(), view=process_view())


def out_of_sight(
    state: RunState, announced: StepStarted | StepProbeStarted, view: str, *, unplaced: bool
) -> bool:
    """Whether ``announced`` is a probe of a lost attempt whose processes a process
    with ``view`` cannot look for (see :func:`unseen`)."""
    if not isinstance(announced, StepProbeStarted) or announced.reason != "unknown_outcome":
        return False
    return unseen(state.steps[announced.step], view, unplaced=unplaced)


def unseen(st: StepState, view: str, *, unplaced: bool) -> bool:
    """Whether the leftover processes of the step's last attempt are out of sight of a
    process with ``view``: the attempt ran elsewhere, or (when ``unplaced``) where is
    not known. One that Trestle itself stopped (its processes killed and seen gone) is
    in sight anywhere.

    ``unplaced`` is what an attempt of unknown place counts as: out of sight for a
    Temporal worker (the lost worker never said where it ran), in sight for a local
    driver (its start was recorded before starts recorded their place: it is probed
    here, as it always was)."""
    if st.interrupted is not None:
        return False
    if st.ran_on is None:
        return unplaced
    return st.ran_on.view != view
