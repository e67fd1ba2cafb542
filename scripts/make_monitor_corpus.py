"""Write the labelled synthetic corpus of agent runs that the monitor evaluation replays.

    python scripts/make_monitor_corpus.py [--out tests/data/monitor_corpus] [--seed N]

It writes SWE-agent ``.traj`` files under ``swe-agent/``, mini-swe-agent ``.traj.json``
files under ``mini-swe-agent/``, and ``labels.json`` mapping each file name to how the
run ended and what went wrong in it. Everything comes from one seeded random
generator, so the same seed writes the same bytes.

The runs are made the way real ones go, not the way a monitor would like them:

- healthy runs that succeed: long explorations of many distinct files before the
  edit; re-viewing one file two or three times; re-running a failing test while its
  output changes until it passes; an isolated format error or two that the agent
  recovers from; expensive but steady runs. Some run long (past 60% of the call
  limit), as real successful runs do.
- doomed runs: laps of six or seven steps over the same few files with shifting view
  ranges and reworded reasoning (``near_loop``), exact repeats (``loop``),
  exploration without an edit until the limit (``no_edit``), the same failing test
  output between ever-changing edits (``test_rerun``), streaks of format errors
  (``format``), per-call cost that grows until the cost limit (``cost``), drift into
  files and commands unrelated to the task (``drift``), and a ``submit`` despite a
  failing test (``hallucinated``).

Lengths, lap sizes, wording and where the trouble starts are all drawn at random.
Observations are short, realistic stand-ins (file views, listings, pytest output).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEED = 1729
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "monitor_corpus"
TESTBED = "/testbed"

# --- the repositories the tasks are about ---------------------------------------------


@dataclass(frozen=True)
class Repo:
    name: str
    package: str
    modules: dict[str, tuple[str, ...]]  # module path -> its functions
    tests: dict[str, str]  # module path -> its test file
    unrelated: tuple[str, ...]  # files no task here is about


REPOS = (
    Repo(
        "textkit",
        "textkit",
        {
            "textkit/wrap.py": ("wrap_lines", "fill", "indent_block"),
            "textkit/slug.py": ("slugify", "strip_accents"),
            "textkit/case.py": ("to_snake", "to_camel", "to_title"),
            "textkit/tokens.py": ("split_words", "count_words"),
        },
        {
            "textkit/wrap.py": "tests/test_wrap.py",
            "textkit/slug.py": "tests/test_slug.py",
            "textkit/case.py": "tests/test_case.py",
            "textkit/tokens.py": "tests/test_tokens.py",
        },
        ("docs/index.md", "setup.cfg", ".github/workflows/ci.yml", "CHANGELOG.md", "tox.ini"),
    ),
    Repo(
        "dateparse",
        "dateparse",
        {
            "dateparse/parser.py": ("parse_date", "parse_time", "split_parts"),
            "dateparse/tz.py": ("to_utc", "offset_of"),
            "dateparse/fmt.py": ("format_iso", "format_human"),
            "dateparse/calendar.py": ("is_leap", "days_in_month", "add_months"),
        },
        {
            "dateparse/parser.py": "tests/test_parser.py",
            "dateparse/tz.py": "tests/test_tz.py",
            "dateparse/fmt.py": "tests/test_fmt.py",
            "dateparse/calendar.py": "tests/test_calendar.py",
        },
        ("docs/usage.rst", "setup.py", "MANIFEST.in", "scripts/release.py", "Makefile"),
    ),
    Repo(
        "kvstore",
        "kvstore",
        {
            "kvstore/store.py": ("get", "put", "delete", "keys"),
            "kvstore/cache.py": ("lru_get", "lru_put", "evict"),
            "kvstore/serialize.py": ("dumps", "loads"),
            "kvstore/locks.py": ("acquire", "release"),
        },
        {
            "kvstore/store.py": "tests/test_store.py",
            "kvstore/cache.py": "tests/test_cache.py",
            "kvstore/serialize.py": "tests/test_serialize.py",
            "kvstore/locks.py": "tests/test_locks.py",
        },
        ("docs/design.md", "pyproject.toml", "benchmarks/bench_put.py", ".pre-commit-config.yaml"),
    ),
    Repo(
        "httpmini",
        "httpmini",
        {
            "httpmini/client.py": ("request", "retry_after", "send"),
            "httpmini/headers.py": ("parse_headers", "merge_headers"),
            "httpmini/url.py": ("join_url", "quote_path", "split_query"),
            "httpmini/cookies.py": ("parse_cookie", "format_cookie"),
        },
        {
            "httpmini/client.py": "tests/test_client.py",
            "httpmini/headers.py": "tests/test_headers.py",
            "httpmini/url.py": "tests/test_url.py",
            "httpmini/cookies.py": "tests/test_cookies.py",
        },
        ("docs/api.md", "setup.cfg", "examples/fetch.py", "CONTRIBUTING.md", "noxfile.py"),
    ),
    Repo(
        "mathx",
        "mathx",
        {
            "mathx/stats.py": ("mean", "median", "variance"),
            "mathx/matrix.py": ("transpose", "matmul", "identity"),
            "mathx/rounding.py": ("round_half_even", "truncate"),
            "mathx/primes.py": ("is_prime", "next_prime"),
        },
        {
            "mathx/stats.py": "tests/test_stats.py",
            "mathx/matrix.py": "tests/test_matrix.py",
            "mathx/rounding.py": "tests/test_rounding.py",
            "mathx/primes.py": "tests/test_primes.py",
        },
        ("docs/conf.py", "setup.py", "requirements-dev.txt", "README.rst", "azure-pipelines.yml"),
    ),
)

BUGS = (
    ("returns the wrong value for an empty input", "''", "None"),
    ("drops the last element", "[1, 2, 3]", "[1, 2]"),
    ("is off by one at the boundary", "10", "9"),
    ("ignores the keyword argument", "'a-b'", "'a_b'"),
    ("raises TypeError for None", "0", "TypeError"),
    ("mishandles negative numbers", "-2", "2"),
)


@dataclass(frozen=True)
class Task:
    repo: Repo
    module: str
    function: str
    bug: str
    expected: str
    got: str

    @property
    def test_file(self) -> str:
        return self.repo.tests[self.module]

    @property
    def statement(self) -> str:
        return (
            f"`{self.function}()` in `{self.module}` {self.bug}.\n\n"
            f"Calling `{self.function}` on the example from the docs should give "
            f"{self.expected}, but it gives {self.got}. Please fix `{self.function}` so the "
            f"tests in `{self.test_file}` pass."
        )


def source_lines(repo: Repo, path: str) -> list[str]:
    """A module's text: deterministic per path, a few functions with bodies."""
    rng = random.Random(f"{repo.name}/{path}")
    lines = ['"""' + path.rsplit("/", 1)[-1][:-3].replace("_", " ").title() + ' helpers."""', ""]
    lines += ["from __future__ import annotations", "", "import re", ""]
    for fn in repo.modules.get(path, ("main",)):
        lines += ["", f"def {fn}(value, *, strict=False):", f'    """{fn.replace("_", " ")}."""']
        for _ in range(rng.randint(6, 14)):
            var = rng.choice(("value", "parts", "result", "item", "count"))
            op = rng.choice(
                (
                    f"{var} = {var}.strip()",
                    f"if not {var}:",
                    f"    return {var}",
                    f"{var} = [p for p in {var} if p]",
                    f"for item in {var}:",
                    "    result = result + item",
                    f"{var} = re.sub(r'\\s+', ' ', {var})",
                    f"if strict and {var} is None:",
                    f"    raise ValueError({var!r})",
                )
            )
            lines.append("    " + op)
        lines.append("    return result")
    return lines


