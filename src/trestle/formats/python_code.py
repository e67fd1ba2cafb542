"""The code a plan's ``python:`` steps and checks run in the driver: found and pinned.

A ``python:`` step runs in the driver, outside the sandbox, where the approval key is,
and the module it names usually lies in the plan's directory or the workspace, which a
command step can write. So:

- when a run is created, :func:`python_sources` records the SHA-256 of every source
  file its ``python:`` code would import from those directories: each module named,
  the packages above it, and what they import in turn, found by reading their import
  statements (nothing is run);
- when a step runs, :func:`resolve_callable` imports under a guard: every module found
  in those directories is compiled from bytes checked against that record, read once
  (never from a ``.pyc``). One the record does not hold is refused, naming its file,
  and nothing of it runs: a module a step rewrote, and one a step planted under a name
  the code imports (``helpers.py``, or ``mailbox.py`` shadowing the standard library
  while the plan's directory comes first on the import path). An import by a computed
  name (``importlib.import_module(name)``) of a module there is refused too: it could
  not be found when the run was created.

The guard stays on for those directories once a run imported from them, for the rest
of the process: a module a function imports when it is called (a submodule, or a
module next to it once the code put its directory on the import path) is held the same
way, and a file a step planted there never runs from a ``.pyc`` or unchecked. Only the
driver's own environment is left to the import system: the directories on the import
path when this module was first imported and the driver's ``sys.prefix``, never one
the pinned code added to the path itself (a ``lib`` directory or a ``.zip`` in the
workspace).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

from trestle.core.errors import RunError
from trestle.core.plan import CallableCheck, Plan

MAX_PINNED = 2_000  # source files one run's python: code may import from its directories
# the driver's own import path, before any python: code could add to it
_DRIVER_PATH = tuple(sys.path)


def python_sources(plan: Plan, *search: Path) -> dict[str, str]:
    """The SHA-256 of each source file the plan's ``python:`` steps and checks would
    import from a ``search`` directory, by absolute path: the modules named, the
    packages above them and what those import, found without importing. Recorded when a
    run starts; :func:`resolve_callable` imports nothing else from there."""
    pins: dict[str, str] = {}
    wanted = _named(plan)
    looked: set[str] = set()
    while wanted and len(pins) < MAX_PINNED:
        name = wanted.pop()
        if name in looked:
            continue
        looked.add(name)
        for module, path in _module_chain(name, search):
            if str(path) in pins:
                continue
            try:
                data = _source(path)
            except OSError:
                continue  # unreadable now: importing it will say why
            pins[str(path)] = hashlib.sha256(data).hexdigest()
            wanted += _imported_names(data, module, path.name == "__init__.py")
    return pins


def named_sources(plan: Plan, *search: Path) -> list[str]:
    """The files of the modules the plan's ``python:`` steps and checks name, and of the
    packages above them, that lie in a ``search`` directory (what they import is not)."""
    return [str(path) for name in _named(plan) for _, path in _module_chain(name, search)]


def _named(plan: Plan) -> list[str]:
    refs = [step.python for step in plan.steps if step.python]
    refs += [c.python for step in plan.steps for c in step.verify if isinstance(c, CallableCheck)]
    return [ref.partition(":")[0] for ref in dict.fromkeys(refs)]


def resolve_callable(
    ref: str, *search: Path, pins: Mapping[str, str] | None = None, step: str = ""
) -> Any:
    """Import ``module:attr`` (with ``search`` dirs first on the path) and return it.

    With ``pins`` (see :func:`python_sources`), under the guard the module docstring
    describes.

    Raises:
        RunError: with ``pins``, a module in a ``search`` directory changed, or was not
            there, since the run was created.
    """
    module_name, _, attr = ref.partition(":")
    with _import_path(*search):
        if pins is None:
            obj: Any = importlib.import_module(module_name)
        else:
            with _GUARD.watching(search, pins, f"step {step!r}: {ref}" if step else ref):
                obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj


def _module_chain(module_name: str, search: Sequence[Path]) -> list[tuple[str, Path]]:
    """The modules in ``search`` that importing ``module_name`` would run, with their
    files, outermost first, until a part is found outside ``search``. Found on disk
    whether or not this process imported them already: the process that imports them
    may be another one."""
    chain: list[tuple[str, Path]] = []
    parts = module_name.split(".")
    places: list[str] | None = [str(d.resolve()) for d in search] + sys.path
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        if places is None:
            break
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, places)
        except (ImportError, ValueError):
            break
        if spec is None:
            break
        origin = _inside(spec.origin, search)
        if origin is not None:
            chain.append((name, origin))
        elif spec.origin is not None:
            break  # found outside: what it imports is not the step's to write
        locations = spec.submodule_search_locations  # a namespace package has no file
        places = list(locations) if locations is not None else None
    return chain


def _imported_names(source: bytes, module: str, package: bool) -> list[str]:
    """The modules ``source`` (of ``module``) imports anywhere in its text, absolute,
    with each name a ``from`` import takes (it may be a submodule)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []  # importing it will say why
    here = module if package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if package:  # what ``from package import *`` takes: a name may be a submodule
            names += [f"{module}.{n}" for n in _all_names(node)]
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".") if here else []
                if node.level - 1 > len(parts):
                    continue
                above = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*above, *([node.module] if node.module else [])])
            if base:
                names.append(base)
                names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return names


