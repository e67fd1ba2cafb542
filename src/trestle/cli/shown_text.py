"""Rich's text, for what a run produced: every character a terminal would act on is
shown as an escape (:func:`trestle.presentation.wording.visible`), none dropped.

Rich drops BEL, backspace, vertical tab, form feed and carriage return where a ``Text``
is made, before the console that shows the others as escapes
(:func:`trestle.cli.console._shown_console`) sees it: a card's diff printed a line
holding a form feed without it, and a step's output lost its backspaces, so what a
human read was not what was recorded. Made here, they are escapes first.
"""

from __future__ import annotations

from typing import Any

from rich import text as rich_text

from trestle.presentation.wording import visible


class Text(rich_text.Text):
    """A :class:`rich.text.Text` whose characters are shown, never dropped."""

    def __init__(self, text: str = "", *args: Any, **kwargs: Any) -> None:
        super().__init__(visible(text), *args, **kwargs)

    def append(self, text: str | rich_text.Text, *args: Any, **kwargs: Any) -> Text:
        if isinstance(text, str):
            text = visible(text)
        super().append(text, *args, **kwargs)
        return self
