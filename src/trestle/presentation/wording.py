"""Words for states and the small text cells every view shares (the CLI's tables, the
dashboard's pages): one name per state, times, clipped text. No event types here: the
listing of runs uses it and must start as fast as ``--help``."""

from __future__ import annotations

import functools
import re
import time
from contextvars import ContextVar

# "1 step", "3 steps": defined in the core, whose report says counts too
from trestle.core.counting import counted as counted

# Off a terminal (piped, redirected) nothing is cut: a command or a reason is copied or
# grepped whole. The CLI's console sets this when its output is not a terminal.
WHOLE_TEXT: ContextVar[bool] = ContextVar("trestle_whole_text", default=False)

# One name per state wherever a person reads it (JSON keeps the identifiers): a step
# that has not started is "not started" in the live view, the listing and the report.
SHOWN_AS = {"pending": "not started", "never_started": "not started"}


def shown(status: str) -> str:
    """A status or report category in words: ``awaiting_approval`` is "awaiting
    approval" everywhere it is printed."""
    return SHOWN_AS.get(status, status.replace("_", " "))


# Characters a terminal acts on instead of showing: C0 and C1 controls (escape
# sequences recolour, move the cursor, rewrite the title or clear a line) and the
# bidirectional overrides that reorder what is shown, in a browser too. Text from
# steps, tools and models passes through every view; shown as escapes, it cannot hide
# or fake what an operator reads (an approval card above all). Tabs and newlines stay.
# So do the characters drawn as nothing: zero-width spaces and joiners, the other
# bidirectional marks, invisible operators, the byte order mark, Hangul fillers, the
# line and paragraph separators, variation selectors and tags. A command can carry a
# whole program in them (``python3 -c "exec(... for c in '<tags>')"``) that a card
# showed as ``''``.
_DRAWN_AS_NOTHING = (
    0x00AD,
    0x034F,
    0x061C,
    0x115F,
    0x1160,
    0x17B4,
    0x17B5,
    *range(0x180B, 0x1810),
    *range(0x200B, 0x2010),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2060, 0x2070),
    0x3164,
    *range(0xFE00, 0xFE0E),  # FE0E and FE0F: see _lone_presentation
    0xFEFF,
    0xFFA0,
    *range(0xFFF0, 0xFFFC),
    *range(0x1BCA0, 0x1BCA4),
    *range(0x1D173, 0x1D17B),
    *range(0xE0000, 0xE0080),
    *range(0xE0100, 0xE01F0),
)
_INVISIBLE = {
    cp: f"\\x{cp:02x}" for cp in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if cp not in (9, 10)
} | {cp: f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}" for cp in _DRAWN_AS_NOTHING}


def _json_escape(cp: int) -> str:
    """``cp`` as a JSON string writes it escaped (a surrogate pair beyond the BMP)."""
    if cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    high, low = divmod(cp - 0x10000, 0x400)
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


_JSON_SHOWN = {cp: _json_escape(cp) for cp in (*range(0x80, 0xA0), *_DRAWN_AS_NOTHING)}


def shown_json(text: str) -> str:
    """JSON text with the characters a terminal obeys or that show nothing (C1
    controls, bidirectional and zero-width marks: see ``_DRAWN_AS_NOTHING``) written as
    ``\\u`` escapes. JSON writes them as they are inside its strings, the only place
    they can be, so this is the same JSON: ``trestle export`` printed a model's
    ``U+009B`` (a terminal's CSI) and ``U+202E`` raw."""
    return text.translate(_JSON_SHOWN)


# The text and emoji presentation selectors stay after a character they can change
# ("⚠️" is a warning sign and U+FE0F): a model writes them. Where they follow no such
# character (the start, a space, another selector) they show nothing and could carry
# a program one bit each, so they are escapes too.
_PRESENTATION = ("\ufe0e", "\ufe0f")


@functools.cache
def _lone_presentation() -> re.Pattern[str]:
    return re.compile(r"(?:^|(?<=[\s\ufe0e\ufe0f]))[\ufe0e\ufe0f]")


def visible(text: str) -> str:
    """``text`` with every character a terminal or a browser would act on (rather than
    show) shown as an escape."""
    text = text.translate(_INVISIBLE)
    if _PRESENTATION[0] in text or _PRESENTATION[1] in text:
        text = _lone_presentation().sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def one_line(text: str) -> str:
    """:func:`visible`, with newlines and tabs as escapes too: a name (a file's, which a
    step chooses) listed one to a line cannot start a line of its own."""
    return visible(text).replace("\n", "\\n").replace("\t", "\\t")


def clock(at: float, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(at))


def folded(text: str) -> str:
    """``text`` on one line, whole: each run of whitespace (every kind of line break
    among it) as one space. A reason quoting a list (the problems a model was told)
    printed in a line of progress made lines of its own, read as events or lost to a
    ``grep`` of one."""
    return " ".join(text.split())


def clip(text: str, width: int) -> str:
    """``text`` on one line (:func:`folded`), cut to ``width`` with "…" on a terminal;
    whole when the output is piped (:data:`WHOLE_TEXT`)."""
    text = folded(text)
    if len(text) <= width or WHOLE_TEXT.get():
        return text
    return text[: width - 1] + "…"
