"""Who drives a run, and for how long: the owner a process drives as, and the lease's
timings that every driver and every decision that waits on one share."""

from __future__ import annotations

import os
import socket

from trestle.store.base import Owner

DEFAULT_LEASE_TTL = 15.0  # seconds; renewed every third of it, the driver's heartbeat
FINISH_WAIT = 30.0  # on a stop: how long an attempt that cannot be stopped may finish


def this_process(name: str = "trestle") -> Owner:
    return Owner(name=f"{name}[{os.getpid()}]", pid=os.getpid(), host=socket.gethostname())
