"""fetch_artifact: a receiving agent pulls what its handoff packet references.

A run started with a handoff packet (``AgentSettings.handoff``, see
:mod:`trestle.core.handoff`) sees the packet's artifacts listed by reference. This tool
resolves one, and only one the packet lists: a receiver cannot read arbitrary runs.
A packet that a message carried to the run (``send_message`` with ``handoff``) counts
once the run's model has received that message.

=============  ==============================================================
kind           what is returned
=============  ==============================================================
file           the workspace file (``path``, ``path:LINE`` or
               ``path:FIRST-LAST``), read through the workspace jail
checkpoint     a file (``path``) as a workspace snapshot holds it
commit         a file (``path``) as a commit of the workspace's git holds it
transcript     the sender's events in the referenced seq range, as the
               conversation they record; ``first``/``last`` narrow it
tool_output    one tool call's output: what was called, what it returned
=============  ==============================================================

What it returns is held to the context's output cap, with a note saying what was cut
and how to read on. The packet is read from the receiving run's first event, so a
resumed run resolves exactly what it was handed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

from pydantic import Field

from trestle.core.events import RunCreated, StoredEvent, ToolCallEnded, ToolCallStarted
from trestle.core.handoff import ArtifactRef, HandoffPacket, carried
from trestle.core.packets import tool_output_text, transcript_parts
from trestle.store.base import Store
from trestle.tools.base import Observation, Tool, ToolArgs, ToolContext, ToolFailure
from trestle.tools.files import MAX_FILE_BYTES, ReadFile, ReadFileArgs
from trestle.tools.sandboxed_git import confined, run_script
from trestle.workspace.beneath import protected_part
from trestle.workspace.git import (
    UnsafeRepositoryError,
    command,
    environment,
    refuse_links_read_outside,
    workspace_git_dir,
)
from trestle.workspace.shadow import (
    ShadowRepo,
    ShadowRepoError,
    UnknownSnapshotError,
    shadow_dir_for,
)

RUN_SEQ = re.compile(r"^(?P<run>[^:\s]+):(?P<first>\d+)(?:-(?P<last>\d+))?$")
FILE_LINES = re.compile(r"^(?P<path>.+?):(?P<first>\d+)(?:-(?P<last>\d+))?$")
COMMIT_ID = re.compile(r"^[0-9a-f]{4,64}$")
GIT_TIMEOUT = 30.0


class FetchArtifactArgs(ToolArgs):
    ref: str = Field(
        min_length=1, max_length=500, description="An artifact's reference, as the packet lists it."
    )
    path: str | None = Field(
        default=None,
        max_length=4096,
        description="For a checkpoint or a commit: the workspace-relative file to read in it.",
    )
    first: int | None = Field(
        default=None, ge=0, description="For a transcript: the first seq to show (in its range)."
    )
    last: int | None = Field(
        default=None, ge=0, description="For a transcript: the last seq to show (in its range)."
    )


class FetchArtifact(Tool[FetchArtifactArgs]):
    """See the module docstring.

    Args:
        store: the store the receiving run and its sender are recorded in.
    """

    name = "fetch_artifact"
    description = (
        "Fetch an artifact your handoff packet lists, by its reference: a file, a file "
        "at a checkpoint or commit (give path), a slice of the sender's transcript "
        "(first/last seqs narrow it), or one tool call's output. Only references the "
        "packet lists can be fetched."
    )
    nature = "read"
    arguments = FetchArtifactArgs

    def __init__(self, store: Store) -> None:
        self.store = store
        self._packets: dict[str, HandoffPacket | None] = {}

    async def run(self, ctx: ToolContext, args: FetchArtifactArgs) -> Observation:
        packets = await self._given(ctx)
        if not packets:
            raise ToolFailure("this run was handed no handoff packet: nothing to fetch")
        found = [(p, a) for p in packets if (a := p.artifact(args.ref)) is not None]
        if not found:
            refs = [a.ref for p in packets for a in p.artifacts]
            listed = ", ".join(repr(ref) for ref in refs[:8]) or "none"
            raise ToolFailure(
                f"{args.ref!r} is not an artifact of a handoff packet this run was given; "
                f"they list: {listed}{' ...' if len(refs) > 8 else ''}"
            )
        packet, artifact = found[0]
        if artifact.kind in ("transcript", "tool_output"):
            run = _run_range(artifact.ref)[0]
            if run != packet.sender:  # a packet speaks only of its sender's record
                raise ToolFailure(
                    f"{args.ref!r} is of run {run}, not of the packet's sender "
                    f"{packet.sender or '(none)'}: it cannot be fetched"
                )
        match artifact.kind:
            case "file":
                return await asyncio.to_thread(_file, ctx, artifact)
            case "checkpoint" | "commit":
                if not args.path:
                    why = f"{artifact.kind} {artifact.ref!r}: give path, the file to read"
                    raise ToolFailure(why)
                name = _snapshot_path(args.path)
                if artifact.kind == "commit" and confined(ctx):
                    data = await _commit_file_in_sandbox(ctx, artifact.ref, name)
                else:
                    data = await asyncio.to_thread(self._snapshot_data, ctx, artifact, name)
                return _shown(ctx, artifact, name, data)
            case "transcript":
                return await self._transcript(ctx, artifact, args)
            case "tool_output":
                return await self._tool_output(ctx, artifact)
        raise ToolFailure(f"artifact kind {artifact.kind!r} cannot be fetched")  # never

    async def _given(self, ctx: ToolContext) -> list[HandoffPacket]:
        """The packets this run was given: the one it started with, and those carried
        by the messages its model has received (no other)."""
        own = await self._packet(ctx.run_id)
        packets = [own] if own is not None else []
        seat = ctx.group
        delivered = set(seat.delivered()) if seat is not None else set()
        if seat is None or not delivered:
            return packets
        found = await asyncio.to_thread(seat.store.messages, seat.group, recipient=ctx.run_id)
        for message in found:
            if message.id in delivered:
                _, packet = carried(json.loads(message.body), message.sender)
                packets += [packet] if packet is not None else []
        return packets

    async def _packet(self, run_id: str) -> HandoffPacket | None:
        if run_id not in self._packets:
            first = await asyncio.to_thread(self.store.events, run_id, 0, 1)
            event = first[0].event if first else None
            agent = event.agent if isinstance(event, RunCreated) else None
            self._packets[run_id] = agent.handoff if agent is not None else None
        return self._packets[run_id]

    def _snapshot_data(self, ctx: ToolContext, artifact: ArtifactRef, name: str) -> bytes:
        """The file ``name`` as the checkpoint or commit holds it, read here."""
        if artifact.kind == "commit":
            return _commit_file(ctx.workspace, artifact.ref, name)
        shadow = shadow_dir_for(self.store, ctx.workspace)
        if shadow is None or not shadow.is_dir():
            raise ToolFailure("this store keeps no checkpoints")
        try:
            return ShadowRepo(shadow, ctx.workspace).read(artifact.ref, name, MAX_FILE_BYTES)
        except (UnknownSnapshotError, ShadowRepoError) as exc:
            why = f"checkpoint {artifact.ref!r} has no file {name!r}: {exc}"
            raise ToolFailure(why) from None

    async def _transcript(
        self, ctx: ToolContext, artifact: ArtifactRef, args: FetchArtifactArgs
    ) -> Observation:
        run, low, high = _run_range(artifact.ref)
        first = low if args.first is None else args.first
        last = high if args.last is None else args.last
        if not low <= first <= last <= high:
            raise ToolFailure(
                f"transcript {artifact.ref!r} covers seqs {low}-{high}; "
                f"{first}-{last} is outside it"
            )
        events = await asyncio.to_thread(self.store.events, run, first - 1, last - first + 1)
        budget = max(ctx.output_cap - 300, 200)
        shown: list[str] = []
        size, end = 0, first - 1
        for seq, text in transcript_parts(events):
            if shown and size + len(text) > budget:
                break
            shown.append(text if len(text) <= budget else _capped(text, budget))
            size += len(text)
            end = seq
        body = "\n".join(s for s in shown if s)
        note = ""
        if end < last:
            note = (
                f"\n[cut at the output limit: seqs {end + 1}-{last} not shown; read on with "
                f"fetch_artifact(ref={artifact.ref!r}, first={end + 1})]"
            )
        header = f"transcript of run {run}, seqs {first}-{end} of {low}-{high}"
        return Observation.success(f"{header}\n{body}{note}", data={"first": first, "last": end})

    async def _tool_output(self, ctx: ToolContext, artifact: ArtifactRef) -> Observation:
        run, seq, _ = _run_range(artifact.ref)
        found = await asyncio.to_thread(self.store.events, run, seq - 1, 1)
        if not found or not isinstance(found[0].event, ToolCallEnded):
            raise ToolFailure(f"{artifact.ref!r} is not a tool call's output in the store")
        ended = found[0].event
        started = await asyncio.to_thread(_started_of, self.store, run, found[0])
        text = tool_output_text(found[0], started)
        return Observation.success(_capped(text, ctx.output_cap), data={"tool": ended.tool})


def _file(ctx: ToolContext, artifact: ArtifactRef) -> Observation:
    match = FILE_LINES.match(artifact.ref)
    if match is None:
        args = ReadFileArgs(path=artifact.ref)
    else:
        first = int(match["first"])
        last = int(match["last"]) if match["last"] else first
        first = max(first, 1)
        args = ReadFileArgs(path=match["path"], start_line=first, end_line=max(last, first))
    return ReadFile().work(ctx, args)


def _shown(ctx: ToolContext, artifact: ArtifactRef, name: str, data: bytes) -> Observation:
    """A file read at a checkpoint or commit, as the model is shown it."""
    if b"\0" in data[:8192]:
        raise ToolFailure(f"{name!r} at {artifact.ref!r} is a binary file ({len(data)} bytes)")
    text = data.decode("utf-8", errors="replace")
    header = f"{name} at {artifact.kind} {artifact.ref} ({len(text.splitlines())} lines)"
    shown = _capped(f"{header}\n{text}", ctx.output_cap)
    return Observation.success(shown, data={"path": name})


def _started_of(store: Store, run: str, ended: StoredEvent) -> ToolCallStarted | None:
    """The start of the call ``ended`` ends: the nearest before it (a few events back)."""
    event = ended.event
    assert isinstance(event, ToolCallEnded)
    low = max(0, ended.seq - 50)
    for stored in reversed(store.events(run, low, ended.seq - low - 1)):
        e = stored.event
        if isinstance(e, ToolCallStarted) and (e.step, e.round, e.turn, e.call_id) == (
            event.step,
            event.round,
            event.turn,
            event.call_id,
        ):
            return e
    return None


def _run_range(ref: str) -> tuple[str, int, int]:
    match = RUN_SEQ.match(ref)
    if match is None:
        raise ToolFailure(f"{ref!r} is not RUN:SEQ or RUN:FIRST-LAST")
    first = int(match["first"])
    last = int(match["last"]) if match["last"] else first
    if first < 1 or last < first:
        raise ToolFailure(f"{ref!r} names no seqs")
    return match["run"], first, last


def _snapshot_path(path: str) -> str:
    """A path inside a snapshot, as git names it: relative, no ``..``, not protected."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\0" in path or not pure.parts:
        raise ToolFailure(f"path {path!r} is refused: give it relative to the workspace")
    part = protected_part(path)
    if part is not None:
        raise ToolFailure(f"path {path!r} is inside {part!r}; no tool reads it")
    return pure.as_posix()


