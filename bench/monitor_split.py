"""The fixed split of the real runs into a tuning half and a report half.

Fixed before any monitor was tuned on the real runs of ``../shared/trajectories`` and
never to be changed after: a run belongs to the half its task's ``instance_id`` hashes
to, so every scaffold's run of one task falls in the same half (a task seen while
tuning is never reported on). Tune on ``"tune"``; report figures on ``"report"`` only.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Half = Literal["tune", "report"]
SALT = "trestle-monitors-split-v1"


def half_of(instance_id: str) -> Half:
    """The half a task's runs belong to: the low bit of a salted SHA-256 of its id."""
    digest = hashlib.sha256(f"{SALT}:{instance_id}".encode()).digest()
    return "tune" if digest[0] % 2 == 0 else "report"


if __name__ == "__main__":
    import json
    import sys
    from collections import Counter
    from pathlib import Path

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/trajectories")
    counts: Counter[tuple[str, Half]] = Counter()
    for index in sorted(root.glob("*/*/index.jsonl")):
        for line in index.read_text(encoding="utf-8").splitlines():
            counts[(index.parent.parent.name, half_of(json.loads(line)["instance_id"]))] += 1
    for (source, half), n in sorted(counts.items()):
        print(f"{source:16} {half:7} {n}")
