"""The read-only file tools: read_file, list_files and search_text.

Their work is blocking file IO, so each runs in a worker thread, off the event loop.
What they return is capped to the context's ``output_cap``, with a note that says
what was left out and how to ask for it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import Field, model_validator

from trestle.tools.base import BlockingTool, Observation, ToolArgs, ToolContext, ToolFailure
from trestle.tools.jail import missing, read_bytes, relative, resolve_for_read, walk
from trestle.tools.matching import matching

MAX_FILE_BYTES = 10_000_000  # read_file refuses larger files: use search_text
MAX_SEARCH_FILE_BYTES = 2_000_000  # search_text skips larger files (logs, data)
MAX_LIST_ENTRIES = 400
MAX_MATCH_LINE = 200  # characters of a matching line shown
BINARY_SNIFF = 8192  # a NUL byte in this many leading bytes marks a file as binary


def read_text(ctx: ToolContext, path: str, target: Path, *, strict: bool = False) -> str:
    """A text file's content, or :class:`ToolFailure` saying why it cannot be read.

    Bytes that are not UTF-8 are shown as U+FFFD, unless ``strict`` (for edits, which
    would write the replacement characters back): then such a file is refused. Read
    through a descriptor opened beneath the workspace: a regular file only (a FIFO
    would hang), never a hard link (it may be a file outside).
    """
    data = read_bytes(ctx, path, target, MAX_FILE_BYTES + 1)  # refuses a directory too
    if len(data) > MAX_FILE_BYTES:
        raise ToolFailure(
            f"{path!r} is more than {MAX_FILE_BYTES} bytes; use search_text to find the "
            "part you need"
        )
    if b"\0" in data[:BINARY_SNIFF]:
        raise ToolFailure(f"{path!r} is a binary file ({len(data)} bytes), not text")
    try:
        return data.decode("utf-8", errors="strict" if strict else "replace")
    except UnicodeDecodeError as exc:
        raise ToolFailure(
            f"{path!r} is not UTF-8 text (byte {exc.start}); editing it here would "
            "corrupt it, so use run_command"
        ) from None


class ReadFileArgs(ToolArgs):
    path: str = Field(description="File path relative to the workspace root.")
    start_line: int | None = Field(
        default=None, ge=1, description="First line to show (1-based). Default: 1."
    )
    end_line: int | None = Field(
        default=None, ge=1, description="Last line to show, inclusive. Default: the last."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReadFileArgs:
        if self.start_line and self.end_line and self.end_line < self.start_line:
            raise ValueError(f"end_line {self.end_line} is before start_line {self.start_line}")
        return self


class ReadFile(BlockingTool[ReadFileArgs]):
    name = "read_file"
    description = (
        "Read a text file in the workspace, whole or a range of lines. Long files are "
        "cut at the output limit with a note saying which start_line to read on from."
    )
    nature = "read"
    arguments = ReadFileArgs

    def work(self, ctx: ToolContext, args: ReadFileArgs) -> Observation:
        target = resolve_for_read(ctx, args.path)
        lines = read_text(ctx, args.path, target).splitlines(keepends=True)
        total = len(lines)
        start = args.start_line or 1
        if start > max(total, 1):
            raise ToolFailure(
                f"{args.path!r} has {total} lines; start_line {start} is past the end"
            )
        end = min(args.end_line or total, total)
        shown: list[str] = []
        size = 0
        budget = max(ctx.output_cap - 200, 1)  # room for the header and the note
        note = ""
        for line in lines[start - 1 : end]:
            if size + len(line) > budget:
                if not shown:  # one huge line (minified code): show its start
                    shown.append(line[:budget] + "\n")
                    note = f"[line {start} is longer than the output limit; its start is shown]\n"
                break
            shown.append(line)
            size += len(line)
        last = start + len(shown) - 1
        where = relative(ctx, target)
        if start == 1 and last == total:
            header = f"{where} ({total} lines)"
        else:
            header = f"{where} (lines {start}-{last} of {total})"
        body = "".join(shown)
        if body and not body.endswith("\n"):
            body += "\n"
        if last < end:
            note += (
                f"[cut at the output limit: lines {last + 1}-{end} not shown; "
                f"read on with start_line={last + 1}]\n"
            )
        return Observation.success(
            f"{header}\n{body}{note}",
            data={
                "path": where,
                "lines": total,
                "start": start,
                "end": last,
                "truncated": bool(note),
            },
        )


class ListFilesArgs(ToolArgs):
    directory: str = Field(default=".", description="Directory relative to the workspace.")
    pattern: str = Field(
        default="*",
        description="Shell-style pattern matched against each entry's name and its path "
        "below the directory, e.g. '*.py' or 'tests/test_*.py'.",
    )
    depth: int = Field(default=3, ge=1, le=20, description="How many levels to descend.")


class ListFiles(BlockingTool[ListFilesArgs]):
    name = "list_files"
    description = (
        "List files and directories (directories end in '/') under a directory, with "
        "an optional name pattern and depth. Skips .git and .trestle; dependency and "
        "cache directories (node_modules, .venv, __pycache__, ...) are listed but not "
        "entered unless listed directly."
    )
    nature = "read"
    arguments = ListFilesArgs

    def work(self, ctx: ToolContext, args: ListFilesArgs) -> Observation:
        top = resolve_for_read(ctx, args.directory, what="directory")
        if not top.exists():
            raise missing(ctx, args.directory, top)
        if not top.is_dir():
            raise ToolFailure(f"{args.directory!r} is a file, not a directory; use read_file")
        entries: list[str] = []
        more = 0
        for path, is_dir in walk(ctx, top, args.depth):
            below = path.relative_to(top).as_posix()
            if not (
                fnmatch.fnmatch(path.name, args.pattern) or fnmatch.fnmatch(below, args.pattern)
            ):
                continue
            if len(entries) < MAX_LIST_ENTRIES:
                entries.append(relative(ctx, path) + ("/" if is_dir else ""))
            else:
                more += 1
        where = relative(ctx, top)
        if not entries:
            return Observation.success(f"nothing in {where!r} matches {args.pattern!r}")
        text = "\n".join(entries)
        if more:
            text += f"\n[… and {more} more; narrow the directory, pattern or depth]"
        return Observation.success(text, data={"count": len(entries) + more})


class SearchTextArgs(ToolArgs):
    pattern: str = Field(min_length=1, description="A Python regular expression, or text.")
    literal: bool = Field(default=False, description="Match the pattern as plain text.")
    ignore_case: bool = False
    directory: str = Field(default=".", description="Directory to search, or a single file.")
    glob: str | None = Field(
        default=None, description="Only files whose name or path matches, e.g. '*.py'."
    )
    max_results: int = Field(default=100, ge=1, le=1000)


class SearchText(BlockingTool[SearchTextArgs]):
    name = "search_text"
    description = (
        "Search text files for a regular expression (or literal text) and return "
        "matches as path:line:text. Skips .git, .trestle, binary and very large files."
    )
    nature = "read"
    arguments = SearchTextArgs

    def work(self, ctx: ToolContext, args: SearchTextArgs) -> Observation:
        flags = re.IGNORECASE if args.ignore_case else 0
        source = re.escape(args.pattern) if args.literal else args.pattern
        try:
            regex = re.compile(source, flags)
        except re.error as exc:
            raise ToolFailure(
                f"invalid regular expression {args.pattern!r}: {exc.msg} at position "
                f"{exc.pos}; pass literal=true to search for the text as written"
            ) from None
        top = resolve_for_read(ctx, args.directory, what="directory")
        if not top.exists():
            raise missing(ctx, args.directory, top)
        # walked as it is searched: a tree of millions of files is not listed first
        files: Iterable[Path] = (
            [top]
            if not top.is_dir()
            else (
                p for p, is_dir in walk(ctx, top, 64) if not is_dir and _wanted(p, top, args.glob)
            )
        )
        hits: list[str] = []
        searched = 0
        with matching(regex) as match:  # a pattern that backtracks is stopped
            for path in files:
                if len(hits) >= args.max_results:
                    break
                text = _searchable(ctx, path)
                if text is None:
                    continue
                searched += 1
                numbers = match(text, args.max_results - len(hits))
                lines = text.splitlines() if numbers else []
                hits += [
                    f"{relative(ctx, path)}:{n}:{lines[n - 1].strip()[:MAX_MATCH_LINE]}"
                    for n in numbers
                ]
        if not hits:
            return Observation.success(
                f"no matches for {args.pattern!r} in {searched} files", data={"matches": 0}
            )
        text = "\n".join(hits)
        if len(hits) >= args.max_results:
            text += f"\n[stopped at {args.max_results} matches; narrow the pattern or directory]"
        return Observation.success(text, data={"matches": len(hits)})


def _wanted(path: Path, top: Path, glob: str | None) -> bool:
    if glob is None:
        return True
    return fnmatch.fnmatch(path.name, glob) or fnmatch.fnmatch(
        path.relative_to(top).as_posix(), glob
    )


def _searchable(ctx: ToolContext, path: Path) -> str | None:
    """The file's text, or ``None`` for what a text search should pass over: links (a
    link may lead outside; read_file follows it through the jail), special files,
    hard links, large and binary files."""
    if path.is_symlink():
        return None
    try:
        data = read_bytes(ctx, str(path), path, MAX_SEARCH_FILE_BYTES + 1)
    except ToolFailure:
        return None
    if len(data) > MAX_SEARCH_FILE_BYTES or b"\0" in data[:BINARY_SNIFF]:
        return None
    return data.decode("utf-8", errors="replace")
