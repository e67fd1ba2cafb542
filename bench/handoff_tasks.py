"""The context-loss suite's tasks: a fact only the sender saw, needed by the receiver.

Each task is a sender's investigation (what its tools read and ran, its findings, its
plan and why, the final summary it writes, which omits the fact, as real summaries
do) and a question for the receiver, whose answer is that fact. The fact is buried:
the sender also reads several long files that have nothing to do with it.

:data:`TASKS` holds them all; :func:`task` finds one by name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FILLER_FILES = 7  # long files every sender also reads
FILLER_LINES = 150  # lines per filler file (~5 KB)
WORDS = [
    "alpha",
    "bravo",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "gamma",
    "harbor",
    "iris",
    "juniper",
    "kelp",
    "lumen",
    "mesa",
    "nectar",
    "onyx",
    "pylon",
    "quartz",
    "raven",
    "sable",
    "tundra",
    "umber",
    "vortex",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
]


@dataclass(frozen=True)
class Call:
    """One tool call of the sender's UNDERSTAND phase; ``text`` is the model's words
    alongside it (usually none)."""

    tool: str
    arguments: dict[str, Any]
    text: str = ""


@dataclass(frozen=True)
class Task:
    """One context-loss task (see the module docstring).

    Attributes:
        name: a short id.
        kind: where the fact lives, in words.
        question: the receiver's goal.
        pattern: the receiver's regular expression for the fact (group 1 is the value).
        answer: the fact; the receiver's acceptance check compares with its hash.
        hints: words the receiver looks for in an artifact's note before fetching it.
        files: the sender's workspace, beside the filler files.
        calls: the sender's own look-ups, between its filler reads.
        summary: the sender's findings' summary.
        constraints: findings' constraints; questions: findings' open questions.
        plan_summary, reasoning: the sender's plan's approach and its step's reasoning.
        rules: the sender run's rules.
        test_command: the sender run's test command (``run_tests`` in ``calls``).
        final: the sender's last message (its finish summary): it omits the fact.
    """

    name: str
    kind: str
    question: str
    pattern: str
    answer: str
    hints: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)
    calls: tuple[Call, ...] = ()
    summary: str = "the investigation is done; details are in the notes"
    constraints: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    plan_summary: str = "write down what was found"
    reasoning: str = "the next agent needs the notes"
    rules: tuple[str, ...] = ()
    test_command: str | None = None
    final: str = "Investigated the code and wrote NOTES.md; the next step can go ahead."


def filler(seed: str, lines: int = FILLER_LINES) -> list[str]:
    """Plausible code that says nothing the tasks ask about (deterministic)."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < lines:
        name = f"{rng.choice(WORDS)}_{rng.randrange(100)}"
        out += [
            f"def handle_{name}(ctx):",
            f'    value = ctx.lookup("{rng.choice(WORDS)}.{rng.choice(WORDS)}")',
            f"    return transform(value, level={rng.randrange(1, 9)})",
            "",
        ]
    return out[:lines]


def buried(seed: str, line: str, at: float = 0.6, lines: int = FILLER_LINES) -> str:
    """Filler with ``line`` in it, ``at`` of the way down."""
    body = filler(seed, lines)
    body.insert(int(len(body) * at), line)
    return "\n".join(body) + "\n"


def read(path: str, text: str = "") -> Call:
    return Call("read_file", {"path": path}, text)


def _file_task(
    name: str, kind: str, question: str, path: str, line: str, pattern: str, answer: str,
    hints: tuple[str, ...], at: float = 0.6, **extra: Any,
) -> Task:  # fmt: skip
    return Task(
        name=name,
        kind=kind,
        question=question,
        pattern=pattern,
        answer=answer,
        hints=hints,
        files={path: buried(name, line, at)},
        calls=(read(path),),
        **extra,
    )


CHECKS_LOG = "\n".join(
    [f"tests/test_ledger.py::test_case_{i} PASSED" for i in range(60)]
    + [
        "=================================== FAILURES ===================================",
        "__________________________ test_round_half_even ______________________________",
        "    assert round_money(Decimal('2.675')) == Decimal('2.68')",
        "E   AssertionError: assert Decimal('2.67') == Decimal('2.68')",
        "=========================== short test summary info ============================",
        "FAILED tests/test_money.py::test_round_half_even - AssertionError",
        "1 failed, 60 passed in 0.42s",
    ]
)

