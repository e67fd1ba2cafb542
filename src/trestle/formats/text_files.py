"""A text file a person names (a plan, ``trestle.toml``, a trajectory, an edit), read
within bounds: a regular file, UTF-8, no larger than its limit, or a PlanError saying
why not.

Apart from the plan-file module so that what reads only these (the policy file's
reader, which every command that reads runs loads) does not load a YAML parser.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trestle.core.errors import PlanError

MAX_PLAN_BYTES = 8 * 1024 * 1024  # a plan file's, and a human's edit of an action


def read_text_file(path: Path, limit: int) -> str:
    """A regular file's UTF-8 text, at most ``limit`` bytes, or a PlanError saying why not.

    A FIFO, device, socket or directory is refused by its type before anything is read
    (a FIFO would block, ``/dev/zero`` never ends); it is opened non-blocking besides,
    in case it is swapped between the look and the open.
    """
    source = str(path)
    try:
        kind = path.stat().st_mode
        if not stat.S_ISREG(kind):
            raise PlanError(source, [f"not a regular file ({_file_type(kind)})"])
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise PlanError(source, ["not a regular file"])
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise PlanError(source, ["file not found"]) from None
    except OSError as exc:
        raise PlanError(source, [f"cannot read: {exc.strerror or exc}"]) from None
    if len(data) > limit:
        raise PlanError(source, [f"larger than {limit:,} bytes"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(source, [f"cannot read: not UTF-8 text (byte {exc.start})"]) from None


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"
