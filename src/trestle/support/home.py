"""Where the user's own files are: the home directory and the XDG base directories,
each an absolute path or an error naming the variable.

Trestle keeps the approval key, the accepted policies and the index of stores there,
outside every workspace. A relative ``HOME`` or ``XDG_*`` would put them under the
working directory, often a workspace a step can write; a ``HOME`` of ``~nouser`` was a
traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class HomeUnknown(ValueError):
    """The home directory cannot be told, or is not an absolute path (bad input: the
    command line says it and exits 2)."""


def user_dir(variable: str, under_home: str, environ: Mapping[str, str] | None = None) -> Path:
    """``$variable`` when it is an absolute path (a relative one is ignored, as the XDG
    base directory specification says), else ``under_home`` in the home directory."""
    env = os.environ if environ is None else environ
    value = env.get(variable, "")
    if value.startswith("/"):
        return Path(value)
    return home(env) / under_home


def home(environ: Mapping[str, str] | None = None) -> Path:
    """The home directory: ``$HOME``, else the password database's, absolute."""
    env = os.environ if environ is None else environ
    value = env.get("HOME")
    if value is None:
        try:
            return Path.home()  # the password database's entry for this user
        except (RuntimeError, KeyError):
            raise HomeUnknown(
                "HOME is not set and this user has no home directory: set HOME to one"
            ) from None
    if not value.startswith("/"):
        raise HomeUnknown(
            f"HOME ({value!r}) is not an absolute path: Trestle keeps its approval key and "
            "what you accepted under it, outside every workspace; set HOME to your home "
            "directory's absolute path"
        )
    return Path(value)