# --- what an agent does, before a format renders it -----------------------------------


@dataclass
class Act:
    """One action: a view, a listing, a search, an edit, a test or a command run."""

    kind: str  # view, list, search, edit, create, test, run, submit
    path: str = ""
    start: int = 0
    end: int = 0
    term: str = ""
    old: str = ""
    new: str = ""
    command: str = ""
    output: str = ""
    rc: int = 0


@dataclass
class Move:
    """One model call: its reasoning and its action, or a format error (``act`` None)."""

    thought: str
    act: Act | None
    blocks: int = 1  # for a format error: how many action blocks it held (0 or 2)


@dataclass
class Run:
    moves: list[Move]
    outcome: str  # succeeded, exhausted, failed
    problems: list[str]
    ends_by: str = "submit"  # submit, calls, cost, format
    weight: float = 1.0  # how many characters one real call's observation stands for


# --- reasoning, reworded each time -----------------------------------------------------

OPENERS = ("", "", "Okay. ", "Hmm, ", "Right, ", "Let me think. ", "Now ", "Next, ", "So ")
CLOSERS = ("", "", "", " That should help.", " Let me check.", " I want to be sure.")
THOUGHTS: dict[str, tuple[str, ...]] = {
    "list": (
        "let me see how the repository is laid out.",
        "I'll list the files to get an overview of the project.",
        "first I want the directory structure of {dir}.",
        "I should check what is inside {dir}.",
    ),
    "view": (
        "let me look at {path} around line {start}.",
        "I need to read {path} to understand how it works.",
        "I'll open {path} and check lines {start} to {end}.",
        "looking at {path} should show what {fn} relies on.",
        "the relevant code is probably in {path}; viewing it now.",
        "I want to see more of {path}, lines {start}-{end}.",
        "let me re-read {path}, the part near line {start}.",
        "checking {path} once more to see the logic again.",
    ),
    "search": (
        "let me search for {term} to find where it is used.",
        "I'll grep for {term} across the code.",
        "where else does {term} appear? Searching.",
        "searching for {term} might reveal the caller.",
    ),
    "edit": (
        "I think the bug is in {fn}; let me change it.",
        "I'll edit {path} so that {fn} handles this case.",
        "let me try a different fix in {path}.",
        "maybe the condition is wrong; adjusting {fn}.",
        "I will rewrite this part of {fn} and see.",
        "perhaps the issue is the return value; editing {path}.",
    ),
    "create": (
        "let me write a small script that reproduces the issue.",
        "I'll create a reproduction script first.",
    ),
    "test": (
        "let me run the tests to see if this works.",
        "running the test suite again.",
        "now I'll check whether the tests pass.",
        "I'll run {cmd} to verify.",
        "let me rerun the failing test.",
        "checking the reproduction script output.",
    ),
    "run": (
        "let me check {cmd}.",
        "I'll run {cmd} to learn more.",
        "running {cmd} quickly.",
    ),
    "submit": (
        "the fix works and the tests pass; submitting.",
        "everything passes now, so I will submit the change.",
        "done: the issue is fixed. Submitting.",
    ),
    "claim": (
        "I believe the fix is complete; submitting.",
        "this should resolve the issue. Submitting now.",
        "the change looks right to me, so I will submit.",
    ),
}


