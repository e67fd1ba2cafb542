"""Print the test files of a whole-suite run, slowest first, for tests/slowest_files.txt.

    .venv/bin/pytest -n 3 --dist loadfile --junitxml=/tmp/suite.xml
    .venv/bin/python scripts/slowest_test_files.py /tmp/suite.xml --top 60

A file's time is the sum of its tests' (setup and teardown included, as JUnit XML
records them).
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("junit", type=Path, help="the JUnit XML file pytest wrote")
    parser.add_argument("--top", type=int, default=60, help="how many files to print")
    args = parser.parse_args()
    seconds: defaultdict[str, float] = defaultdict(float)
    for case in ET.parse(args.junit).getroot().iter("testcase"):
        # classname is "tests.test_x" (or "tests.test_x.TestClass")
        module = case.get("classname", "").split(".")
        if len(module) >= 2:
            seconds[f"{module[1]}.py"] += float(case.get("time", "0"))
    for name, total in sorted(seconds.items(), key=lambda item: -item[1])[: args.top]:
        print(f"{name}  # {total:.0f} s")


if __name__ == "__main__":
    main()