TASKS: tuple[Task, ...] = (
    _file_task(
        "config-timeout",
        "a value on one line of a config file",
        "Write the service's request timeout, in milliseconds (the number only), to answer.txt.",
        "config/service.ini",
        "request_timeout_ms = 4750",
        r"request_timeout_ms\s*=\s*(\d+)",
        "4750",
        ("service.ini", "config"),
    ),
    Task(
        name="failing-test",
        kind="a test failure in a command's output",
        question="Write the node id of the failing test (path::name) to answer.txt.",
        pattern=r"FAILED (tests/\S+::\w+)",
        answer="tests/test_money.py::test_round_half_even",
        hints=("run_tests", "tests"),
        files={"checks.sh": f"cat <<'EOF'\n{CHECKS_LOG}\nEOF\nexit 1\n"},
        calls=(Call("run_tests", {}),),
        test_command="sh checks.sh",
        summary="one money test fails on rounding",
    ),
    Task(
        name="decision-port",
        kind="a decision and its reason in the plan",
        question="Write the port the admin listener must use (the number only) to answer.txt.",
        pattern=r"admin listener on port (\d+)",
        answer="8443",
        hints=("admin", "listener"),
        files={"deploy/ports.md": buried("decision-port", "ports: see the runbook")},
        calls=(read("deploy/ports.md"),),
        reasoning="put the admin listener on port 8443, because 8080 is taken by the "
        "metrics sidecar",
    ),
    Task(
        name="rule-tag-prefix",
        kind="a rule the sender was given",
        question="Write the prefix release tags must carry to answer.txt.",
        pattern=r"tags carry the prefix '([^']+)'",
        answer="rel-",
        hints=("tag", "release"),
        rules=(
            "Release branches are named release/YYYY.MM and their tags carry the prefix 'rel-'",
        ),
    ),
    Task(
        name="env-var",
        kind="an environment variable's name in a search result",
        question="Write the name of the environment variable the billing client reads its "
        "token from to answer.txt.",
        pattern=r"billing/client\.py:\d+:.*getenv\(\"([A-Z0-9_]+)\"\)",
        answer="BILLING_API_TOKEN_V2",
        hints=("getenv",),
        files={
            "src/billing/client.py": buried("env-var", 'key = os.getenv("BILLING_API_TOKEN_V2")'),
            "src/mail/client.py": buried("env-var-2", 'key = os.getenv("MAIL_TOKEN")'),
        },
        calls=(Call("search_text", {"pattern": "getenv", "directory": "src"}),),
    ),
    _file_task(
        "version-pin",
        "a version pin in a requirements file",
        "Write the exact version urllib3 is pinned to (the version only) to answer.txt.",
        "requirements.txt",
        "urllib3==1.26.18  # 2.x breaks the proxy adapter",
        r"urllib3==([\d.]+)",
        "1.26.18",
        ("requirements",),
    ),
    Task(
        name="search-constant",
        kind="a constant in a search hit (file:line)",
        question="Write the upload size limit in MB (the number only) to answer.txt.",
        pattern=r"MAX_UPLOAD_MB = (\d+)",
        answer="37",
        hints=("MAX_UPLOAD",),
        files={"src/app/limits.py": buried("search-constant", "MAX_UPLOAD_MB = 37")},
        calls=(Call("search_text", {"pattern": "MAX_UPLOAD", "directory": "src"}),),
    ),
    Task(
        name="findings-function",
        kind="the sender's own finding",
        question="Write the name of the function that has the bug to answer.txt.",
        pattern=r"the bug is in (\w+)\(\)",
        answer="parse_header",
        hints=("http",),
        files={"src/http/headers.py": buried("findings-function", "def parse_header(raw):")},
        calls=(read("src/http/headers.py"),),
        summary="the bug is in parse_header(): it drops the charset parameter",
    ),
    Task(
        name="open-question",
        kind="an open question the sender left",
        question="Write the retry cap currently in force (the number only) to answer.txt.",
        pattern=r"retry cap stay at (\d+)",
        answer="7",
        hints=("retry",),
        questions=("Should the retry cap stay at 7 or follow the SLA document's 5?",),
    ),
    _file_task(
        "changelog-version",
        "a version named in a long changelog",
        "Write the version that introduced the regression to answer.txt.",
        "CHANGELOG.md",
        "- 3.14.2: regression introduced in 3.14.2 (export drops empty rows)",
        r"regression introduced in ([\d.]+)",
        "3.14.2",
        ("CHANGELOG",),
        at=0.8,
    ),
    _file_task(
        "schema-column",
        "a column name in a schema",
        "Write the name of the column that stores the customer's e-mail to answer.txt.",
        "db/schema.sql",
        "    cust_email_addr TEXT NOT NULL, -- the customer's e-mail",
        r"(cust_email_\w+)",
        "cust_email_addr",
        ("schema",),
    ),
    _file_task(
        "feature-flag",
        "a percentage in a flags file",
        "Write the checkout v3 rollout percentage (the number only) to answer.txt.",
        "flags.yaml",
        "checkout_v3_rollout: 17",
        r"checkout_v3_rollout:\s*(\d+)",
        "17",
        ("flags",),
        at=0.3,
    ),
    _file_task(
        "api-endpoint",
        "an endpoint in API docs",
        "Write the method and path of the endpoint that voids an invoice to answer.txt.",
        "docs/api.md",
        "Void an invoice: POST /v2/invoices/{id}/void",
        r"Void an invoice: (POST \S+)",
        "POST /v2/invoices/{id}/void",
        ("api",),
    ),
    _file_task(
        "cron-schedule",
        "a schedule in a crontab",
        "Write the cron schedule (the five fields) of the backup job to answer.txt.",
        "deploy/crontab",
        "15 3 * * 1 /opt/bin/backup.sh",
        r"(?m)^(\S+ \S+ \S+ \S+ \S+) /opt/bin/backup\.sh",
        "15 3 * * 1",
        ("crontab",),
    ),
    _file_task(
        "log-error-code",
        "an error code in the middle of a log",
        "Write the error code the worker logged for the ledger mismatch to answer.txt.",
        "logs/worker.log",
        "2026-03-02T10:14:07Z ERROR E4127: ledger mismatch on batch 991",
        r"ERROR (E\d+): ledger mismatch",
        "E4127",
        ("worker.log", "logs"),
        at=0.5,
    ),
    _file_task(
        "base-image",
        "a base image in a Dockerfile",
        "Write the base image (name:tag) the service's Dockerfile builds from to answer.txt.",
        "Dockerfile",
        "FROM python:3.11.9-slim-bookworm",
        r"FROM (python:\S+)",
        "python:3.11.9-slim-bookworm",
        ("Dockerfile",),
        at=0.05,
    ),
    _file_task(
        "checksum",
        "a checksum in a list of them",
        "Write the SHA-256 of bundle.tar.gz to answer.txt.",
        "dist/SHA256SUMS",
        f"{'3f' * 32}  bundle.tar.gz",
        r"([0-9a-f]{64})  bundle\.tar\.gz",
        "3f" * 32,
        ("SHA256SUMS", "dist"),
    ),
    Task(
        name="constraint-date-format",
        kind="a constraint in the sender's findings",
        question="Write the date format (strftime) the CSV export must use to answer.txt.",
        pattern=r"must use the format (%[%\w./-]+)",
        answer="%d.%m.%Y",
        hints=("export",),
        files={"src/export/csv.py": buried("constraint-date-format", "def export_rows(rows):")},
        calls=(read("src/export/csv.py"),),
        constraints=("Dates in the CSV export must use the format %d.%m.%Y",),
    ),
    _file_task(
        "pg-connections",
        "a setting deep in a long config",
        "Write the database's max_connections (the number only) to answer.txt.",
        "db/postgresql.conf",
        "max_connections = 412",
        r"max_connections = (\d+)",
        "412",
        ("postgresql",),
        at=0.9,
    ),
    Task(
        name="decision-library",
        kind="a decision's reason: which library was chosen",
        question="Write the name of the YAML library the loader must use to answer.txt.",
        pattern=r"use the (\w+) library",
        answer="ruamel",
        hints=("yaml",),
        files={"src/config/loader.py": buried("decision-library", "import yaml")},
        calls=(read("src/config/loader.py"),),
        plan_summary="switch the loader to round-trip YAML",
        reasoning="use the ruamel library: it keeps comments, PyYAML drops them",
    ),
    Task(
        name="prose-host",
        kind="a fact only in the sender's own words (hard for the packet)",
        question="Write the staging database's host name to answer.txt.",
        pattern=r"staging DB host is ([\w.-]+)",
        answer="db-stg-04.internal",
        hints=("staging",),
        files={"deploy/hosts.txt": buried("prose-host", "# hosts: see the inventory")},
        calls=(
            read(
                "deploy/hosts.txt",
                "Noted while reading the inventory: the staging DB host is db-stg-04.internal "
                "(the wiki's db-stg-01 is retired).",
            ),
        ),
    ),
    Task(
        name="unlabelled-output",
        kind="a fact in an output the packet's index does not point to (hard for the packet)",
        question="Write the region payments run in to answer.txt.",
        pattern=r"PAYMENTS_REGION=([\w-]+)",
        answer="eu-central-2",
        hints=("payments", "region"),
        files={
            "ops/inventory.env": buried("unlabelled-output", "PAYMENTS_REGION=eu-central-2", 0.2)
        },
        calls=(read("ops/inventory.env"),),
    ),
)


def task(name: str) -> Task:
    """The task called ``name``."""
    for t in TASKS:
        if t.name == name:
            return t
    raise KeyError(f"no task {name!r}; there are: {', '.join(t.name for t in TASKS)}")
