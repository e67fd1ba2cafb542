"""What a ``python:`` step imports into the driver is what was there when its run began.

The plan's directory and the workspace come first on the import path while the step's
module is imported, and a command step can write both. So the modules the step's code
imports from there, found by reading its import statements when the run is created,
are pinned with it; any other module found there is refused, nothing of it run: a
sibling module a step rewrote, a file a step planted under the name of a standard
module the code imports, a submodule a function imports when it is called.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import marshal
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_approvals_cli import Cli, flat
from trestle.core.errors import RunError
from trestle.core.plan import Plan
from trestle.formats.planfile import parse_plan
from trestle.formats.python_code import python_sources, resolve_callable


@pytest.fixture
def name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A package name no other test imports; forgotten afterwards."""
    chosen = "code_" + re.sub(r"\W", "_", request.node.name)
    yield chosen
    for loaded in [m for m in sys.modules if m == chosen or m.startswith(chosen + ".")]:
        del sys.modules[loaded]


def _plan(ref: str, base: Path) -> Plan:
    return parse_plan(f"steps:\n  - {{id: a, python: '{ref}'}}\n", base_dir=base)


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


def test_what_a_module_imports_from_its_directory_is_pinned_with_it(
    tmp_path: Path, name: str
) -> None:
    _write(
        tmp_path,
        {
            f"{name}/__init__.py": "from . import util\nfrom .tasks import go\n",
            f"{name}/tasks.py": "import json\nfrom .util import twice\ndef go(ctx):\n"
            "    from . import late\n    return twice(late.VALUE)\n",
            f"{name}/util.py": "def twice(x):\n    return 2 * x\n",
            f"{name}/late.py": "VALUE = 21\n",
        },
    )
    pins = python_sources(_plan(f"{name}:go", tmp_path), tmp_path)

    files = sorted(Path(p).relative_to(tmp_path).as_posix() for p in pins)
    assert files == [f"{name}/{f}.py" for f in ("__init__", "late", "tasks", "util")]
    assert resolve_callable(f"{name}:go", tmp_path, pins=pins, step="a")(None) == 42


def test_the_submodules_a_star_import_takes_from_all_are_pinned(tmp_path: Path, name: str) -> None:
    """``from pkg import *`` imports the submodules ``pkg.__all__`` names: they were not
    pinned, so a plan using it was refused as if a step had planted them."""
    _write(
        tmp_path,
        {
            f"{name}/__init__.py": "__all__ = ['sub']\n",
            f"{name}/sub.py": "X = 3\n",
            f"{name}_hook.py": f"from {name} import *\ndef go(ctx):\n    return sub.X\n",
        },
    )
    pins = python_sources(_plan(f"{name}_hook:go", tmp_path), tmp_path)

    assert str(tmp_path / name / "sub.py") in pins
    assert resolve_callable(f"{name}_hook:go", tmp_path, pins=pins, step="a")(None) == 3
    sys.modules.pop(f"{name}_hook", None)


def test_a_sibling_module_a_step_rewrote_is_refused_not_run(tmp_path: Path, name: str) -> None:
    marker = tmp_path.parent / f"{name}-ran"
    _write(tmp_path, {f"{name}.py": f"import {name}_util\ndef go(ctx):\n    return True\n"})
    _write(tmp_path, {f"{name}_util.py": "X = 1\n"})
    pins = python_sources(_plan(f"{name}:go", tmp_path), tmp_path)
    assert len(pins) == 2
    _write(tmp_path, {f"{name}_util.py": f"open({str(marker)!r}, 'w').close()\n"})

    with pytest.raises(RunError, match=rf"{name}_util.py' changed after the run started"):
        resolve_callable(f"{name}:go", tmp_path, pins=pins, step="a")
    assert not marker.exists()
    sys.modules.pop(f"{name}_util", None)


def test_a_compiled_module_planted_beside_a_pinned_one_is_refused_as_compiled(
    tmp_path: Path, name: str
) -> None:
    """An extension module is found before the source beside it: refused (it always
    was), and said for what it is, not as a source file that 'changed'."""
    _write(tmp_path, {f"{name}.py": f"import {name}_sib\ndef go(ctx):\n    return 1\n"})
    _write(tmp_path, {f"{name}_sib.py": "V = 1\n"})
    pins = python_sources(_plan(f"{name}:go", tmp_path), tmp_path)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (tmp_path / f"{name}_sib{suffix}").write_bytes(b"\x7fELF planted")

    with pytest.raises(RunError, match=rf"{name}_sib{re.escape(suffix)}' is compiled code"):
        resolve_callable(f"{name}:go", tmp_path, pins=pins, step="a")


def test_a_submodule_a_function_imports_when_called_is_held_too(tmp_path: Path, name: str) -> None:
    """``late`` was not there when the run began: the package stays held after its
    import, so a file planted under that name later is refused when the call asks."""
    marker = tmp_path.parent / f"{name}-ran"
    _write(
        tmp_path,
        {
            f"{name}/__init__.py": "",
            f"{name}/tasks.py": "def go(ctx):\n    try:\n        from . import late\n"
            "    except ImportError:\n        return 'none'\n    return late.X\n",
        },
    )
    pins = python_sources(_plan(f"{name}.tasks:go", tmp_path), tmp_path)
    go = resolve_callable(f"{name}.tasks:go", tmp_path, pins=pins, step="a")
    _write(tmp_path, {f"{name}/late.py": f"open({str(marker)!r}, 'w').close()\nX = 1\n"})

    with pytest.raises(RunError, match=r"late.py' was not there when the run started"):
        go(None)
    assert not marker.exists()