def say(rng: random.Random, purpose: str, **values: object) -> str:
    template = rng.choice(THOUGHTS[purpose])
    text = template.format_map(_Defaults(values))
    return (rng.choice(OPENERS) + text[0].upper() + text[1:] + rng.choice(CLOSERS)).strip()


class _Defaults(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "it"


# --- building blocks of runs ------------------------------------------------------------


class Builder:
    """Makes the moves of one run over one task, with realistic outputs."""

    def __init__(self, rng: random.Random, task: Task) -> None:
        self.rng, self.task = rng, task
        self.moves: list[Move] = []
        self.repo = task.repo

    def all_files(self) -> list[str]:
        files = [*self.repo.modules, *self.repo.tests.values(), *self.repo.unrelated]
        return [*files, f"{self.repo.package}/__init__.py", "README.md"]

    def add(self, purpose: str, act: Act | None, blocks: int = 1, **values: object) -> None:
        fn = self.task.function
        fields = {"path": act.path if act else "", "fn": fn, **values}
        if act is not None:
            fields.update(start=act.start, end=act.end, term=act.term, cmd=act.command)
        self.moves.append(Move(say(self.rng, purpose, **fields), act, blocks))

    def listing(self, directory: str = ".") -> None:
        prefix = "" if directory == "." else directory.rstrip("/") + "/"
        names = sorted(
            {f[len(prefix) :].split("/")[0] for f in self.all_files() if f.startswith(prefix)}
        )
        self.add("list", Act("list", path=directory, output="\n".join(names)), dir=directory)

    def view(self, path: str, start: int | None = None, span: int | None = None) -> None:
        lines = source_lines(self.repo, path)
        span = span or self.rng.randint(5, 12)
        start = start if start is not None else self.rng.randint(1, max(1, len(lines) - span))
        start = max(1, min(start, max(1, len(lines) - 5)))
        end = min(len(lines), start + span)
        shown = "\n".join(f"{n:6d}\t{lines[n - 1]}" for n in range(start, end + 1))
        self.add("view", Act("view", path=path, start=start, end=end, output=shown))

    def search(self, term: str, directory: str = ".") -> None:
        hits = [
            f"{path}:{self.rng.randint(5, 60)}:    {term}(value)"
            for path in self.repo.modules
            if self.rng.random() < 0.6
        ] or [f"{self.task.module}:12:def {term}(value, *, strict=False):"]
        act = Act("search", path=directory, term=term, output="\n".join(hits[:4]))
        self.add("search", act)

    def edit(self, path: str | None = None, variant: int = 0) -> None:
        path = path or self.task.module
        old = f"    return result{'' if variant == 0 else f'  # v{variant}'}"
        choices = (
            "    return result or None",
            "    return list(result)",
            "    return result[:-1] if strict else result",
            "    return result if value is not None else default",
            "    return sorted(result)",
            "    return result + [item]",
            "    return tuple(result)",
            "    return result.strip() if isinstance(result, str) else result",
        )
        new = choices[variant % len(choices)] + ("" if variant < len(choices) else f"  # {variant}")
        output = (
            f"The file {path} has been edited. Review the changes and make sure they are right."
        )
        self.add("edit", Act("edit", path=path, old=old, new=new, output=output), path=path)

    def create_reproduce(self) -> None:
        t = self.task
        body = (
            f"from {t.module[:-3].replace('/', '.')} import {t.function}\n"
            f"print({t.function}({t.expected}))\n"
        )
        act = Act("create", path="reproduce.py", new=body, output="File created successfully.")
        self.add("create", act)

    def test(self, passed: bool, variant: int = 0, *, timing: bool = True) -> None:
        t = self.task
        name = f"test_{t.function}"
        seconds = f" in {self.rng.uniform(0.05, 2.5):.2f}s" if timing else ""
        if passed:
            count = self.rng.randint(3, 14)
            output = f"{'.' * count}{' ' * 4}[100%]\n{count} passed{seconds}"
            rc = 0
        else:
            got = t.got if variant == 0 else f"{t.got[:-1] if len(t.got) > 1 else t.got}{variant}"
            output = (
                f"F..{' ' * 4}[100%]\n=== FAILURES ===\n___ {name} ___\n"
                f"    assert {t.function}({t.expected}) == {t.expected}\n"
                f"E   AssertionError: assert {got} == {t.expected}\n"
                f"{t.test_file}:{14 + variant % 7}: AssertionError\n"
                f"1 failed, 2 passed{seconds}"
            )
            rc = 1
        cmd = f"python -m pytest {t.test_file} -q"
        self.add("test", Act("test", command=cmd, output=output, rc=rc))

    def reproduce(self, passed: bool, variant: int = 0) -> None:
        t = self.task
        if passed:
            output, rc = t.expected, 0
        elif variant % 2:
            output = (
                f'Traceback (most recent call last):\n  File "reproduce.py", line 2\n'
                f"{t.got}Error: variant {variant}"
            )
            rc = 1
        else:
            output, rc = f"{t.got}{'' if variant == 0 else f' ({variant})'}", 0
        self.add("test", Act("test", command="python reproduce.py", output=output, rc=rc))

    def run(self, command: str, output: str, rc: int = 0) -> None:
        self.add("run", Act("run", command=command, output=output, rc=rc))

    def submit(self, claim: bool = False) -> None:
        self.add("claim" if claim else "submit", Act("submit"))

    def format_error(self) -> None:
        blocks = self.rng.choice((0, 0, 2))
        thought = say(self.rng, self.rng.choice(("view", "edit", "test")), fn=self.task.function)
        self.moves.append(Move(thought, None, blocks))

    def explore(self, count: int, *, distinct: bool = True) -> None:
        """``count`` reading moves: over files and searches not read before in this run
        (``distinct``), or over any file, again and again."""
        if not hasattr(self, "_unread"):
            self._unread = self.all_files()
            self.rng.shuffle(self._unread)
            self._unread.insert(0, self.task.module)
            fns = [f for fns in self.repo.modules.values() for f in fns]
            self._terms = [*fns, *(f"def {f}" for f in fns), *(f"{f}(" for f in fns)]
            self.rng.shuffle(self._terms)
            self._listed: set[str] = set()
        for i in range(count):
            roll = self.rng.random()
            if i == 0 and roll < 0.5 and "." not in self._listed:
                self._listed.add(".")
                self.listing()
            elif roll < 0.28 and self.repo.package not in self._listed:
                self._listed.add(self.repo.package)
                self.listing(self.repo.package)
            elif (roll < 0.25 or not self._unread) and self._terms:
                self.search(self._terms.pop())
            elif not distinct:
                self.view(self.rng.choice(self.all_files()))
            elif self._unread:
                self.view(self._unread.pop(0))
            else:
                self.view(self.rng.choice(list(self.repo.modules)))


# --- the scenarios ---------------------------------------------------------------------


def healthy_length(rng: random.Random, limit: int) -> int:
    """How long a healthy run is: mostly well inside the limit, sometimes long."""
    share = rng.uniform(0.6, 0.85) if rng.random() < 0.1 else rng.uniform(0.18, 0.5)
    return max(8, int(limit * share))


def healthy_explore(rng: random.Random, task: Task, limit: int) -> Run:
    b = Builder(rng, task)
    length = healthy_length(rng, limit)
    b.explore(max(3, length - 6))
    b.create_reproduce()
    b.reproduce(passed=False)
    b.edit()
    b.reproduce(passed=True)
    b.test(passed=True)
    b.submit()
    return Run(b.moves, "succeeded", [])


def healthy_reviews(rng: random.Random, task: Task, limit: int) -> Run:
    b = Builder(rng, task)
    length = healthy_length(rng, limit)
    views = rng.randint(2, 3)
    others = max(2, length - views - 5)
    b.listing()
    for i in range(views):
        b.view(task.module, start=rng.randint(1, 30) + 12 * i)
        b.explore(max(1, others // views))
    b.edit()
    b.test(passed=False)
    b.edit(variant=1)
    b.test(passed=True)
    b.submit()
    return Run(b.moves, "succeeded", [])


def healthy_test_iterations(rng: random.Random, task: Task, limit: int) -> Run:
    b = Builder(rng, task)
    length = healthy_length(rng, limit)
    rounds = rng.randint(2, 4)
    b.explore(max(2, length - 2 * rounds - 6))
    b.create_reproduce()
    b.reproduce(passed=False)
    for r in range(1, rounds + 1):  # each edit changes what the script prints
        b.edit(variant=r)
        b.reproduce(passed=False, variant=r) if r < rounds else b.reproduce(passed=True)
    b.test(passed=False, variant=rng.randint(1, 5))
    b.edit(variant=rounds + 1)
    b.test(passed=True)
    b.submit()
    return Run(b.moves, "succeeded", [])


def healthy_format_blips(rng: random.Random, task: Task, limit: int) -> Run:
    run = healthy_explore(rng, task, limit)
    moves = run.moves
    for _ in range(rng.randint(1, 2)):  # isolated: never two in a row
        at = rng.randint(1, len(moves) - 2)
        if moves[at - 1].act is not None and moves[at].act is not None:
            thought = say(rng, "view", path=task.module, fn=task.function)
            moves.insert(at, Move(thought, None, rng.choice((0, 2))))
    return run


def healthy_expensive(rng: random.Random, task: Task, limit: int) -> Run:
    run = healthy_reviews(rng, task, limit)
    run.weight = rng.uniform(1.6, 2.2)  # a pricier model or bigger files: steady, though
    return run


def doomed_laps(rng: random.Random, task: Task, limit: int, *, exact: bool = False) -> Run:
    """Six- or seven-step laps over the same few files until the call limit."""
    b = Builder(rng, task)
    b.explore(rng.randint(2, max(3, limit // 5)))
    edited = rng.random() < 0.5
    if edited:
        b.edit()
        b.test(passed=False)
    files = [task.module, task.test_file, *rng.sample(list(task.repo.modules), 2)]
    lap_size = rng.randint(6, 7) if not exact else rng.randint(2, 4)
    base = {f: rng.randint(1, 30) for f in files}
    while len(b.moves) < limit:
        for k in range(lap_size):
            if len(b.moves) >= limit:
                break
            slot = k % 4
            if slot == 3:
                b.test(passed=False, timing=not exact)
            elif slot == 2 and k > 3:
                b.search(task.function)
            else:
                path = files[(k // 2) % len(files)] if not exact else files[k % 2]
                shift = 0 if exact else rng.randint(-12, 24)
                b.view(path, start=max(1, base[path] + shift), span=10 if exact else None)
    problems = ["loop"] if exact else ["near_loop"]
    if not edited:
        problems.append("no_edit")
    return Run(b.moves[:limit], "exhausted", problems, ends_by="calls")


def doomed_exploration(rng: random.Random, task: Task, limit: int) -> Run:
    """Reads, searches and probes until the limit, never an edit."""
    b = Builder(rng, task)
    while len(b.moves) < limit:
        roll = rng.random()
        if roll < 0.55:
            b.explore(1, distinct=False)
        elif roll < 0.7:
            b.view(task.module)
        elif roll < 0.8:
            b.search(rng.choice(task.repo.modules[task.module]))
        elif roll < 0.9:
            b.test(passed=False)
        else:
            probe = f'python -c "from {task.repo.package} import *; print({task.function}.__doc__)"'
            b.run(probe, f"{task.function.replace('_', ' ')}.")
    return Run(b.moves[:limit], "exhausted", ["no_edit"], ends_by="calls")


def doomed_test_reruns(rng: random.Random, task: Task, limit: int) -> Run:
    """Ever-changing edits, the same failing test output after each."""
    b = Builder(rng, task)
    b.explore(rng.randint(2, max(3, limit // 4)))
    timing = rng.random() < 0.5
    variant = 1
    while len(b.moves) < limit:
        b.edit(variant=variant)
        variant += 1
        if rng.random() < 0.25:
            b.view(task.module)
        b.test(passed=False, timing=timing)
    return Run(b.moves[:limit], "exhausted", ["test_rerun"], ends_by="calls")


def doomed_format(rng: random.Random, task: Task, limit: int, *, swe: bool) -> Run:
    """Fine at first, then streaks of output the agent cannot parse."""
    b = Builder(rng, task)
    b.explore(rng.randint(3, max(4, limit // 3)))
    while len(b.moves) < limit:
        streak = rng.randint(2, 5)
        if swe:  # SWE-agent gives up after three requeries in a row
            streak = 3 if rng.random() < 0.6 else 2
        for _ in range(streak):
            b.format_error()
        if swe and streak >= 3:
            return Run(b.moves, "failed", ["format"], ends_by="format")
        b.explore(rng.randint(1, 2), distinct=False)
    return Run(b.moves[:limit], "exhausted", ["format"], ends_by="calls")


def doomed_cost(rng: random.Random, task: Task, limit: int) -> Run:
    """Work that drags ever bigger outputs into the context until the cost limit."""
    run = (
        doomed_exploration(rng, task, limit)
        if rng.random() < 0.4
        else healthy_reviews(rng, task, limit)
    )
    b = Builder(rng, task)
    moves = [m for m in run.moves if m.act is None or m.act.kind != "submit"]
    dumps = ("pip list", "python -m pytest -vv", "git log -p", "env", "find / -name '*.py'")
    while len(moves) < limit:
        command = rng.choice(dumps)
        lines = "\n".join(
            f"{command.split()[0]}-line-{i} {'x' * rng.randint(30, 70)}" for i in range(14)
        )
        b.moves = []
        b.run(command, lines)
        moves += b.moves
    return Run(moves[:limit], "exhausted", ["cost"], ends_by="cost", weight=rng.uniform(3.0, 4.5))


def doomed_drift(rng: random.Random, task: Task, limit: int) -> Run:
    """Starts on the task, then wanders into files and commands unrelated to it."""
    b = Builder(rng, task)
    b.explore(rng.randint(3, max(4, limit // 4)))
    other_modules = [m for m in task.repo.modules if m != task.module]
    chores = (
        ("pip install --upgrade pip setuptools wheel", "Successfully installed pip-24.0"),
        ("git log --oneline -5", "a1b2c3d release 1.4\n9f8e7d6 docs: typo"),
        ("flake8 docs/", "docs/conf.py:3:1: F401 'os' imported but unused"),
        ("python -m sphinx -b html docs docs/_build", "build succeeded, 3 warnings."),
        ("npm --version", "bash: npm: command not found"),
    )
    while len(b.moves) < limit:
        roll = rng.random()
        if roll < 0.45:
            b.view(rng.choice([*task.repo.unrelated, *other_modules]))
        elif roll < 0.65:
            command, output = rng.choice(chores)
            b.run(command, output)
        elif roll < 0.8:
            b.edit(path=rng.choice(task.repo.unrelated), variant=rng.randint(0, 7))
        else:
            b.search(rng.choice(["version", "license", "author", "deprecated"]))
    return Run(b.moves[:limit], "exhausted", ["drift"], ends_by="calls")


def doomed_claim(rng: random.Random, task: Task, limit: int) -> Run:
    """Edits, sees the test fail, and submits anyway."""
    b = Builder(rng, task)
    b.explore(rng.randint(3, max(4, limit // 3)))
    b.edit()
    b.test(passed=False)
    if rng.random() < 0.5:
        b.edit(variant=1)
    b.submit(claim=True)
    return Run(b.moves, "failed", ["hallucinated"])


Scenario = Callable[[random.Random, Task, int], Run]

HEALTHY: tuple[tuple[str, Scenario, int], ...] = (
    ("explore", healthy_explore, 9),
    ("reviews", healthy_reviews, 8),
    ("iterate", healthy_test_iterations, 8),
    ("blips", healthy_format_blips, 5),
    ("pricey", healthy_expensive, 4),
)


def doomed(swe: bool) -> tuple[tuple[str, Scenario, int], ...]:
    return (
        ("laps", doomed_laps, 6),
        ("repeat", lambda r, t, n: doomed_laps(r, t, n, exact=True), 2),
        ("noedit", doomed_exploration, 5),
        ("rerun", doomed_test_reruns, 5),
        ("format", lambda r, t, n: doomed_format(r, t, n, swe=swe), 4),
        ("cost", doomed_cost, 3),
        ("drift", doomed_drift, 3),
        ("claim", doomed_claim, 4),
    )


# --- rendering: SWE-agent -------------------------------------------------------------

SWE_SYSTEM = (
    "SETTING: You are an autonomous programmer, and you're working directly in the "
    "command line with a special interface.\n\nThe special interface consists of a file "
    "editor that shows you 100 lines of a file at a time. In addition to typical bash "
    "commands, you can also use specific commands to help you navigate and edit files.\n\n"
    "COMMANDS:\nopen, goto, scroll_up, scroll_down, create, edit, search_dir, search_file, "
    "find_file, submit, str_replace_editor\n\nRESPONSE FORMAT:\nYour shell prompt is "
    "formatted as follows: (Open file: <path>) <cwd> $\nYou need to format your output "
    "using two fields; discussion and command."
)
SWE_FORMAT_ERROR = (
    "Your output was not formatted correctly. You must always include one discussion and "
    "one command as part of your response. Make sure you do not have multiple "
    "discussion/command tags.\nPlease make sure your output precisely matches the "
    "following format:\nDISCUSSION\nDiscuss here with yourself about what your planning "
    "and what you're going to do in this step.\n\n```\ncommand(s) that you're going to run\n```"
)


def swe_command(act: Act, old_style: bool) -> str:
    path = f"{TESTBED}/{act.path}" if act.path not in ("", ".") else TESTBED
    match act.kind:
        case "list":
            return f"ls {path}" if old_style else f"str_replace_editor view {path}"
        case "view":
            if old_style:
                return f"open {act.path} {act.start}"
            return f"str_replace_editor view {path}  --view_range {act.start} {act.end}"
        case "search":
            return f'search_dir "{act.term}"' if old_style else f"grep -rn '{act.term}' {path}"
        case "edit":
            if old_style:
                return f"edit {act.start or 1}:{(act.start or 1) + 1}\n{act.new}\nend_of_edit"
            return (
                f"str_replace_editor str_replace {path}   --old_str '{act.old}' "
                f"--new_str '{act.new}'"
            )
        case "create":
            if old_style:
                return f"create {act.path}"
            return f"str_replace_editor create {path} --file_text '{act.new}'"
        case "test" | "run":
            return f"cd {TESTBED} && {act.command}"
        case "submit":
            return "submit"
    raise ValueError(act.kind)


def swe_file(
    rng: random.Random, name: str, task: Task, run: Run, limits: Limits, rate: float
) -> tuple[dict[str, object], list[int]]:
    """A SWE-agent ``.traj`` of ``run``, and the prompt size (characters) of each call."""
    old_style = rng.random() < 0.35

    def state() -> dict[str, str]:  # only the old interface has an open file to show
        return {"open_file": open_file or "n/a"} if old_style else {}

    system: dict[str, object] = {
        "role": "system",
        "content": SWE_SYSTEM,
        "agent": "main",
        "message_type": "system_prompt",
    }
    history: list[dict[str, object]] = [system]
    if rng.random() < 0.3:
        demo = "Here is a demonstration of how to solve a task:\n" + "\n".join(
            f"DISCUSSION\nStep {i}.\n```\nls\n```" for i in range(12)
        )
        history.append(
            {
                "role": "user",
                "content": demo,
                "agent": "main",
                "is_demo": True,
                "message_type": "demonstration",
            }
        )
    instance = (
        f"<uploaded_files>\n{TESTBED}\n</uploaded_files>\nI've uploaded a python code repository "
        f"in the directory {TESTBED}. Consider the following PR description:\n\n<pr_description>\n"
        f"{task.statement}\n</pr_description>\n\nCan you help me implement the necessary "
        "changes to the repository so that the requirements specified in the "
        "<pr_description> are met?"
    )
    history.append(
        {"role": "user", "content": instance, "agent": "main", "message_type": "observation"}
    )
    trajectory: list[dict[str, object]] = []
    prompt_sizes: list[int] = []
    open_file = ""
    for move in run.moves:
        prompt_sizes.append(sum(len(str(m["content"])) for m in history))
        if move.act is None:
            blocks = "".join(f"\n```\nls -la {i}\n```" for i in range(move.blocks))
            response = f"DISCUSSION\n{move.thought}{blocks}"
            trajectory.append(
                {
                    "action": "",
                    "observation": SWE_FORMAT_ERROR,
                    "response": response,
                    "thought": response,
                    "execution_time": 0.0,
                    "state": state(),
                }
            )
            continue
        act = move.act
        command = swe_command(act, old_style)
        if act.kind in ("view", "create") and old_style:
            open_file = f"{TESTBED}/{act.path}"
        observation = swe_observation(act, old_style, task)
        response = f"DISCUSSION\n{move.thought}\n\n```\n{command}\n```"
        seconds = rng.uniform(1.0, 9.0) if act.kind == "test" else rng.uniform(0.05, 0.6)
        trajectory.append(
            {
                "action": command,
                "observation": observation,
                "response": response,
                "thought": move.thought,
                "execution_time": round(seconds, 3),
                "state": state(),
            }
        )
        history.append(
            {"role": "assistant", "content": response, "agent": "main", "message_type": "action"}
        )
        history.append(
            {
                "role": "user",
                "content": f"OBSERVATION:\n{observation}",
                "agent": "main",
                "message_type": "observation",
            }
        )
    total = sum(rate * size for size in prompt_sizes)
    exit_status = {
        "submit": "submitted",
        "calls": rng.choice(("exit_cost", "submitted (exit_cost)")),
        "cost": rng.choice(("exit_cost", "exit_cost", "exit_context")),
        "format": "exit_format",
    }[run.ends_by]
    if run.ends_by in ("calls", "cost", "format"):
        reason = {
            "calls": "Exit due to cost limit",
            "cost": "Exit due to cost limit",
            "format": "Exit due to repeated format/blocklist/bash syntax errors",
        }[run.ends_by]
        trajectory.append(
            {
                "action": "",
                "observation": "Exited (autosubmitted)",
                "response": reason,
                "thought": reason,
                "execution_time": 0.0,
                "state": state(),
            }
        )
    sent = int(sum(prompt_sizes) / 4 * run.weight * 6)
    config = {
        "agent": {
            "model": {
                "name": "claude-sonnet-4-20250514",
                "per_instance_cost_limit": limits.cost,
                "per_instance_call_limit": limits.calls,
            }
        },
        "problem_statement": {"text": task.statement, "id": name.removesuffix(".traj")},
    }
    submission = "" if run.ends_by != "submit" else f"diff --git a/{task.module} b/{task.module}\n"
    return {
        "environment": "main",
        "trajectory": trajectory,
        "history": history,
        "info": {
            "swe_agent_version": "1.0.1",
            "exit_status": exit_status,
            "submission": submission,
            "model_stats": {
                "instance_cost": round(total, 6),
                "tokens_sent": sent,
                "tokens_received": int(sent * 0.03),
                "api_calls": len(run.moves),
            },
        },
        "replay_config": json.dumps(config, sort_keys=True),
    }, prompt_sizes


def swe_observation(act: Act, old_style: bool, task: Task) -> str:
    match act.kind:
        case "view":
            total = len(source_lines(task.repo, act.path))
            if old_style:
                head = f"[File: {TESTBED}/{act.path} ({total} lines total)]"
                head += f"\n({act.start - 1} more lines above)"
                return f"{head}\n{act.output}"
            return f"Here's the result of running `cat -n` on {TESTBED}/{act.path}:\n{act.output}"
        case "list":
            return act.output
        case "submit":
            diff = f"diff --git a/{task.module} b/{task.module}\n"
            return diff + f"--- a/{task.module}\n+++ b/{task.module}"
    return act.output


# --- rendering: mini-swe-agent --------------------------------------------------------

MINI_SYSTEM = (
    "You are a helpful assistant that can interact with a computer.\n\nYour response must "
    "contain exactly ONE bash code block with ONE command (or commands connected with && "
    "or ||).\nInclude a THOUGHT section before your command where you explain your "
    "reasoning process."
)
MINI_SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && git add -A && git diff --cached"


def mini_command(act: Act) -> str:
    match act.kind:
        case "list":
            return f"ls -la {act.path}" if act.path != "." else "ls -la"
        case "view":
            return f"nl -ba {act.path} | sed -n '{act.start},{act.end}p'"
        case "search":
            return f'grep -rn "{act.term}" {act.path} --include=*.py'
        case "edit":
            old = act.old.strip().replace("/", "\\/")
            new = act.new.strip().replace("/", "\\/")
            return f"sed -i 's/{old}/{new}/' {act.path}"
        case "create":
            return f"cat <<'EOF' > {act.path}\n{act.new}EOF"
        case "test" | "run":
            return act.command
        case "submit":
            return MINI_SUBMIT
    raise ValueError(act.kind)


def mini_file(
    rng: random.Random, task: Task, run: Run, limits: Limits, rate: float
) -> tuple[dict[str, object], list[int]]:
    """A mini-swe-agent ``.traj.json`` of ``run``, and each call's prompt size."""
    v2 = rng.random() < 0.35
    fence = "mswea_bash_command" if v2 else "bash"
    task_message = (
        f"Please solve this issue: {task.statement}\n\nYou can execute bash commands and edit "
        "files to implement the necessary changes.\n\n## Recommended Workflow\n1. Analyze "
        "the codebase\n2. Reproduce the issue\n3. Fix it\n4. Verify\n5. Submit with "
        "`echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT`."
    )
    messages: list[dict[str, object]] = [
        {"role": "system", "content": MINI_SYSTEM},
        {"role": "user", "content": task_message},
    ]
    total = 0.0
    sizes: list[int] = []
    for move in run.moves:
        prompt = sum(len(str(m["content"])) for m in messages)
        sizes.append(prompt)
        cost = rate * prompt
        total += cost
        tokens = int(prompt / 4 * run.weight * 6)
        extra: dict[str, object] = {
            "cost": round(cost, 6),
            "response": {
                "usage": {
                    "prompt_tokens": tokens,
                    "completion_tokens": 120,
                    "total_tokens": tokens + 120,
                }
            },
        }
        if move.act is None:
            blocks = "".join(f"\n\n```{fence}\nls -la\n```" for _ in range(move.blocks))
            messages.append(
                {"role": "assistant", "content": f"THOUGHT: {move.thought}{blocks}", "extra": extra}
            )
            error = (
                f"Please always provide EXACTLY ONE action in triple backticks, found "
                f"{move.blocks} actions."
            )
            reply: dict[str, object] = {"role": "user", "content": error}
            if v2:
                reply["extra"] = {"interrupt_type": "FormatError", "n_actions": move.blocks}
            messages.append(reply)
            continue
        command = mini_command(move.act)
        if v2:
            extra["actions"] = [{"command": command}]
        content = f"THOUGHT: {move.thought}\n\n```{fence}\n{command}\n```"
        messages.append({"role": "assistant", "content": content, "extra": extra})
        output = (
            move.act.output
            if move.act.kind != "submit"
            else f"diff --git a/{task.module} b/{task.module}"
        )
        if move.act.kind == "submit":
            output = f"COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n{output}"
        observation: dict[str, object] = {
            "role": "user",
            "content": f"<returncode>{move.act.rc}</returncode>\n<output>\n{output}\n</output>",
        }
        if v2:
            observation["extra"] = {"returncode": move.act.rc}
        if move.act.kind != "submit":
            messages.append(observation)
    exit_status = "Submitted" if run.ends_by == "submit" else "LimitsExceeded"
    submission = f"diff --git a/{task.module} b/{task.module}\n" if run.ends_by == "submit" else ""
    if v2:
        messages.append(
            {
                "role": "exit",
                "content": submission,
                "extra": {"exit_status": exit_status, "submission": submission},
            }
        )
    else:
        messages.append({"role": "user", "content": submission})
    return {
        "info": {
            "exit_status": exit_status,
            "submission": submission,
            "model_stats": {"instance_cost": round(total, 6), "api_calls": len(run.moves)},
            "config": {
                "agent": {"step_limit": limits.calls, "cost_limit": limits.cost},
                "model": {"model_name": "anthropic/claude-sonnet-4-5-20250929"},
            },
            "mini_version": "2.0.0" if v2 else "1.17.3",
        },
        "messages": messages,
        "trajectory_format": "mini-swe-agent-1.1" if v2 else "mini-swe-agent-1",
    }, sizes


# --- the corpus -----------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    calls: int
    cost: float
    rate: float  # dollars per prompt character


def draw_limits(rng: random.Random) -> Limits:
    calls = rng.choice((25, 30, 40, 50))
    cost = rng.choice((2.0, 3.0, 4.0))
    # a run that went on to its call limit at the usual context growth would have spent
    # about this share of its cost limit: limits are set without knowing the outcome
    share = rng.uniform(0.45, 0.9)
    typical_prompt = 2_200 + 300 * calls / 2  # characters, on average over such a run
    return Limits(calls, cost, share * cost / (calls * typical_prompt))


def make_task(rng: random.Random) -> Task:
    repo = rng.choice(REPOS)
    module = rng.choice(sorted(repo.modules))
    bug, expected, got = rng.choice(BUGS)
    return Task(repo, module, rng.choice(repo.modules[module]), bug, expected, got)


def settle_costs(run: Run, limits: Limits, sizes: list[int]) -> tuple[Run, float]:
    """The run as the cost limit lets it be, and the dollars per prompt character.

    A cost run ends at the call whose spend passes the cost limit (pushed to pass it by
    four fifths of the way when its growth alone would not). Any other run must not
    have been stopped by cost: if its spend would pass the limit, its rate is lowered
    so that it ends at nine tenths of it.
    """
    rate = limits.rate * run.weight
    spent = [0.0]
    for size in sizes:
        spent.append(spent[-1] + rate * size)
    if run.ends_by == "cost":
        if spent[-1] <= limits.cost:
            rate *= limits.cost / spent[max(1, int(len(sizes) * 0.8))] * 1.01
        total = 0.0
        for i, size in enumerate(sizes):
            total += rate * size
            if total > limits.cost:
                return Run(run.moves[: i + 1], run.outcome, run.problems, run.ends_by), rate
        return run, rate
    if spent[-1] > 0.97 * limits.cost:
        rate *= 0.9 * limits.cost / spent[-1]
    return run, rate


def render(
    source: str, name: str, task: Task, run: Run, limits: Limits, file_seed: int, rate: float
) -> tuple[dict[str, object], list[int]]:
    """The file of one run, and its calls' prompt sizes; the same seed, the same choices."""
    file_rng = random.Random(file_seed)
    if source == "swe":
        return swe_file(file_rng, name, task, run, limits, rate)
    return mini_file(file_rng, task, run, limits, rate)


def generate(out: Path, seed: int = SEED) -> dict[str, dict[str, object]]:
    """Write the corpus under ``out``; return the labels it wrote."""
    rng = random.Random(seed)
    labels: dict[str, dict[str, object]] = {}
    for source, folder in (("swe", "swe-agent"), ("mini", "mini-swe-agent")):
        directory = out / folder
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.iterdir():
            stale.unlink()
        scenarios = [*HEALTHY, *doomed(source == "swe")]
        number = 0
        for kind, scenario, count in scenarios:
            for _ in range(count):
                number += 1
                task, limits = make_task(rng), draw_limits(rng)
                run = scenario(rng, task, limits.calls)
                stem = f"{source}-{number:03d}-{task.repo.name}-{kind}"
                name = f"{stem}.traj" if source == "swe" else f"{stem}.traj.json"
                file_seed = rng.getrandbits(32)
                _, sizes = render(source, name, task, run, limits, file_seed, 0.0)
                run, rate = settle_costs(run, limits, sizes)
                data, _ = render(source, name, task, run, limits, file_seed, rate)
                text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
                (directory / name).write_text(text + "\n", encoding="utf-8")
                labels[name] = {"outcome": run.outcome, "problems": sorted(set(run.problems))}
    (out / "labels.json").write_text(
        json.dumps(labels, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write it")
    parser.add_argument("--seed", type=int, default=SEED, help="the random seed")
    args = parser.parse_args(argv)
    labels = generate(args.out, args.seed)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {len(labels)} runs to {args.out} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