def _commit_file(workspace: Path, commit: str, path: str) -> bytes:
    """The file as a commit of the workspace's own repository holds it, read the one way
    the driver runs git on a repository a step can write (:mod:`trestle.workspace.git`)."""
    if COMMIT_ID.match(commit) is None:
        raise ToolFailure(f"commit {commit!r} is not a commit id")
    try:
        git_dir = workspace_git_dir(workspace)
        refuse_links_read_outside(git_dir)
    except UnsafeRepositoryError as exc:
        raise ToolFailure(f"cannot read commit {commit!r}: {exc}") from None
    # its size first: a blob is read into memory only when it is small enough to show
    size = _cat_file(workspace, git_dir, commit, path, "-s")
    if not size.strip().isdigit() or int(size) > MAX_FILE_BYTES:
        raise ToolFailure(f"{path!r} at {commit!r} is more than {MAX_FILE_BYTES} bytes")
    return _cat_file(workspace, git_dir, commit, path, "blob")


# a commit's file read by one script in the run's sandbox (trestle.tools.sandboxed_git):
# its size first, then its bytes, in base64 (the output is read as text)
_COMMIT_IN_SANDBOX = """n=$({git} cat-file -s {spec})
if [ "$n" -gt {most} ]; then echo "more than {most} bytes" >&2; exit 3; fi
{git} cat-file blob {spec} > "$s/blob"
base64 -w0 "$s/blob"
"""


