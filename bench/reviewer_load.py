"""Reviewer load: how many decisions a human makes, and how much card text they read,
before and after the inbox groups the cards one ``approve --similar`` decides.

Two plans, each run by the real CLI on a fresh workspace and SQLite store:

- ``demo``: the plan ``make demo`` runs (``examples/setup-project/plan.yaml`` on a
  fresh copy of its sample, see ``scripts/demo.sh``);
- ``release20``: a 20-step release plan written here: six region configs and three
  migrations written (irreversible), four commits one after another, a release, and
  six steps that need nobody.

Each plan runs twice. At every pause the bench reads the inbox as ``trestle inbox``
prints it (the same code, :func:`trestle.cli.human.show_entry`, on a 100-column
console) and decides everything it shows, then resumes, until the run ends:

- before: an inbox without groups, one card per entry, one ``trestle approve REF``
  per card;
- after: the inbox as it is, one ``trestle approve REF --similar`` per entry (with
  ``--group ID`` for a group). For a card alone this also grants later similar
  actions, as ``--similar`` always did; that is part of the same one act.

Per entry read it records characters, lines and words as printed, and a reading time at
:data:`WPM` words per minute. Usage::

    python bench/reviewer_load.py [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from hostinfo import REPO_DIR, machine_info
from trestle.cli.human import show_entry
from trestle.core.card import HandoffCard
from trestle.core.card_groups import CardGroup, grouped
from trestle.lifecycle.approvals import inbox
from trestle.store import SqliteStore

WPM = 200  # words per minute: a careful read of technical text, not a skim
WIDTH = 100

REGIONS = ("eu", "us", "ap", "sa", "af", "me")
MIGRATIONS = (1, 2, 3)


def release20() -> dict[str, object]:
    """The 20-step plan: what needs a human is written or run alike several times."""
    configs = [
        {
            "id": f"conf-{r}",
            "description": f"the {r} region's release config",
            "write": {"path": f"deploy/{r}.toml", "content": f"region = '{r}'\nversion = '2.0'\n"},
            "irreversible": True,
        }
        for r in REGIONS
    ]
    migrations = [
        {
            "id": f"migration-{n}",
            "description": f"schema migration {n}",
            "write": {"path": f"migrations/00{n}.sql", "content": f"alter table t{n} add c int;\n"},
            "irreversible": True,
        }
        for n in MIGRATIONS
    ]
    written = [s["id"] for s in configs + migrations]
    commits = [
        {
            "id": f"commit-{n}",
            "needs": written if n == 1 else [f"commit-{n - 1}"],
            "run": f'git commit --allow-empty -q -m "release 2.0: part {n} of 4"',
        }
        for n in (1, 2, 3, 4)
    ]
    steps = [
        {"id": "check", "run": "python3 -c \"print('config schema ok')\""},
        {"id": "inventory", "run": "ls"},
        *configs,
        *migrations,
        *commits,
        {"id": "notes", "write": {"path": "NOTES.md", "content": "release 2.0\n"}},
        {"id": "test", "needs": ["notes"], "run": "python3 -c \"print('tests pass')\""},
        {"id": "list-migrations", "needs": [m["id"] for m in migrations], "run": "ls migrations"},
        {"id": "release", "needs": ["commit-4"], "run": "echo released 2.0", "irreversible": True},
        {"id": "summary", "needs": ["release"], "run": "ls deploy"},
    ]
    return {"goal": "release 2.0 to every region", "steps": steps}


@dataclass
class Entry:
    """One inbox entry a human read, and decided in one act."""

    cards: int
    chars: int
    lines: int
    words: int


@dataclass
class Measured:
    plan: str
    mode: str  # before | after
    steps: int
    cards: int = 0
    decisions: int = 0
    entries: list[Entry] = field(default_factory=list)
    outcome: str = ""

    def totals(self) -> dict[str, float]:
        chars = sum(e.chars for e in self.entries)
        lines = sum(e.lines for e in self.entries)
        words = sum(e.words for e in self.entries)
        n = max(1, len(self.entries))
        return {
            "chars": chars,
            "lines": lines,
            "words": words,
            "chars_per_decision": round(chars / n),
            "lines_per_decision": round(lines / n, 1),
            "reading_seconds": round(words / WPM * 60),
        }


def _trestle(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trestle", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _prepare(plan: str, where: Path) -> tuple[Path, Path]:
    """A fresh workspace for ``plan``, and the plan file to run."""
    if plan == "demo":
        workspace = where / "sample"
        prepare = [str(REPO_DIR / "scripts/prepare-demo.sh"), str(workspace)]
        subprocess.run(prepare, check=True, stdout=subprocess.DEVNULL)
        return workspace, REPO_DIR / "examples/setup-project/plan.yaml"
    workspace = where / "release"
    workspace.mkdir()
    for args in (
        ["init", "-q"],
        ["config", "user.email", "bench@example.invalid"],
        ["config", "user.name", "bench"],
        ["commit", "--allow-empty", "-q", "-m", "start"],
    ):
        subprocess.run(["git", *args], cwd=workspace, check=True)
    path = where / "release20.yaml"  # JSON is YAML
    path.write_text(json.dumps(release20(), indent=2), encoding="utf-8")
    return workspace, path


def _alone(card: HandoffCard) -> HandoffCard:
    """The card as an inbox without groups shows it: no word of the others."""
    if not card.group_refs:
        return card
    similar = card.similar.split("; ", 1)[-1]
    return card.model_copy(update={"group": None, "group_refs": [], "similar": similar})


def _shown(store: SqliteStore, entry: CardGroup) -> Entry:
    out = Console(width=WIDTH, record=True, color_system=None, file=io.StringIO())
    # read the moment it is asked: the age line then reads the same in every run
    show_entry(out, store, entry, now=entry.head.requested_at)
    text = out.export_text()
    return Entry(len(entry.cards), len(text), len(text.splitlines()), len(text.split()))


def measure(plan: str, mode: str) -> Measured:
    with tempfile.TemporaryDirectory(prefix="trestle-reviewer-") as tmp:
        where = Path(tmp)
        workspace, plan_file = _prepare(plan, where)
        env = {**os.environ, "TRESTLE_STORE": str(where / "trestle.db"), "COLUMNS": str(WIDTH)}
        env.update(NO_COLOR="1", TERM="dumb")
        started = _trestle(
            env, where, "run", str(plan_file), "--workspace", str(workspace), "--no-prompt"
        )
        if started.returncode not in (0, 3):
            raise SystemExit(f"{plan}/{mode}: the run did not start: {started.stderr}")
        run_id = started.stdout.splitlines()[0].split()[1]
        code = started.returncode
        store = SqliteStore(where / "trestle.db")
        result = Measured(plan, mode, _steps(plan))
        while code == 3:
            cards = inbox(store, run_id=run_id)
            if not cards:
                break
            entries = [CardGroup(_alone(c)) for c in cards] if mode == "before" else grouped(cards)
            for entry in entries:
                result.entries.append(_shown(store, entry))
                result.cards += len(entry.cards)
                result.decisions += 1
                args = ["approve", entry.head.ref, "--reason", "bench"]
                if mode == "after":
                    args.append("--similar")
                    if entry.others:
                        args += ["--group", str(entry.head.group)]
                decided = _trestle(env, where, *args)
                if decided.returncode != 0:
                    raise SystemExit(f"{plan}/{mode}: {decided.stderr}")
            code = _trestle(env, where, "resume", run_id, "--no-prompt").returncode
        result.outcome = store.run(run_id).status
        store.close()
        return result


def _steps(plan: str) -> int:
    if plan != "demo":
        steps = release20()["steps"]
        assert isinstance(steps, list)
        return len(steps)
    text = (REPO_DIR / "examples/setup-project/plan.yaml").read_text(encoding="utf-8")
    return sum(1 for line in text.splitlines() if line.strip().startswith("- id:"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    host = machine_info(Path(tempfile.gettempdir()))
    rows = []
    print(f"commit {host['trestle_commit']}; {host['python']}; SQLite {host['sqlite']}; ", end="")
    print(f"{host['nproc']} cores; reading at {WPM} words per minute; {WIDTH} columns")
    print(
        f"{'plan':<10} {'mode':<7} {'steps':>5} {'cards':>5} {'decisions':>9} "
        f"{'chars':>7} {'lines':>6} {'chars/dec':>9} {'lines/dec':>9} {'read':>6}  outcome"
    )
    for plan in ("demo", "release20"):
        for mode in ("before", "after"):
            m = measure(plan, mode)
            t = m.totals()
            rows.append({**asdict(m), "totals": t})
            print(
                f"{plan:<10} {mode:<7} {m.steps:>5} {m.cards:>5} {m.decisions:>9} "
                f"{t['chars']:>7} {t['lines']:>6} {t['chars_per_decision']:>9} "
                f"{t['lines_per_decision']:>9} {t['reading_seconds']:>5}s  {m.outcome}"
            )
    if args.json is not None:
        args.json.write_text(json.dumps({"host": host, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
