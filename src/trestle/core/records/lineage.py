"""What an attempt read and wrote in the workspace, as far as the runtime could see.

Recorded with the attempt's end (``StepAttemptEnded.files``, v2) so that the runtime
knows a run's data dependencies, not only its declared ``needs``: cascade tracing
(:mod:`trestle.core.blame`) and a rewind that re-runs only what depended on a step
(:mod:`trestle.core.lineage`) read them. The engine fills them in
(``trestle.engines.attempts``); an attempt recorded before v2 has none, and every
question about it is answered "unknown".
"""

from __future__ import annotations

from trestle.core.record import Record

DELETED = "deleted"  # a written path the attempt removed
ABSENT = "absent"  # a read path that did not exist when the attempt began


class AttemptFiles(Record):
    """The workspace files one attempt touched.

    Attributes:
        wrote: every path the attempt changed, with the SHA-256 of its content after
            the attempt (or ``"deleted"``), from the workspace's checkpoints before and
            after it; ``None`` when no pair of checkpoints was taken around it (a plan
            without ``checkpoints: every_step``), except for a ``write`` step, whose
            one path is known. Unknown writes are never guessed.
        read: paths seen to be read, with the SHA-256 of their content when the attempt
            began (``"absent"``: not there): the workspace files a command names (its
            script, its operands), or none for a ``write`` step. An agent's reads are
            its ``read_file`` calls, which its own events record.
        reads_known: ``read`` is everything the attempt read (a ``write`` step). False
            for a command or a Python callable: a program may open files it does not
            name, so its other reads are unknown.
    """

    wrote: dict[str, str] | None = None
    read: dict[str, str] = {}
    reads_known: bool = False