async def _commit_file_in_sandbox(ctx: ToolContext, commit: str, path: str) -> bytes:
    """The file as a commit of the workspace's repository holds it, read by git in the
    run's sandbox: a ``.git`` a step made leads git only where commands may read."""
    if COMMIT_ID.match(commit) is None:
        raise ToolFailure(f"commit {commit!r} is not a commit id")
    try:
        git_dir = await asyncio.to_thread(workspace_git_dir, ctx.workspace)
    except UnsafeRepositoryError as exc:
        raise ToolFailure(f"cannot read commit {commit!r}: {exc}") from None
    script = _COMMIT_IN_SANDBOX.format(
        git=shlex.join(command()), spec=shlex.quote(f"{commit}:{path}"), most=MAX_FILE_BYTES
    )
    env = environment(git_dir, ctx.workspace)
    what = f"reading {path!r} at commit {commit!r}"
    encoded = await run_script(ctx, script, env, what, MAX_FILE_BYTES * 4 // 3 + 16)
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except ValueError:  # binascii.Error, or a note of a cut in what is not ASCII
        raise ToolFailure(f"{what}: git's output was cut or damaged") from None


def _cat_file(workspace: Path, git_dir: Path, commit: str, path: str, what: str) -> bytes:
    """``git cat-file WHAT COMMIT:PATH``'s output, or a :class:`ToolFailure` saying why."""
    try:
        done = subprocess.run(
            command("cat-file", what, f"{commit}:{path}"),
            capture_output=True,
            cwd=workspace,
            env=environment(git_dir, workspace),
            stdin=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolFailure(f"cannot run git to read commit {commit!r}: {exc}") from None
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        said = why[-1] if why else "git failed"
        raise ToolFailure(f"commit {commit!r} has no file {path!r}: {said}")
    return done.stdout


def _capped(text: str, cap: int) -> str:
    if len(text) <= cap:
        return text
    keep = max(cap - 120, 0)
    return text[:keep] + f"\n[cut at the output limit: {len(text) - keep:,} characters not shown]"
