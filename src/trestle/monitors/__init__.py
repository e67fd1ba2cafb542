"""Monitors: watch a run's event stream for failure modes and act on what they find.

- ``trace``: what monitors read (turns, step ends, stalls) and the run's facts;
- ``alerts``: the Monitor protocol (the Alert it returns, ``merge_alerts`` and the
  policy of what an alert triggers are records of the core's:
  ``trestle.core.records.monitors``);
- the monitors: ``format``, ``loops``, ``monologue``, ``progress``, ``reruns``,
  ``timing``, ``drift`` (with ``similarity``), ``cost``, ``context`` (with
  ``windows``); ``learnt`` (a trained model over ``prefix``'s features of the run so
  far, off by default); ``catalog`` assembles them;
- ``stream``: a Trestle run's events as observations; ``hub``: the engine's bridge;
- ``importers``, ``evaloutput``, ``corpus``, ``shell`` and ``evaluate``: recorded runs
  measured offline.

Nothing is imported here, so loading one monitor loads no other.
"""
