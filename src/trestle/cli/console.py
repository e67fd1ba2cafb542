"""Where a command prints (a console that shows control characters, never obeys them),
how it opens the store it reads, and the small helpers every command shares."""

from __future__ import annotations

import errno
import functools
import getpass
import json
import os
import re
import select
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Typer keeps its own copy of click (pinned: pyproject.toml); the exceptions a usage
# error raises are only importable from it
from trestle.cli.stores import reading_store, store_with_run
from trestle.core.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from trestle.store.base import Store


PIPED_WIDTH = 100_000  # off a terminal nothing is wrapped or cut: a line stays a line


def _console(*, stderr: bool) -> Console:
    """On a terminal, Rich fits the window. Piped or redirected, lines are never
    wrapped and tables take the width of what they hold, so run ids, paths and the
    commands a message suggests stay whole and can be copied or grepped. Either way,
    control characters in what is printed are shown, not obeyed (:func:`_shown_console`)."""
    from trestle.presentation.wording import WHOLE_TEXT

    shown = _shown_console()
    console = shown(stderr=stderr, highlight=False)
    if console.is_terminal:
        return console
    if not stderr:
        WHOLE_TEXT.set(True)  # and nothing printed is clipped with "…" (wording.clip)
    return shown(stderr=stderr, highlight=False, soft_wrap=True, width=PIPED_WIDTH)


@functools.cache
def _shown_console() -> type[Console]:
    """A console that prints every character a terminal would act on (an escape
    sequence in a step's output, a model's text or a command awaiting approval) as an
    escape (:func:`trestle.presentation.wording.visible`), before the layout is measured, so a
    table wraps the escape rather than cutting what follows it; and reads no markup."""
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.segment import Segment
    from rich.style import Style
    from rich.text import Text

    from trestle.presentation.wording import visible

    class ShownConsole(Console):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # text is printed as written, never read as Rich markup: nothing Trestle
            # prints uses markup, and a table's cell given as a string was parsed, so
            # a reason quoting a step's output obeyed [conceal] (hidden text) or
            # [link=URL] (a hyperlink over the words shown)
            kwargs.setdefault("markup", False)
            # nor as emoji codes: Rich turned ``:lock:`` in a plan's command into a
            # padlock, so a card or report showed a command other than the one run
            kwargs.setdefault("emoji", False)
            super().__init__(*args, **kwargs)

        def render_str(self, text: str, **kwargs: Any) -> Text:
            return super().render_str(visible(text), **kwargs)

        def render(
            self, renderable: RenderableType, options: ConsoleOptions | None = None
        ) -> Iterator[Segment]:
            if isinstance(renderable, Text) and visible(renderable.plain) != renderable.plain:
                # the escapes shift every character after them: the text keeps its
                # overall style and loses the spans inside it
                style: str | Style = renderable.style
                renderable = Text(visible(renderable.plain), style=style)
            yield from super().render(renderable, options)

    return ShownConsole


def _out() -> Console:
    return _console(stderr=False)


def _err() -> Console:
    return _console(stderr=True)


@contextmanager
def _opened(explicit: str | Path | None) -> Iterator[Store]:
    """The store a command that reads uses; it is never created (exit 8 if missing)."""
    from trestle.store.location import open_store

    store = open_store(reading_store(explicit), create=False)
    try:
        yield store
    finally:
        store.close()


_found = store_with_run  # the store holding a RUN (its id or a unique tail) and its id


@contextmanager
def _all_runs(explicit: str | Path | None) -> Iterator[tuple[Store, None]]:
    with _opened(explicit) as store:
        yield store, None


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "user"


def _warn_unreadable(problems: list[str]) -> None:
    """Listings across runs go on past a run they cannot read, and say so on stderr."""
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)


def write_recorded(text: str) -> None:
    """What a run recorded (a step's output, the diff of what it wrote) to standard
    output: exact when piped, for a file, ``git apply`` or ``grep``; on a terminal, with
    every character the terminal would act on shown as an escape
    (:func:`trestle.presentation.wording.visible`). Written raw, an escape sequence in it
    erased the lines above it, laid a hyperlink over its words, or (OSC 52) put a
    command on the reader's clipboard."""
    from trestle.presentation.wording import visible

    sys.stdout.write(visible(text) if sys.stdout.isatty() else text)


def write_output(output: Path, text: str) -> None:
    """``text`` into the file ``--output`` names (``-``: standard output, as the tools
    it is handed to read it, not a file named ``-``); one that cannot be written is the
    user's to fix (exit 2, naming it), not a traceback."""
    if str(output) == "-":
        sys.stdout.write(text)
        return
    try:
        write_file(output, text)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ConfigError(f"--output {str(output)!r}: cannot write it: {why}") from None


# the system's own names for an output already open (a shell's >(...) is /dev/fd/63)
_SYSTEM_LINK = re.compile(r"/dev/(stdout|stderr|null|full|tty|fd/[0-9]+)|/proc/self/fd/[0-9]+")


