"""docs/agent.md: every Python block runs, in order, as the page shows it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs" / "agent.md"


def python_blocks() -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_every_python_block_in_the_agent_docs_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 6
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{DOCS.name} block {number}", "exec"), {})
        except Exception as exc:  # name the block that broke
            raise AssertionError(f"docs/agent.md code block {number} failed: {exc!r}") from exc
    printed = capsys.readouterr().out
    assert "Plan not accepted (2 problems):" in printed
    assert "[trestle: goal reminder]" in printed
