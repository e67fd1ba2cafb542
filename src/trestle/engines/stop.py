"""Stopping a drive: what the CLI's signal handlers, a parent run and a worker ask of
an engine's drive."""

from __future__ import annotations

import asyncio


class Stop:
    """Asks a drive to end now (the CLI's answer to SIGINT, SIGTERM and SIGHUP).

    The engine cancels its running attempts (a command's process group is killed and
    waited for), records ``RunInterrupted`` naming ``reason`` and the steps it stopped,
    and ends the drive. A resume re-runs those steps (after probing their checks)
    without counting a failure: Trestle knows they did not finish. Make one per
    event loop.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._event = asyncio.Event()

    def request(self, reason: str) -> None:
        """Ask for the stop; the first reason given is the one recorded."""
        if self.reason is None:
            self.reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self.reason is not None

    async def wait(self) -> None:
        await self._event.wait()
