"""``glob_matches`` decides without a regex where it can, and always as fnmatch would."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trestle.core.globs import glob_matches, literal_head
from trestle.core.policy import DEFAULT_AUTO_COMMANDS, DEFAULT_CONFIRM_COMMANDS, REGEX_PREFIX

# few letters, so that texts and patterns often share a head; the glob characters, a
# newline (fnmatch's star crosses it) and a closing bracket
ALPHABET = "ab -*?[]!\n"


@settings(max_examples=400, deadline=None)
@given(text=st.text(ALPHABET, max_size=8), pattern=st.text(ALPHABET, max_size=8))
def test_it_agrees_with_fnmatch_on_any_text_and_pattern(text: str, pattern: str) -> None:
    assert glob_matches(text, pattern) == fnmatch.fnmatchcase(text, pattern)


COMMANDS = (
    "git push origin main",
    "git push",
    "git pushx",
    "git status",
    "git diff",
    "git difftool",
    "git reset --soft HEAD~1",
    "git reset HEAD --hard",
    "gh api repos/x -X DELETE",
    "npm publish --dry-run",
    "cat notes.txt",
    "cat",
    "python -m pytest -q\nrm -rf /",
    "",
)


@pytest.mark.parametrize("command", COMMANDS)
def test_it_agrees_with_fnmatch_on_the_default_policys_patterns(command: str) -> None:
    for pattern in (*DEFAULT_AUTO_COMMANDS, *DEFAULT_CONFIRM_COMMANDS):
        if not pattern.startswith(REGEX_PREFIX):
            assert glob_matches(command, pattern) == fnmatch.fnmatchcase(command, pattern), (
                command,
                pattern,
            )


def test_a_name_and_a_star_is_decided_without_compiling_a_regex() -> None:
    fnmatch._compile_pattern.cache_clear()  # type: ignore[attr-defined]
    assert glob_matches("git push origin", "git push*")
    assert not glob_matches("git pull", "git push*")
    assert glob_matches("pwd", "pwd") and not glob_matches("pwd -P", "pwd")
    assert fnmatch._compile_pattern.cache_info().currsize == 0  # type: ignore[attr-defined]


def test_the_literal_head_ends_at_the_first_glob_character() -> None:
    assert literal_head("git reset*--hard*") == "git reset"
    assert literal_head("[ab]c") == ""
    assert literal_head("plain") == "plain"
