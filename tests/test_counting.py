"""Counts read as a person writes them: "1 run", "3 runs", never "run(s)"."""

from __future__ import annotations

import re
import tokenize
from pathlib import Path

from trestle.core.counting import counted
from trestle.presentation import wording

SRC = Path(__file__).resolve().parent.parent / "src" / "trestle"


def test_one_is_singular_and_every_other_count_plural() -> None:
    assert counted(1, "run") == "1 run"
    assert counted(0, "run") == "0 runs"
    assert counted(3, "failed attempt") == "3 failed attempts"
    assert counted(1_200, "token") == "1,200 tokens"
    # the CLI and the dashboard say it as the core does
    assert wording.counted is counted


# a noun with "(s)" in a string; "http(s)" is a scheme, "{f(s)}" a call in an f-string
HEDGED = re.compile(r"(?<![a-z])(?!http\()[a-z]+\(s\)(?!})")


def test_no_message_hedges_its_plural() -> None:
    hedged = []
    for path in sorted(SRC.rglob("*.py")):
        with path.open("rb") as f:
            hedged += [
                f"{path.relative_to(SRC)}:{token.start[0]}: {token.string}"
                for token in tokenize.tokenize(f.readline)
                if token.type == tokenize.STRING and HEDGED.search(token.string)
            ]
    assert not hedged, "\n".join(hedged)
