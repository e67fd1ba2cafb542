"""Write the real-run excerpts the monitor tests replay (``tests/data/real_runs``).

Each excerpt is the first turns of one run from ``../shared/trajectories`` (all from
the tuning half of the split, see ``bench/monitor_split.py``), in the run's own
format, gzipped: a prefix, because a monitor's alert at turn k depends only on the
turns up to k. What is cut: the turns after the prefix, the system prompt's text
(kept to its first line), and, for OpenHands, the text view of the conversation
(``messages``, the same turns again) and the final model output. Every action,
observation and task message in the prefix is kept byte for byte.

Usage: ``python scripts/make_real_excerpts.py [--root ../shared/trajectories]``
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2] / "shared" / "trajectories"
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_runs"

# (folder, instance, turns kept, why it is there)
EXCERPTS: list[tuple[str, str, int, str]] = [
    (
        "openhands/mopenhands_claude-3.5-sonnet-oct_python_verified",
        "django__django-11265",
        12,
        "succeeded; repeat flagged its reproduction script failing between edits",
    ),
    (
        "openhands/mopenhands_claude-3.5-sonnet-oct_python_verified",
        "django__django-16082",
        10,
        "succeeded; cycle flagged two files paged through in turn",
    ),
    (
        "openhands/mopenhands_claude-3.5-sonnet-oct_python_verified",
        "sympy__sympy-16886",
        25,
        "succeeded; test_rerun flagged the same failure while the test script was reworked",
    ),
    (
        "openhands/mopenhands_claude-3.5-sonnet-oct_python_verified",
        "pytest-dev__pytest-10356",
        17,
        "exhausted its 50 calls; test_rerun must flag the same failure across code edits",
    ),
    (
        "openhands/mopenhands_claude-3.5-sonnet-oct_python_verified",
        "matplotlib__matplotlib-26208",
        17,
        "exhausted its 50 calls; reread must flag axes/_base.py read 7 times unchanged",
    ),
    (
        "mini-swe-agent/20251118_mini-v1.15.0_gemini-3-pro-preview",
        "django__django-12209",
        57,
        "succeeded; cost flagged a burn rate and an overspend of a budget it never neared",
    ),
    (
        "mini-swe-agent/20251118_mini-v1.15.0_gemini-3-pro-preview",
        "django__django-11951",
        23,
        "succeeded; format flagged a 3-turn malformed streak it recovered from",
    ),
    (
        "mini-swe-agent/20251118_mini-v1.15.0_gemini-3-pro-preview",
        "django__django-11299",
        39,
        "succeeded after an 8-turn malformed streak (turns 30-37)",
    ),
]


def _first_line(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str) and "\n" in content:
        return {**message, "content": content.split("\n", 1)[0] + "\n[trimmed]"}
    return message


def _mini(data: dict[str, Any], turns: int) -> dict[str, Any]:
    messages = data["messages"]
    answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    end = answers[turns] if turns < len(answers) else len(messages)
    kept = [_first_line(m) if m["role"] == "system" else m for m in messages[:end]]
    info = {k: v for k, v in data["info"].items() if k != "submission"}
    config = info.get("config", {}).get("agent", {})
    info["config"] = {"agent": {k: config[k] for k in ("step_limit", "cost_limit") if k in config}}
    return {"trajectory_format": data.get("trajectory_format"), "info": info, "messages": kept}


def _openhands(data: dict[str, Any], turns: int) -> dict[str, Any]:
    messages = data["fncall_messages"]
    answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    end = answers[turns] if turns < len(answers) else len(messages)
    kept = [_first_line(m) if m["role"] == "system" else m for m in messages[:end]]
    return {"timestamp": data.get("timestamp"), "cost": data.get("cost"), "fncall_messages": kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    sources = {}
    for folder, instance, turns, why in EXCERPTS:
        index = args.root / folder / "index.jsonl"
        entry = next(
            e
            for e in map(json.loads, index.read_text(encoding="utf-8").splitlines())
            if e["instance_id"] == instance
        )
        data = json.loads(gzip.decompress((index.parent / entry["file"]).read_bytes()))
        scaffold = folder.split("/", 1)[0]
        excerpt = _openhands(data, turns) if scaffold == "openhands" else _mini(data, turns)
        suffix = ".json.gz" if scaffold == "openhands" else ".traj.json.gz"
        name = f"{scaffold}-{instance}{suffix}"
        text = json.dumps(excerpt, ensure_ascii=False, sort_keys=True)
        (OUT / name).write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        sources[name] = {
            "scaffold": folder,
            "instance_id": instance,
            "upstream_path": entry["source_path"],
            "upstream_sha256": entry["sha256_uncompressed"],
            "resolved": entry["resolved"],
            "turns_kept": turns,
            "why": why,
        }
    (OUT / "README.md").write_text(_readme(sources), encoding="utf-8")


def _readme(sources: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Excerpts of real agent runs",
        "",
        "The first turns of real runs on SWE-bench Verified tasks, each in its agent's own",
        "format, gzipped; written by `scripts/make_real_excerpts.py` from",
        "`../shared/trajectories` (tuning half only), which says where each run was",
        "published: mini-swe-agent runs from `gruckion/mini-swe-agent` (MIT), OpenHands",
        "runs from `gsmoon97/swe-agent-eval`. Cut: the turns after the prefix, the system",
        "prompt past its first line, OpenHands' text view of the conversation and its",
        "final output. Tests: `tests/test_monitor_real_runs.py`.",
        "",
        "| file | upstream file | sha256 of the upstream file | resolved | turns kept | why |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    for name, entry in sources.items():
        lines.append(
            f"| `{name}` | `{entry['scaffold']}`: `{entry['upstream_path']}` "
            f"| `{entry['upstream_sha256']}` | {entry['resolved']} | {entry['turns_kept']} "
            f"| {entry['why']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
