"""A process that works on a group's blackboard, for the tests of races between processes.

Usage::

    python tests/group_worker.py STORE GROUP increment N NAME
    python tests/group_worker.py STORE GROUP write-after SECONDS KEY VALUE
    python tests/group_worker.py STORE GROUP take RECIPIENT NAME

STORE is a path or a ``postgresql://`` URL.

``increment``: N increments of the key ``counter`` by compare-and-set, each retried
on a conflict until accepted; prints how many conflicts it met. ``write-after``:
sleeps, then writes VALUE (JSON) to KEY whatever its version. ``take``: receives
RECIPIENT's messages as NAME until none has come for a second; prints the ids it got,
one a line. With ``GO_AT`` (a
wall-clock time) in its environment it opens the store, then waits for that moment:
workers started one after another begin together.
"""

from __future__ import annotations

import json
import os
import sys
import time

from trestle.coordination.board import Board
from trestle.store.location import open_store


def increment(board: Board, times: int, name: str) -> int:
    conflicts = 0
    for _ in range(times):
        while True:
            now = board.read("counter")
            version, value = (0, 0) if now is None else (now.version, now.value)
            time.sleep(0.0005)  # think: another worker may write meanwhile
            if board.write("counter", value + 1, version, writer=name).accepted:
                break
            conflicts += 1
    return conflicts


def main(argv: list[str]) -> int:
    path, group, mode, *rest = argv
    store = open_store(path)
    board = Board(store, group)
    time.sleep(max(0.0, float(os.environ.get("GO_AT", "0")) - time.time()))
    try:
        if mode == "increment":
            print(increment(board, int(rest[0]), rest[1]))
        elif mode == "write-after":
            time.sleep(float(rest[0]))
            board.write(rest[1], json.loads(rest[2]), writer="worker")
        elif mode == "take":
            idle = time.monotonic()
            while time.monotonic() - idle < 1.0:
                got = store.take_messages(group, rest[0], by=rest[1], now=time.time())
                for m in got:
                    print(m.id)
                    idle = time.monotonic()
        else:
            print(__doc__, file=sys.stderr)
            return 2
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
