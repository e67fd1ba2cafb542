"""The diff a card shows, for a file a step made to be costly to compare.

``difflib`` compares lines pairwise where they repeat: a step wrote a 4 MiB file of a
million lines drawn from 130 values, and a card for an ``edit_file`` call of one line
in it compared them for hours, so ``trestle inbox`` (and the approval prompt of
``trestle run``) hung. Lines both sides begin and end with are now set aside first
where the comparison would be long, and what is still too long to compare is shown
removed whole and added whole. Each diff is checked by ``git apply``.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from trestle.cli.tool_edits import call_diff
from trestle.presentation import diffs
from trestle.presentation.diffs import unified


def repeated_lines(count: int, seed: int) -> list[str]:
    draw = random.Random(seed)
    return [f"{draw.randrange(130):02x}\n" for _ in range(count)]  # 3 MB a million


def applies(tmp_path: Path, before: str, after: str, diff: str) -> bool:
    (tmp_path / "f").write_text(before)
    done = subprocess.run(
        ["git", "apply", "-"], input=diff, text=True, cwd=tmp_path, capture_output=True
    )
    return done.returncode == 0 and (tmp_path / "f").read_text() == after


def test_a_cards_diff_of_one_line_edited_in_a_million_repeated_lines(tmp_path: Path) -> None:
    lines = repeated_lines(1_000_000, seed=3)
    lines[500_000] = "UUUUUU\n"
    (tmp_path / "big.txt").write_text("".join(lines))
    diff = call_diff("edit_file", {"path": "big.txt", "old": "UUUUUU", "new": "X"}, tmp_path)
    assert diff is not None
    assert "@@ -499998,7 +499998,7 @@" in diff and "-UUUUUU\n+X\n" in diff
    assert diff.count("\n") == 11  # the two names, the hunk's line, 3 + 1 + 1 + 3 lines


def test_a_whole_file_too_costly_to_compare_is_shown_removed_and_added(tmp_path: Path) -> None:
    before = "".join(["same\n", *repeated_lines(1_000_000, seed=4), "end\n"])
    after = "".join(["same\n", *repeated_lines(1_000_000, seed=5), "end\n"])
    diff = unified(before, after, fromfile="a/f", tofile="b/f")
    assert diff.startswith("--- a/f\n+++ b/f\n@@ -1,1000002 +1,1000002 @@\n same\n-")
    assert applies(tmp_path, before, after, diff)


@pytest.mark.parametrize("seed", range(40))
def test_each_way_of_diffing_gives_a_diff_that_applies(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small files, compared as difflib does, with the common lines set aside, and whole;
    # the ends may be ambiguous (runs of one letter), where the context must still hold
    draw = random.Random(seed)
    a = [f"{draw.choice('abcde')}\n" for _ in range(draw.randrange(1, 60))]
    b = list(a)
    for _ in range(draw.randrange(1, 5)):
        where = draw.randrange(len(b) + 1)
        b.insert(where, f"{draw.choice('abxyz')}\n")
        if b and draw.random() < 0.5:
            del b[draw.randrange(len(b))]
    before, after = "".join(a), "".join(b)
    plain = unified(before, after, fromfile="a/f", tofile="b/f")
    work = iter([10**12, 0] * 4)  # too costly whole, cheap once the ends are set aside
    monkeypatch.setattr(diffs, "_work", lambda *_: next(work))
    trimmed = unified(before, after, fromfile="a/f", tofile="b/f")
    monkeypatch.setattr(diffs, "_work", lambda *_: 10**12)
    whole = unified(before, after, fromfile="a/f", tofile="b/f")
    for diff in (plain, trimmed, whole):
        assert applies(tmp_path, before, after, diff) or before == after, diff
