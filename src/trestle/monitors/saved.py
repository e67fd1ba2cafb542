"""A monitor hub's state, saved with the run's snapshot so a resume feeds only the tail.

Catching the monitors up on a resumed agent run by feeding them its whole history
costs time linear in the history (seconds at a thousand turns, most of it the drift
monitor embedding every action again). The engine instead saves the hub, in the same
commit as the state snapshot, as it stands after every event up to the snapshot's seq;
a resume restores it and feeds only the events after that seq. Monitors are
deterministic, so the two ways end in the same state and raise the same alerts (the
tests compare them).

What is saved is each monitor's attributes except those it names in ``TRANSIENT``
(what is rebuilt from the run's settings, such as the drift monitor's embedder and its
cache of embeddings), the event trace's attributes, and the keys of the alerts already
recorded. It is pickled, since the state is made of the monitors' own classes, and read
back by an unpickler that can build nothing but Trestle's monitor and record classes
and a few plain containers. The saved state is only ever read from a snapshot whose
signature verifies (:func:`trestle.lifecycle.runs.trusted`), so what is unpickled was written by
an engine holding the run's key.

A save names the format of the state it holds (``STATE_FORMAT``, declared here and
raised by hand whenever what a monitor keeps changes), the monitors and the attributes
each starts with, and the run's monitor settings; when any of them differs, or anything
fails to load, the resume feeds the whole history as before. The format, not the
monitors' source, is what a save is tied to: an upgrade that leaves every monitor's
state as it was still reads the saves made before it, where a digest of the source
had a resume after any upgrade feed the whole history (seconds at a thousand turns).
``tests/test_monitor_saved.py`` pins every class and attribute a save holds to the
format, so a change to them that leaves the format as it was fails there. A hub whose
monitors cannot be pickled (a user's own, holding a lock or a model) is not saved, and
its resumes feed the whole history.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
from collections import Counter, OrderedDict, deque
from typing import Any

from trestle.monitors.hub import MonitorHub
from trestle.support import collector

FORMAT = b"trestle-monitors 1"
# The format of the monitors' saved state. Raise it when a monitor (or anything a save
# holds: the trace, a line memory, a record class) gains, loses or renames an attribute
# or reads one differently: a save of another format is never read. 3: the progress and
# cycle monitors share one memory of the lines shown (monitors/shown.ShownLines). 4: the
# tests monitor (monitors/acceptance.TestsMonitor) and the paths it has named.
STATE_FORMAT = 4
# Where the classes a save may hold live; nothing outside them is built on load.
_OWN_MODULES = ("trestle.monitors.", "trestle.core.records.")
_PLAIN: dict[tuple[str, str], Any] = {
    **{("builtins", t.__name__): t for t in (list, dict, tuple, set, frozenset, str, bytes)},
    **{("builtins", t.__name__): t for t in (int, float, bool, complex)},
    **{("collections", t.__name__): t for t in (deque, Counter, OrderedDict)},
    ("functools", "partial"): functools.partial,
}


def _header(hub: MonitorHub) -> bytes:
    names = ",".join(f"{type(m).__module__}.{type(m).__qualname__}" for m in hub.monitors)
    settings = hub.settings.model_dump_json().encode()
    parts = [FORMAT, b"%d" % STATE_FORMAT, names.encode(), settings]
    return hashlib.sha256(b"\0".join(parts)).digest()


def _state_of(monitor: object) -> dict[str, Any]:
    transient: frozenset[str] = getattr(monitor, "TRANSIENT", frozenset())
    return {k: v for k, v in vars(monitor).items() if k not in transient}


def save(hub: MonitorHub) -> bytes:
    """``hub``'s state as bytes, or b"" when it cannot be saved (see the docstring)."""
    state = ([_state_of(m) for m in hub.monitors], vars(hub.trace), hub.recorded)
    try:
        body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return b""
    # not compressed: it is mostly digests of the lines shown, which do not compress,
    # and compressing took three times as long as pickling
    return _header(hub) + body


def restore(hub: MonitorHub, data: bytes) -> bool:
    """Load a save into ``hub``, freshly made from the run's settings; False (and
    ``hub`` untouched) when the save is empty, of another state format, monitors or
    settings, or does not load."""
    header = _header(hub)
    if not data.startswith(header):
        return False
    try:
        with collector.paused():  # what it builds holds no cycles
            states, trace, recorded = _OwnClasses(io.BytesIO(data[len(header) :])).load()
    except Exception:  # a save only saves time; the history is the record
        return False
    if not isinstance(states, list) or len(states) != len(hub.monitors):
        return False
    if not all(isinstance(part, dict) for part in (*states, trace)):
        return False
    # a monitor that gained or lost an attribute without the format raised: refused
    if [set(s) for s in states] != [set(_state_of(m)) for m in hub.monitors]:
        return False
    if set(trace) != set(vars(hub.trace)):
        return False
    if not isinstance(recorded, set):
        return False
    for monitor, state in zip(hub.monitors, states, strict=True):
        vars(monitor).update(state)
    vars(hub.trace).update(trace)
    hub.recorded = recorded
    return True


class _OwnClasses(pickle.Unpickler):
    """Builds only Trestle's monitor and record classes and plain containers."""

    def find_class(self, module: str, name: str) -> Any:
        plain = _PLAIN.get((module, name))
        if plain is not None:
            return plain
        if module.startswith(_OWN_MODULES):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"a saved monitor state may not hold {module}.{name}")
