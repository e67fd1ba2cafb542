"""A tiny linter (stdlib only): line length, tabs and trailing whitespace in .py files.

    python tools/lint.py [PATH ...]     # default: the project root

Prints offenders as ``file:line: message`` and exits 1 if there are any.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

MAX_LINE = 100
SKIP_DIRS = {".venv", ".trestle", ".git", "__pycache__", "wheels"}
ROOT = Path(__file__).resolve().parent.parent


def python_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
            continue
        for found in sorted(path.rglob("*.py")):
            if not SKIP_DIRS.intersection(found.relative_to(path).parts):
                yield found


def problems(path: Path) -> Iterator[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > MAX_LINE:
            yield number, f"line too long ({len(line)} > {MAX_LINE})"
        if "\t" in line:
            yield number, "tab character"
        if line != line.rstrip():
            yield number, "trailing whitespace"


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or [ROOT]
    found = 0
    for path in python_files(paths):
        resolved = path.resolve()
        shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else path
        for number, message in problems(path):
            print(f"{shown}:{number}: {message}")
            found += 1
    if found:
        print(f"{found} problem(s)", file=sys.stderr)
        return 1
    print("lint: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
