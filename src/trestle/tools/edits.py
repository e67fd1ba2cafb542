"""The tools that change files: write_file and edit_file.

Both describe the path they write to the gate, write atomically (a crash leaves the
old file or the new one, never half of it) and keep an existing file's mode.
"""

from __future__ import annotations

import asyncio

from pydantic import Field

from trestle.core.policy import ActionFacts
from trestle.tools.base import BlockingTool, Observation, ToolArgs, ToolContext, ToolFailure
from trestle.tools.files import read_text
from trestle.tools.jail import atomic_write, read_bytes, relative, resolve_for_write

SNIPPET_CONTEXT = 3  # lines shown around an edit, so the model sees the result
SNIPPET_MAX_LINES = 30
LINES_NAMED = 20  # lines a failure names of the places old text matches; the rest are counted


class WriteFileArgs(ToolArgs):
    path: str = Field(description="File path relative to the workspace root.")
    content: str = Field(description="The whole new content of the file.")


class WriteFile(BlockingTool[WriteFileArgs]):
    writes = True
    name = "write_file"
    description = (
        "Create a file, or replace a file's whole content. Missing parent directories "
        "are created. To change part of an existing file, use edit_file."
    )
    nature = "write"
    arguments = WriteFileArgs

    def facts(self, args: WriteFileArgs, ctx: ToolContext) -> ActionFacts:
        return ActionFacts(nature=self.nature, name=self.name, paths=(args.path,))

    def work(self, ctx: ToolContext, args: WriteFileArgs) -> Observation:
        target = resolve_for_write(ctx, args.path)
        if target.is_dir():
            raise ToolFailure(f"{args.path!r} is a directory; give a file path")
        existed = atomic_write(ctx, args.path, target, args.content)
        lines = len(args.content.splitlines())
        verb = "overwrote" if existed else "created"
        return Observation.success(
            f"{verb} {relative(ctx, target)} ({lines} lines, {len(args.content)} characters)",
            data={"path": relative(ctx, target), "created": not existed},
        )

    async def probe(self, ctx: ToolContext, args: WriteFileArgs) -> str | None:
        return await asyncio.to_thread(self._holds, ctx, args)

    def _holds(self, ctx: ToolContext, args: WriteFileArgs) -> str | None:
        # the write is atomic: the file holds the new content whole, or not at all
        target = resolve_for_write(ctx, args.path)
        data = args.content.encode()
        try:
            if read_bytes(ctx, args.path, target, len(data)) == data:
                return f"{relative(ctx, target)} holds exactly the content this call wrote"
        except ToolFailure:
            pass
        return None


class EditFileArgs(ToolArgs):
    path: str = Field(description="File path relative to the workspace root.")
    old: str = Field(
        min_length=1,
        description="The exact text to replace, whitespace included. It must occur "
        "exactly once (or exactly `count` times); include surrounding lines to make it unique.",
    )
    new: str = Field(description="The text to put in its place.")
    count: int | None = Field(
        default=None, ge=1, description="How many occurrences to replace; all must match."
    )