def _all_names(node: ast.AST) -> list[str]:
    """The names a literal ``__all__ = [...]`` (or a tuple) assigns, if ``node`` is one."""
    value: ast.expr | None
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign):
        targets, value = [node.target], node.value
    else:
        return []
    if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
        return []
    if not isinstance(value, ast.List | ast.Tuple):
        return []
    return [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def _inside(origin: str | None, search: Sequence[Path]) -> Path | None:
    """``origin`` as an absolute path, if it is a file in a ``search`` directory, but
    not in the driver's own environment (a virtualenv or an editable install kept in
    the workspace: read-only to every command, see :mod:`trestle.execution.driver_files`)."""
    if origin is None or not os.path.isabs(origin):
        return None  # built in, frozen, or a namespace package
    path = Path(os.path.abspath(origin))
    real = path.resolve()
    roots = tuple(d.resolve() for d in search)
    if not any(real.is_relative_to(r) for r in roots):
        return None
    prefixes = (sys.prefix, sys.exec_prefix, sys.base_prefix)
    if any(real.is_relative_to(e) for e in _environment(_DRIVER_PATH + prefixes, roots)):
        return None
    return path


@functools.lru_cache(maxsize=32)
def _environment(import_path: tuple[str, ...], roots: tuple[Path, ...]) -> tuple[Path, ...]:
    """The driver's import path's directories other than the ``roots`` and those holding
    one. Not the import path as it is now: code that put a directory of the workspace on
    it would take that directory out of the guard."""
    found = []
    for entry in import_path:
        if not entry:
            continue
        directory = Path(entry).resolve()
        if not any(r.is_relative_to(directory) for r in roots):
            found.append(directory)
    return tuple(found)


def _source(path: Path) -> bytes:
    with open(path, "rb") as file:
        return file.read()


@contextmanager
def _import_path(*dirs: Path) -> Iterator[None]:
    added = [str(d.resolve()) for d in dirs if str(d.resolve()) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for d in added:
            sys.path.remove(d)


class _Guard(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path`` once a pinned import was made in this process.

    Every module the import system finds in the directories of a pinned import
    (:meth:`watching`) must be pinned, during that import and after it, for the rest
    of the process: a function's own ``import`` when it is called, after the code put
    its directory on ``sys.path``, is held the same way. A file's bytes are accepted if
    any run of this process pinned them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watching: list[tuple[tuple[Path, ...], str]] = []  # (directories, what)
        self._roots: tuple[Path, ...] = ()  # every directory a pinned import was made from
        self._pins: dict[str, set[str]] = {}  # path -> the SHA-256s pinned for it
        self._whats: dict[str, str] = {}  # top-level package -> the step that imported it

    @contextmanager
    def watching(
        self, search: Sequence[Path], pins: Mapping[str, str], what: str
    ) -> Iterator[None]:
        roots = tuple(d.resolve() for d in search)
        with self._lock:
            if sys.meta_path[:1] != [self]:
                if self in sys.meta_path:
                    sys.meta_path.remove(self)
                sys.meta_path.insert(0, self)
            for path, digest in pins.items():
                self._pins.setdefault(path, set()).add(digest)
            self._watching.append((roots, what))
            self._roots += tuple(r for r in roots if r not in self._roots)
        try:
            yield
        finally:
            with self._lock:
                self._watching.remove((roots, what))

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname in sys.builtin_module_names or _frozen(fullname):
            return None  # never looked for on the path
        top = fullname.partition(".")[0]
        with self._lock:
            watched = list(self._watching)
            roots = self._roots
        if not roots:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        origin = _inside(spec.origin if spec is not None else None, roots)
        if spec is None:
            return None
        if origin is None:
            # found outside: no file a step can write. While the directories are first
            # on the import path, what was found is what is imported: left to the path
            # finder, which looks again, a file a step planted there meanwhile ran
            return spec if watched else None
        what = watched[-1][1] if watched else self._whats.get(top, f"import {fullname}")
        if origin.suffix != ".py":
            # found before the source beside it (an extension module comes first), and
            # never checked: its bytes are not the code the driver would run
            raise RunError(
                f"{what}: {str(origin)!r} is compiled code, not Python source, so it is not "
                "imported from the plan's directory or the workspace (a step may have "
                "written it); install compiled modules outside the workspace"
            )
        with self._lock:
            accepted = set(self._pins.get(str(origin), ()))
        data = _source(origin) if accepted else b""
        if hashlib.sha256(data).hexdigest() not in accepted:
            when = "was not there when" if not accepted else "changed after"
            raise RunError(
                f"{what}: {str(origin)!r} {when} the run started, so it is not imported "
                "(a step may have written it): code a step writes runs in a run: step, in "
                "the sandbox, never in the driver; start a new run to use it as it is"
            )
        with self._lock:
            self._whats.setdefault(top, what)
        return importlib.util.spec_from_file_location(
            fullname,
            origin,
            loader=_CheckedSource(data, origin),
            submodule_search_locations=spec.submodule_search_locations,
        )


def _frozen(name: str) -> bool:
    return importlib.machinery.FrozenImporter.find_spec(name) is not None


class _CheckedSource(importlib.abc.Loader):
    """Runs the source bytes it was given: no second read, no bytecode cache."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path

    def exec_module(self, module: ModuleType) -> None:
        exec(compile(self.data, str(self.path), "exec", dont_inherit=True), module.__dict__)


_GUARD = _Guard()
