"""Names a package re-exports, each loaded from its module on first use.

A command that needs little (``trestle --help``, ``trestle runs``) must not pay for the
whole runtime: a package lists what it offers and where each name lives, and imports
that module only when the name is first asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """The package's ``__getattr__``: ``exports`` maps a name to its defining module; a
    name once loaded is kept in ``namespace`` (the package's globals)."""

    def load(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return load
