"""The sandbox's path tests on names agree with pathlib's, which they replace on the
start of every command for their cost."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from trestle.execution.sandbox import _below

# few names, so that one path often lies under another; "." and "" vanish in a Path
names = st.lists(st.sampled_from(["a", "b", "ab", ".venv", "a.b"]), max_size=4)


@settings(max_examples=300, deadline=None)
@given(parent=names, path=names, absolute=st.booleans())
def test_below_is_pathlibs_parents(parent: list[str], path: list[str], absolute: bool) -> None:
    top = "/" if absolute else ""
    outer, inner = Path(top, *parent), Path(top, *path)
    assert _below(outer, inner) == (outer in inner.parents)