def test_a_module_imported_when_called_from_a_directory_the_code_put_on_the_path_is_held(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook puts its directory on ``sys.path`` and imports a sibling when called,
    after its own import: the guard was off by then, so a ``.pyc`` a step planted beside
    the sibling (read-only, its cache directory not) ran in the driver."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # what the hook adds goes with it
    marker = tmp_path.parent / f"{name}-ran"
    hook = "import os, sys\nsys.path.insert(0, os.path.dirname(__file__))\n"
    hook += f"def go(ctx):\n    import {name}_late\n    return {name}_late.V\n"
    _write(tmp_path, {f"{name}.py": hook, f"{name}_late.py": "V = 2\n"})
    pins = python_sources(_plan(f"{name}:go", tmp_path), tmp_path)
    late = tmp_path / f"{name}_late.py"
    assert str(late) in pins
    # the step's .pyc: the source's mtime and size in its header, so it is taken as current
    info = late.stat()
    planted = compile(f"open({str(marker)!r}, 'w').close()\nV = 2\n", str(late), "exec")
    header = importlib.util.MAGIC_NUMBER + bytes(4) + int(info.st_mtime).to_bytes(4, "little")
    cached = Path(importlib.util.cache_from_source(str(late)))
    cached.parent.mkdir(exist_ok=True)
    cached.write_bytes(header + info.st_size.to_bytes(4, "little") + marshal.dumps(planted))

    go = resolve_callable(f"{name}:go", tmp_path, pins=pins, step="a")
    assert go(None) == 2
    assert not marker.exists(), "a .pyc a step planted ran in the driver"
    sys.modules.pop(f"{name}_late", None)


def test_a_directory_the_code_puts_on_the_path_is_not_the_drivers_environment(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``lib`` directory the hook adds to ``sys.path`` was taken for the driver's own
    environment, so what a step wrote there ran in the driver unchecked."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    marker = tmp_path.parent / f"{name}-ran"
    hook = "import os, sys\nsys.path.insert(0, os.path.join(os.path.dirname(__file__), 'lib'))\n"
    hook += f"import {name}_lib\ndef go(ctx):\n    return True\n"
    _write(tmp_path, {f"{name}.py": hook, f"lib/{name}_lib.py": "V = 1\n"})
    pins = python_sources(_plan(f"{name}:go", tmp_path), tmp_path)
    _write(tmp_path, {f"lib/{name}_lib.py": f"open({str(marker)!r}, 'w').close()\n"})

    with pytest.raises(RunError, match=rf"lib/{name}_lib.py' was not there when the run"):
        resolve_callable(f"{name}:go", tmp_path, pins=pins, step="a")
    assert not marker.exists(), "a module a step wrote ran in the driver"


def test_a_standard_module_planted_after_the_guard_looked_is_not_imported(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard found ``tabnanny`` in the standard library and left the import to the
    path finder, which looked again, the plan's directory first: a step writing
    ``tabnanny.py`` there in between (a command looping, run alongside: won in 3 of 10
    runs importing 150 modules) had it run in the driver. The planting finder stands
    for that command, writing at the worst moment."""
    marker = tmp_path.parent / f"{name}-ran"
    _write(tmp_path, {f"{name}.py": "import tabnanny\ndef go(ctx):\n    return True\n"})
    pins = python_sources(_plan(f"{name}:go", tmp_path), tmp_path)

    class Planter(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: object, target: object = None) -> None:
            if fullname == "tabnanny":
                _write(tmp_path, {"tabnanny.py": f"open({str(marker)!r}, 'w').close()\n"})

    monkeypatch.setattr(sys, "meta_path", [Planter(), *sys.meta_path])  # the guard goes first
    monkeypatch.delitem(sys.modules, "tabnanny", raising=False)
    resolve_callable(f"{name}:go", tmp_path, pins=pins, step="a")
    assert not marker.exists(), "a module a step planted ran in the driver"


def test_the_drivers_own_environment_in_the_workspace_is_not_pinned(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A virtualenv kept in the workspace is the driver's own code, read-only to every
    command (``driver_files``): it is neither pinned nor refused."""
    site = tmp_path / ".venv" / "site-packages"
    _write(site, {f"{name}_lib.py": "Y = 2\n"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    _write(tmp_path, {f"{name}.py": f"import {name}_lib\ndef go(ctx):\n    return {name}_lib.Y\n"})
    pins = python_sources(_plan(f"{name}:go", tmp_path), tmp_path)

    assert list(pins) == [str(tmp_path / f"{name}.py")]
    assert resolve_callable(f"{name}:go", tmp_path, pins=pins, step="a")(None) == 2
    sys.modules.pop(f"{name}_lib", None)


def test_a_step_that_plants_a_standard_module_the_hook_imports_never_runs_in_the_driver(
    tmp_path: Path,
) -> None:
    """The attack as it ran before: the plan's directory first on the import path, a
    planted ``mailbox.py`` ran in the driver, outside the sandbox, where the key is."""
    ws = tmp_path / "ws"
    cli = Cli(dir=ws, store=tmp_path / "trestle.db")
    marker = tmp_path / "driver-ran-it"
    planted = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('driver')"
    cli.write("hooks.py", "import mailbox\ndef go(ctx):\n    return True\n")
    cli.write(
        "plan.yaml",
        "steps:\n  - id: plant\n    approval: auto\n"
        f"    run: printf '%s\\n' \"{planted}\" > mailbox.py\n"
        "  - id: hook\n    needs: [plant]\n    python: hooks:go\n",
    )

    ran = cli("run", "plan.yaml", "--no-live", XDG_CONFIG_HOME=str(tmp_path / "config"))

    assert (ws / "mailbox.py").exists(), ran.stdout
    assert not marker.exists(), "a module a step planted ran in the driver"
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert "mailbox.py' was not there when the run started" in flat(ran.stdout)
