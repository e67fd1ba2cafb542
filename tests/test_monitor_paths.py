"""A tool call's path is judged as the file it names: a ``:line`` or ``:line:column``
suffix (as compilers and grep print them) is not part of it, anything else is."""

from __future__ import annotations

import json

import pytest

from trestle.monitors.shell import classify_tool_call


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("./src//a.py:12:3", "src/a.py"),
        ("src/a.py:12", "src/a.py"),
        ("src/a.py", "src/a.py"),
        ("a:1:2:3", "a:1"),  # two numbers at most
        ("a:1:x:3", "a:1:x"),
        ("notes.txt:", "notes.txt:"),
        ("x:²", "x:²"),  # a superscript is no line number
        ("x:٣", "x"),  # an Arabic-Indic digit is one, as to the regular expression before
        (":12", "."),
    ],
)
def test_a_line_suffix_is_not_part_of_the_path(path: str, target: str) -> None:
    read = classify_tool_call("read_file", json.dumps({"path": path}))
    assert (read.kind, read.target) == ("read", target)