class EditFile(BlockingTool[EditFileArgs]):
    writes = True
    name = "edit_file"
    description = (
        "Replace an exact piece of text in a file with new text. Fails, saying how "
        "many matches there are and on which lines, unless `old` occurs exactly once "
        "(or exactly `count` times)."
    )
    nature = "write"
    arguments = EditFileArgs

    def facts(self, args: EditFileArgs, ctx: ToolContext) -> ActionFacts:
        return ActionFacts(nature=self.nature, name=self.name, paths=(args.path,))

    def work(self, ctx: ToolContext, args: EditFileArgs) -> Observation:
        target = resolve_for_write(ctx, args.path)
        text = read_text(ctx, args.path, target, strict=True)
        if args.old == args.new:
            raise ToolFailure("old and new are the same text; nothing would change")
        old, new = args.old, args.new
        found = text.count(old)  # as str.replace counts them: not overlapping
        if not found and "\r\n" in text and "\r\n" not in old:
            # the file has Windows line endings and the model wrote plain newlines
            old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
            found = text.count(old)
        # the lines of the first few only: a line each for a million matches was a
        # count from the top for each (minutes of the driver's CPU) and a huge message
        starts = _occurrences(text, old, LINES_NAMED)
        wanted = args.count or 1
        where = relative(ctx, target)
        if not found:
            raise ToolFailure(f"old text not found in {where!r}{_near_misses(text, args.old)}")
        if found != wanted:
            named = [str(n) for n in _lines_of(text, starts)]
            if found > len(starts):
                named.append(f"{found - len(starts):,} more")
            lines = _and(named)
            if args.count is None:
                advice = (
                    "include more surrounding text in old so it matches once, or pass "
                    f"count={len(starts)} to replace every one"
                )
            else:
                advice = f"count is {args.count}; nothing was changed"
            times, at = ("once", "line") if found == 1 else (f"{found:,} times", "lines")
            raise ToolFailure(f"old text matches {times} in {where!r}, at {at} {lines}; {advice}")
        updated = text.replace(old, new)
        atomic_write(ctx, args.path, target, updated)
        first = _line_of(updated, starts[0])
        plural = "" if wanted == 1 else "s"
        return Observation.success(
            f"replaced {wanted} occurrence{plural} in {where} (first at line {first}):\n"
            + _snippet(updated, first, new.count("\n") + 1),
            data={"path": where, "replaced": wanted},
        )

    async def probe(self, ctx: ToolContext, args: EditFileArgs) -> str | None:
        return await asyncio.to_thread(self._edited, ctx, args)

    def _edited(self, ctx: ToolContext, args: EditFileArgs) -> str | None:
        # done only when it cannot be otherwise: the new text is there and the old is
        # not; when one holds the other, the file cannot say whether it was replaced
        if args.old in args.new or args.new in args.old:
            return None
        target = resolve_for_write(ctx, args.path)
        try:
            text = read_text(ctx, args.path, target, strict=True)
        except ToolFailure:
            return None
        if args.new in text and args.old not in text:
            return f"{relative(ctx, target)} holds the new text and no longer the old"
        return None


def _occurrences(text: str, old: str, most: int) -> list[int]:
    """Start offsets of the first ``most`` non-overlapping occurrences of ``old`` (as
    str.replace sees them)."""
    found: list[int] = []
    at = text.find(old)
    while at != -1 and len(found) < most:
        found.append(at)
        at = text.find(old, at + len(old))
    return found


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _lines_of(text: str, offsets: list[int]) -> list[int]:
    """The line of each of ``offsets`` (ascending), counted in one pass."""
    lines, line, since = [], 1, 0
    for offset in offsets:
        line += text.count("\n", since, offset)
        since = offset
        lines.append(line)
    return lines


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _near_misses(text: str, old: str) -> str:
    """Where the first line of ``old`` appears loosely: usually a whitespace mismatch."""
    first = next((line.strip() for line in old.splitlines() if line.strip()), "")
    if not first:
        return ""
    lines = [n for n, line in enumerate(text.splitlines(), 1) if first in line][:10]
    if not lines:
        return "; read the file and copy the text exactly"
    return (
        f"; its first line appears at line {_and([str(n) for n in lines])}, so check the "
        "whitespace, indentation and the lines around it"
    )


def _snippet(text: str, first: int, length: int) -> str:
    lines = text.splitlines()
    lo = max(first - 1 - SNIPPET_CONTEXT, 0)
    hi = min(first - 1 + min(length, SNIPPET_MAX_LINES) + SNIPPET_CONTEXT, len(lines))
    return "\n".join(f"{n:>5}  {lines[n - 1]}" for n in range(lo + 1, hi + 1)) + "\n"
