"""Write src/trestle/demo/trajectory.json: the model answers `trestle demo` replays.

The answers are written here as data, turn by turn, per step conversation
(``step#round``), in the format `trestle trajectory RUN` exports from a recorded run.
Run: .venv/bin/python scripts/make_demo_trajectory.py
"""

from __future__ import annotations

import json
from pathlib import Path

from trestle.agent.trajectory import Trajectory
from trestle.models import ModelResponse, ToolCall, Usage

OUT = Path(__file__).resolve().parent.parent / "src/trestle/demo/trajectory.json"
MODEL = "recorded-demo"


def call(name: str, **arguments: object) -> ModelResponse:
    arguments_json = json.dumps(arguments)
    return ModelResponse(
        tool_calls=(ToolCall(id="call_1", name=name, arguments=arguments_json),),
        finish_reason="tool_calls",
        usage=Usage(input_tokens=900, output_tokens=40 + len(arguments_json) // 4),
        model=MODEL,
    )


def say(text: str | dict[str, object]) -> ModelResponse:
    body = text if isinstance(text, str) else json.dumps(text, indent=1)
    usage = Usage(input_tokens=1400, output_tokens=len(body) // 4)
    return ModelResponse(text=body, usage=usage, model=MODEL)


FINDINGS = {
    "summary": "slugify() only lower-cases and swaps spaces for dashes, so punctuation "
    "stays and runs of spaces or dashes are not collapsed; two of three tests fail.",
    "relevant_files": [
        {"path": "textkit/slug.py", "why": "slugify lives here"},
        {"path": "tests/test_slug.py", "why": "the failing tests say what a slug is"},
    ],
    "how_to_test": "python3 -m unittest discover -s tests -q",
    "test_command": "python3 -m unittest discover -s tests -q",
    "constraints": ["keep slugify(title) -> str as it is called today"],
}

PLAN = {
    "summary": "keep only the words of the title, joined by single dashes; then pin down "
    "that accented letters survive",
    "steps": [
        {
            "id": "fix-slugify",
            "objective": "slugify drops punctuation and collapses runs of separators",
            "files": ["textkit/slug.py"],
            "verify": [{"command": "python3 -m unittest tests.test_slug -q"}],
            "confidence": 0.8,
            "reasoning": "the tests define the wanted slugs",
        },
        {
            "id": "cover-accents",
            "objective": "a test that accented titles keep their letters",
            "needs": ["fix-slugify"],
            "new_files": ["tests/test_accents.py"],
            "verify": [
                {"file_exists": "tests/test_accents.py"},
                {"command": "python3 -m unittest tests.test_accents -q"},
            ],
            "optional": True,
            # a worker agent writes the test: a child run with only this file in scope
            "delegate": True,
            "reasoning": "writing one new test needs nothing the fix is still deciding",
        },
    ],
}

WORKER_FINDINGS = {
    "summary": "the tests import slugify from textkit.slug and compare slugs with "
    "assertEqual; nothing covers accented letters yet",
    "relevant_files": [{"path": "tests/test_slug.py", "why": "the tests to write alike"}],
    "how_to_test": "python3 -m unittest tests.test_accents -q",
}

WORKER_PLAN = {
    "summary": "one new test file in the style of tests/test_slug.py",
    "steps": [
        {
            "id": "write-test",
            "objective": "tests/test_accents.py checks that accented letters are kept",
            "new_files": ["tests/test_accents.py"],
            "verify": [{"file_exists": "tests/test_accents.py"}],
            "confidence": 0.9,
            "reasoning": "the packet's findings say how the tests are written",
        }
    ],
}

ACCENT_TEST = """import unittest

from textkit.slug import slugify


class AccentTest(unittest.TestCase):
    def test_accented_letters_are_kept(self) -> None:
        self.assertEqual(slugify("Café Crème"), "café-crème")


if __name__ == "__main__":
    unittest.main()
"""

CONVERSATIONS = {
    "understand#1": [
        call("list_files"),
        call("read_file", path="textkit/slug.py"),
        call("run_tests"),
        say(FINDINGS),
    ],
    "plan#1": [say(PLAN)],
    # the first attempt only trims the ends: the step's check still fails
    "fix-slugify#1": [
        call(
            "edit_file",
            path="textkit/slug.py",
            old='    return title.lower().replace(" ", "-")',
            new='    return title.lower().strip().replace(" ", "-")',
        ),
        call("finish", summary="trimmed the title before dashing it", claims=["tests pass"]),
    ],
    # the retry is told why the first failed, looks again, and takes the words instead
    "fix-slugify#2": [
        call("read_file", path="textkit/slug.py"),
        call(
            "edit_file",
            path="textkit/slug.py",
            old='    return title.lower().strip().replace(" ", "-")',
            new='    return "-".join(re.findall(r"\\w+", title.lower()))',
        ),
        call(
            "edit_file",
            path="textkit/slug.py",
            old='"""Slugs for URLs."""\n',
            new='"""Slugs for URLs."""\n\nimport re\n',
        ),
        call("run_tests"),
        call(
            "finish",
            summary="slugify keeps the words and joins them with single dashes",
            claims=["tests/test_slug.py passes"],
        ),
    ],
    # the worker: the child run that step cover-accents delegated to in its round 1
    "cover-accents#1/understand#1": [
        call("read_file", path="tests/test_slug.py"),
        say(WORKER_FINDINGS),
    ],
    "cover-accents#1/plan#1": [say(WORKER_PLAN)],
    "cover-accents#1/write-test#1": [
        call("write_file", path="tests/test_accents.py", content=ACCENT_TEST),
        call("finish", summary="added a test for accented titles"),
    ],
}


def main() -> None:
    trajectory = Trajectory(
        goal="make slugify() turn any title into a clean URL slug",
        conversations={k: tuple(v) for k, v in CONVERSATIONS.items()},
    )
    OUT.write_text(trajectory.model_dump_json(indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
