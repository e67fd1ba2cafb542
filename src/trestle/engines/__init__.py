"""Engines: what drives the pure core (``trestle.core``) and owns the IO around it.

An engine persists each event before acting on it, executes the attempts and probes
those events announce, and feeds their outcomes back as events. ``local`` drives runs
in this process with asyncio (:class:`~trestle.engines.local.LocalEngine`, also
``trestle.LocalEngine``); ``delegation`` is its part of a delegating step, the child
run created or found and driven.
"""
