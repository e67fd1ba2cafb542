"""The tests monitor: an agent's step changed the files its work is judged by.

A coding agent's work is accepted when the test command passes, and the model may
write every file of the workspace: a test it edited to expect what the code does, a
failing test deleted, a ``conftest.py`` that skips the suite, an ``addopts`` in
``pyproject.toml`` that deselects it. The acceptance then passes and says nothing of
it. This monitor reads what each attempt of an agent's step wrote (the paths its
workspace checkpoints show changed, :class:`~trestle.monitors.trace.StepEnd`, so a
file a shell command changed counts as one a file tool did) and raises
``tests_changed`` for the files that are tests or configure how tests run. Writing a
test is often the task itself; so the alert is a warning whose default action only
records it (in the report, on the dashboard), once per file, and a policy that wants a
human to look before the acceptance runs sets ``tests_changed = "pause"``.

Pure: it judges paths by their names alone.
"""

from __future__ import annotations

import posixpath
import re

from trestle.core.records.monitors import Alert
from trestle.monitors.trace import Observation, RunFacts, StepEnd

# directories whose files are tests, wherever they are
TEST_DIRECTORIES = frozenset({"test", "tests", "testing", "spec", "specs", "__tests__"})
# the names test runners collect, in the common languages
_TEST_FILE = re.compile(
    r"""^(?:test_.+\.py|.+_tests?\.py|conftest\.py
    |.+_test\.go
    |.+\.(?:test|spec)\.[cm]?[jt]sx?
    |.+(?:Test|Tests|IT)\.(?:java|kt|cs)
    |.+_spec\.rb|.+_test\.rb|test_.+\.rb
    |.+_test\.exs?)$""",
    re.VERBOSE,
)
# files that say which tests run and how (options, skips, the script behind `npm test`)
TEST_CONFIGURATION = frozenset(
    {
        "pytest.ini",
        "pytest.toml",
        ".pytest.toml",
        "tox.ini",
        "setup.cfg",
        "pyproject.toml",
        "noxfile.py",
        "package.json",
        "Makefile",
        "makefile",
        "GNUmakefile",
        "phpunit.xml",
        "phpunit.xml.dist",
        ".mocharc.json",
        ".mocharc.yml",
        ".mocharc.yaml",
        ".mocharc.js",
        # what every Python process of an environment in the workspace runs first
        "sitecustomize.py",
        "usercustomize.py",
    }
)
# runners' own configuration files, by the start of their name (jest.config.ts, ...)
_RUNNER_CONFIGURATION = re.compile(r"^(?:jest|vitest|karma|playwright|cypress)\.conf(?:ig)?\.")
_SHOWN = 8  # paths an alert names; past them, counted


def is_test_file(path: str) -> bool:
    """Whether ``path`` (workspace-relative) is a test or configures how tests run."""
    parts = posixpath.normpath(path).split("/")
    name = parts[-1]
    if any(part in TEST_DIRECTORIES for part in parts[:-1]):
        return True
    return bool(
        _TEST_FILE.match(name)
        or name in TEST_CONFIGURATION
        or _RUNNER_CONFIGURATION.match(name)
        or name.endswith(".pth")  # a line of it starting "import" runs at every start
    )


class TestsMonitor:
    """Test files an agent's step wrote or deleted: a warning naming each the first
    time an attempt changes it."""

    name = "tests"
    __test__ = False  # a monitor, not a test class: pytest collects by the name

    def __init__(self) -> None:
        self._seen: set[str] = set()  # the paths an alert has named

    def observe(self, item: Observation, facts: RunFacts) -> list[Alert]:
        if not isinstance(item, StepEnd) or item.step in facts.read_only:
            return []
        deleted = set(item.deleted)
        changed = [p for p in (*item.wrote, *item.deleted) if p not in self._seen]
        tests = sorted({p for p in changed if is_test_file(p)})
        if not tests:
            return []
        self._seen.update(tests)
        shown = [f"{p} (deleted)" if p in deleted else p for p in tests[:_SHOWN]]
        more = f" and {len(tests) - _SHOWN} more" if len(tests) > _SHOWN else ""
        return [
            Alert(
                monitor=self.name,
                kind="tests_changed",
                severity="warning",
                message=(
                    f"step {item.step!r} (attempt {item.attempt}) changed files the tests "
                    f"are made of or run by: {', '.join(shown)}{more}; a passing "
                    "acceptance check says only what the tests as changed say"
                ),
                evidence=(item.seq,),
                suggestion=(
                    "Change a test only where the task asks for it, and say why; never to "
                    "make it pass. A reviewer reads the change with `trestle diff`."
                ),
                step=item.step,
            )
        ]