def _below_working_directory(whole: str) -> str | None:
    """The rest of the absolute path ``whole`` below the working directory, however the
    part up to it is spelled (``$PWD`` through a link: the shell's name, not the
    kernel's); None when it does not lie below it."""
    here = os.stat(".")
    parts = [p for p in whole.split("/") if p]
    for n in range(len(parts)):
        try:
            seen = os.stat("/" + "/".join(parts[:n]))
        except OSError:
            return None
        if (seen.st_dev, seen.st_ino) == (here.st_dev, here.st_ino):
            return "/".join(parts[n:])
    return None


def write_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path``: never through a link (a step's ``ln -s ~/.bashrc
    report.json`` in its workspace had the report, the step's output in it, written over
    the file it led to; a link on the way, ``reports -> ~/.ssh``, as much) but those the
    system keeps for an output already open (``/dev/stdout``, a shell's ``>(...)``), nor
    into a file of several names, nor waiting on a FIFO no one reads.

    Below the working directory (where a run's workspace usually is, or one of its
    parents) no link on the way is followed at all; elsewhere, the file itself is not
    one.

    Raises:
        OSError: it cannot be written, is a link (``ELOOP``), a file of several names
            (``EPERM``), or a FIFO with no reader (``ENXIO``), said as such.
    """
    from trestle.workspace.beneath import Refused, open_without_links

    flags = os.O_WRONLY | os.O_CREAT | os.O_NOCTTY | os.O_NONBLOCK
    whole = os.path.abspath(path)
    below = _below_working_directory(whole)
    try:
        if _SYSTEM_LINK.fullmatch(whole):
            fd = os.open(whole, flags, 0o666)
        elif below is not None:
            root = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fd = open_without_links(root, below, flags)
            finally:
                os.close(root)
        else:
            fd = os.open(whole, flags | os.O_NOFOLLOW, 0o666)
    except Refused as exc:
        raise OSError(errno.ELOOP, str(exc)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, "it is a link, which is not followed: remove it") from None
        if exc.errno == errno.ENXIO:
            raise OSError(exc.errno, "it is a FIFO no one reads") from None
        raise
    os.set_blocking(fd, True)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            if info.st_nlink > 1:
                raise OSError(errno.EPERM, "it is a file of several names: remove it")
            handle.truncate(0)
        handle.write(text)


def confirmed(question: str) -> bool:
    """Ask ``question`` on the terminal: True only for yes (``y``, ``yes``); no, or
    nothing typed, is no; anything else is asked again. No answer (Ctrl-D, input that
    ended) is no; Ctrl-C stays an interrupt (:func:`trestle.cli.app.main` exits 130),
    whenever it comes (:func:`_answer`)."""
    import typer

    def ask() -> None:
        sys.stdout.write(f"{question} [y/N]: ")

    while True:
        try:
            answer = _answer(ask).strip().lower()
        except KeyboardInterrupt as exc:
            raise typer.Abort() from exc
        except EOFError:
            _err().print()  # the prompt's line ended without an answer
            return False
        if answer in ("y", "yes"):
            return True
        if answer in ("", "n", "no"):
            return False
        print("Error: invalid input", flush=True)


def asked(out: Console, prompt: Text) -> str:
    """The line typed at the terminal after ``prompt``, which ``out`` writes: Rich's
    ``Console.input`` without its wait in ``input()``, which could outlast a Ctrl-C
    (:func:`_answer`). EOFError if the input ends (Ctrl-D) before anything is typed."""

    def ask() -> None:
        out.print(prompt, end="")
        out.file.flush()

    return _answer(ask)


def _answer(ask: Callable[[], None]) -> str:
    """The line typed at the terminal after ``ask()`` wrote its question, without its
    end; EOFError if the input ends (Ctrl-D) before anything is typed.

    Not ``input()``: past its last look at Python's signal handlers it blocks in
    ``read``, in C, and a signal that comes in between (Ctrl-C as the prompt shows, or
    while a terminal or standard error slow to take output holds the prompt's write,
    which ``input()`` itself makes in C) only marks Python's handler to run after the
    read returns: the command sat at its question until a line was typed. Here every
    signal with a Python handler also wakes the wait for input (a pipe
    :func:`signal.set_wakeup_fd` writes to, set before the prompt is written), so its
    handler (KeyboardInterrupt, for Ctrl-C) runs whenever the signal came."""
    fd = sys.stdin.fileno()
    typed = b""
    with _signal_pipe() as woken:
        ask()
        sys.stdout.flush()
        while not typed.endswith(b"\n"):
            if woken in select.select([fd, woken], [], [])[0]:
                os.read(woken, 512)  # the handler runs before the next look
                continue
            # a terminal's read returns one line at most: nothing typed after is taken
            chunk = os.read(fd, 4096)
            if not chunk:  # Ctrl-D: on a line begun, it ends that line
                if not typed:
                    raise EOFError
                break
            typed += chunk
    return typed.decode(sys.stdin.encoding or "utf-8", errors="replace").removesuffix("\n")


@contextmanager
def _signal_pipe() -> Iterator[int]:
    """A pipe's read end that each signal caught in Python makes readable."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    try:
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        try:
            yield read
        finally:
            signal.set_wakeup_fd(previous)
    finally:
        os.close(read)
        os.close(write)
