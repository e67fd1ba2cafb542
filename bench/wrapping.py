"""Wrapping named functions of Trestle in place, for the benches that time a path part by
part (``turn_parts.py``, ``resume_path.py``).

A part is named by its module and its attribute path there (``"LocalEngine._advance"``);
the wrapper replaces it on its owner, the module or the class, for the rest of the
process, so every caller, however it found the function, goes through the wrapper.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

# (module, attribute path, label)
Part = tuple[str, str, str]
Wrap = Callable[[Callable[..., Any], str], Callable[..., Any]]


def wrap_parts(parts: Iterable[Part], wrap: Wrap) -> None:
    """Replace each part with ``wrap(the part, its label)``."""
    for module_name, path, label in parts:
        owner: Any = importlib.import_module(module_name)
        *outer, name = path.split(".")
        for step in outer:
            owner = getattr(owner, step)
        setattr(owner, name, wrap(getattr(owner, name), label))
