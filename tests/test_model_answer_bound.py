"""A model's answer too long to be read back is refused before it is recorded.

The store reads a long text back only below a ceiling (``store/inflate.py``); an answer
of 150 MB was recorded whole, and the run could never be shown or resumed again (the
store named it damaged). An answer past ``MAX_ANSWER`` characters now fails its model
call, and the run stays readable.
"""

from __future__ import annotations

from pathlib import Path

from agent_helpers import call, drive, recorded, sample_workspace, start_run, state_of
from trestle.core.conversation import MAX_ANSWER
from trestle.core.events import ModelCalled
from trestle.models import ScriptedModel
from trestle.store import SqliteStore


def test_an_answer_past_the_bound_is_refused_and_the_run_stays_readable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    run_id = start_run(store, sample_workspace(tmp_path))
    huge = call("write_file", path="notes.txt", content="x" * MAX_ANSWER)
    drive(store, run_id, ScriptedModel(["y" * (MAX_ANSWER + 1), huge]))
    reason = state_of(store, run_id).steps["understand"].reason or ""
    assert f"more than the {MAX_ANSWER:,} an answer may carry" in reason
    assert not [e for e in recorded(store, run_id) if isinstance(e, ModelCalled)]
    assert not (tmp_path / "ws" / "notes.txt").exists()
