"""Monitors: watch a run's event stream for failure modes and act on what they find.

- ``trace``: what monitors read (turns, step ends, stalls) and the run's facts;
- ``alerts``: the Alert and the Monitor protocol; ``policy``: what an alert triggers;
- the monitors: ``format``, ``loops``, ``monologue``, ``progress``, ``reruns``,
  ``timing``, ``drift`` (with ``similarity``), ``cost``; ``catalog`` assembles them;
- ``stream``: a Trestle run's events as observations; ``hub``: the engine's bridge;
- ``importers``, ``shell`` and ``evaluate``: recorded runs measured offline.

Nothing is imported here: ``trestle.core.events`` imports ``alerts`` and ``policy``, and the
hub imports the events, so this package stays a plain namespace.
"""
