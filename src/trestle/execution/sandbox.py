"""The sandbox every command of a run executes in: plan commands, checks, the agent's
``run_command`` and ``run_tests``, model-written verify and test commands.

On Linux, bubblewrap (``bwrap``, unprivileged namespaces) runs each command with

- the workspace read-write and the rest of the system read-only;
- the store, the approval key, Trestle's configuration and the user's home hidden
  (each replaced by an empty directory), except a few read-only exceptions: git's own
  configuration (so commits carry the user's name; judged as ``sandbox.read``'s entries
  are, below), the home directories that hold
  the tools on ``PATH`` and this Python (``~/.pyenv``, ``~/.local``, ``~/.cargo``,
  minus known credential files; a virtualenv under ``/tmp`` itself), the directories
  this Python imports from (an editable install's source tree) and what the policy
  lists in ``sandbox.read`` (but for an entry a step could redirect or one showing a
  hidden path, which the command's output names: :mod:`trestle.execution.sandbox_reads`);
  ``trestle.toml`` in the workspace is read-only, and so are the run's own plan file
  and ``python:`` code (:mod:`trestle.execution.run_files`);
- a private ``/tmp``, ``/run`` and ``/proc``: a command sees only its own processes,
  so it cannot read a parent's environment;
- the environment cut to an allow-list (:data:`ALLOWED_ENV`, the policy's
  ``sandbox.env``, the step's own ``env:`` and Trestle's ``TRESTLE_*`` variables);
- no network, unless the policy names the step or tool in ``sandbox.network``;
- every process killed when the driver dies: the command is the sandbox's pid 1's
  child, bubblewrap dies with its parent, and one that was still starting is killed
  by the driver's watchdog (:mod:`trestle.execution.watchdog`).

Where bubblewrap is missing or cannot make namespaces (another OS, a container that
forbids them), commands run unconfined. The driver says so at run start and in the
report, and refuses ``confirm``-tier work unless the operator opted out of the
sandbox (``--sandbox off`` or ``TRESTLE_SANDBOX=off``).
"""

from __future__ import annotations

import functools
import os
import pwd
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trestle.core.errors import ConfigError
from trestle.core.outside_writes import PRIVATE_DIRS as DISCARDED_DIRS
from trestle.core.policy import SandboxPolicy
from trestle.core.state import RunState
from trestle.execution.driver_files import driver_python, read_only_mounts
from trestle.execution.run_files import noted_in, still_regular
from trestle.execution.sandbox_mounts import (
    git_mounts,
    host_sockets,
    reached_through,
    workspace_mounts,
)
from trestle.execution.sandbox_reads import screen_reads
from trestle.execution.submodule_checkouts import submodule_holds
from trestle.formats.exec_limits import LEFT_OUT_BYTES, size
from trestle.support.this_turn import ThisTurn
from trestle.workspace.beneath import Refused, open_beneath
from trestle.workspace.reach import note_workspace, program

Mode = Literal["auto", "require", "off"]
MODES: tuple[Mode, ...] = ("auto", "require", "off")
MODE_ENV = "TRESTLE_SANDBOX"
BWRAP_ENV = "TRESTLE_BWRAP"  # the bubblewrap to use (default: ``bwrap`` on PATH)
ALLOWED_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TERM",
        "TZ",
        "COLUMNS",
        "LINES",
        "NO_COLOR",
        "FORCE_COLOR",
        "CI",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "NODE_PATH",
        "JAVA_HOME",
        "GOROOT",
        "GOPATH",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "SOURCE_DATE_EPOCH",
    }
)
ALLOWED_ENV_PREFIXES = ("LC_", "TRESTLE_", "GIT_AUTHOR_", "GIT_COMMITTER_")
# Trestle's own variables a command has no business with (where the key and store are)
DENIED_ENV = frozenset({"TRESTLE_KEY_FILE", "TRESTLE_STORE", "TRESTLE_SANDBOX", "TRESTLE_BWRAP"})
GIT_CONFIG = (".gitconfig", ".config/git")  # the user's name for commits, shown read-only
# credentials that live beside tools shown read-only (see :func:`_tool_dirs`)
SECRET_TOOL_FILES = (".cargo/credentials", ".cargo/credentials.toml", ".local/share/keyrings")
PROBE_TIMEOUT = 10.0
# A boundary for root drivers too: a user namespace of its own with no capabilities in
# it (so no mount can be undone: umount needs CAP_SYS_ADMIN) and none nested inside
# (a nested one would grant them again).
CONFINEMENT = (
    "--die-with-parent",
    "--unshare-all",
    "--unshare-user",
    "--disable-userns",
    "--cap-drop",
    "ALL",
)
NOBODY = "65534"  # the uid and gid a root driver's commands run as
Pinned = tuple[tuple[str, str], ...]  # (path in the workspace, a private copy of it)
# empty in every sandbox, and discarded when its command ends
PRIVATE_DIRS = tuple(Path(d) for d in DISCARDED_DIRS)


class SandboxUnavailableError(ConfigError):
    """``--sandbox require`` on a machine where no sandbox works."""


@dataclass(frozen=True)
class _Seen:
    """What one reading of the filesystem makes of a command's mounts, in the order
    they go on its bubblewrap's command line around the parts each command decides
    (its network, its ``.git``, the files a human approved)."""

    ws: Path  # the workspace's real path
    hidden_outside: tuple[str, ...]  # what is hidden outside the workspace (and above it)
    resolver: bool  # the host's DNS resolver's directory exists (shown with the network)
    shown: tuple[str, ...]  # the tool directories, what they hold hidden again, the workspace
    held: tuple[str, ...]  # read-only files, what is hidden inside, the operator's policy
    sockets: tuple[str, ...]  # the host's sockets left reachable, covered
    left_out: tuple[str, ...]  # ``sandbox.read`` entries (and git's configuration) not shown


@dataclass(frozen=True)
class Sandbox:
    """How a run's commands are confined.

    Attributes:
        bwrap: the bubblewrap executable, or None when commands run unconfined.
        why_none: why there is no sandbox (said at run start and in the report).
        opted_out: the operator chose to run unconfined (``--sandbox off``): work of
            tier ``confirm`` is then allowed without one.
        hidden: paths no command may see: the store, the key, the configuration.
        policy: what the policy lets commands reach (network, variables, paths).
        scope: a child run's write globs: only the directories they are rooted in are
            writable (empty: the whole workspace).
        kept: the run's plan file and ``python:`` code in the workspace, read-only to
            every command (see :mod:`trestle.execution.run_files`).
    """

    bwrap: str | None
    why_none: str = ""
    opted_out: bool = False
    hidden: tuple[Path, ...] = ()
    policy: SandboxPolicy = field(default_factory=SandboxPolicy)
    scope: tuple[str, ...] = ()
    kept: tuple[Path, ...] = ()
    # the file first found at each listed socket's path in a workspace, for every
    # command after: one that differs was left there by a command (see host_sockets)
    sockets_found: dict[str, tuple[int, int]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # what this turn of the loop read (see _mounts): a sandbox of its own for each copy
    # (dataclasses.replace), as a reading follows from the policy, scope and kept files
    _readings: ThisTurn[_Seen] = field(
        default_factory=ThisTurn, init=False, compare=False, repr=False
    )

    @property
    def confines(self) -> bool:
        return self.bwrap is not None

    def held_files(self, ws: Path) -> tuple[Path, ...]:
        """The files no command may change in the workspace ``ws`` (a real path), as
        regular files now: those :attr:`kept` and those of a plan first run since."""
        return still_regular(_with_noted(self.kept, noted_in(ws)))

    def describe(self) -> str:
        """One line for the run's start and its report."""
        if self.bwrap is None:
            return f"NOT SANDBOXED: {self.why_none}"
        network = ", ".join(self.policy.network) or "none"
        return f"sandboxed (bubblewrap): network off (allowed for: {network})"

    def environ(self, source: Mapping[str, str] | None = None) -> dict[str, str]:
        """The variables a command starts from: ``source`` (this process's) cut to the
        allow-list when confined, else all of it but Trestle's own."""
        env = os.environ if source is None else source
        if self.bwrap is None:
            return {k: v for k, v in env.items() if k not in DENIED_ENV}
        allowed = ALLOWED_ENV | set(self.policy.env)
        kept = {
            k: v
            for k, v in env.items()
            if (k in allowed or k.startswith(ALLOWED_ENV_PREFIXES)) and k not in DENIED_ENV
        }
        kept["TMPDIR"] = "/tmp"  # the private one
        return kept

    def argv(
        self,
        command: str,
        *,
        cwd: Path,
        workspace: Path,
        name: str,
        approved: bool = False,
        pinned: Pinned = (),
        held_open: list[int] | None = None,
    ) -> list[str]:
        """What to execute for the shell ``command`` run by step or tool ``name``;
        ``approved``: a human approved this very command, so it may write ``.git``
        (never its configuration or hooks); ``pinned``: files shown read-only with the
        bytes the human approved (see :class:`Cell`). A ``sandbox.read`` entry left out
        is said on the command's stderr before it runs (see
        :mod:`trestle.execution.sandbox_reads`).

        ``held_open``: where given, what is bound from inside the workspace (``.git``,
        ``trestle.toml``...) is opened now and bound by descriptor, each appended to it
        for the caller to pass to bubblewrap and close (see :func:`_bound_by_descriptor`)."""
        if self.bwrap is None:
            return ["/bin/sh", "-c", command]
        mounts, left_out = self._mounts(workspace, name, approved=approved, pinned=pinned)
        if held_open is not None:
            mounts = _bound_by_descriptor(mounts, workspace.resolve(), held_open)
        if left_out:
            said = " ".join(_named(left_out))
            command = f"printf '%s\\n' {said} >&2\n{command}"
        return [
            self.bwrap,
            *mounts,
            "--chdir",
            str(cwd.resolve()),
            "--",
            "/bin/sh",
            "-c",
            command,
        ]

    def _mounts(
        self, workspace: Path, name: str, *, approved: bool, pinned: Pinned
    ) -> tuple[list[str], tuple[str, ...]]:
        # what the filesystem shows is read once for the commands started in one turn
        # of the event loop (a fan-out's): see trestle.support.this_turn
        seen = self._readings.get(workspace, lambda: self._read(workspace))
        network = self.policy.allows_network(name)
        args = [*CONFINEMENT, *_identity()]
        if network:
            args.append("--share-net")
        args += _SYSTEM
        args += seen.hidden_outside
        if network and seen.resolver:
            args += ["--ro-bind", "/run/systemd/resolve", "/run/systemd/resolve"]
        args += seen.shown
        args += git_mounts(seen.ws, approved=approved or self.policy.allows_git(name))
        args += seen.held
        for relative, copy in pinned:
            args += ["--ro-bind", copy, str(seen.ws / relative)]
        args += seen.sockets
        return args, seen.left_out

    def _read(self, workspace: Path) -> _Seen:
        # Everything read from the filesystem is read again for every turn of the loop
        # that starts commands (a step can change its workspace, its .git and the host's
        # sockets between two of them); only what follows from those readings alone is
        # worked out once.
        ws = workspace.resolve()
        home = _home()
        homes = tuple(h for h in dict.fromkeys((home, _account_home())) if h is not None)
        hidden = tuple(p.resolve() for p in self.hidden)
        # and another run's store in the workspace, looked for at each command: one made
        # after this drive began (a run started in a subdirectory meanwhile) was open
        hidden += tuple(p for other in other_stores_in(ws, hidden) for p in other)
        # resolved again for each command: a step may have changed a link on the way
        reads = screen_reads(self.policy.read, ws, hidden, homes)
        # git's own configuration, judged as those are: a ~/.gitconfig linked into the
        # workspace (a dotfiles checkout) would be bound wherever a step repointed it
        gitconfig = () if home is None else tuple(str(home / p) for p in GIT_CONFIG)
        git = screen_reads(gitconfig, ws, hidden, homes, "git's configuration")
        wanted = (*git.shown, *_tool_dirs(list(homes), ws), *reads.shown)
        layout = _layout(ws, hidden, homes, wanted)
        shown = [*layout.shown_args]
        for path in layout.hidden_again:
            shown += _hide(path)
        shown += workspace_mounts(ws, self.scope, layout.inside)
        # the driver's own Python, when it lies in the workspace, and the run's plan and
        # python: code: read-only, so nothing a command plants there runs in the driver
        # afterwards, nor decides what the next run of the plan may do; and each
        # submodule's checkout, so none becomes a repository of its own
        held = (
            *driver_python(ws).held,
            *self.held_files(ws),
            *submodule_holds(ws),
        )
        kept = read_only_mounts(ws, self.scope, held)
        # after .git: a .git link or gitdir: file a command planted may name a hidden
        # directory (the store's), which binding it would show again
        for path in layout.inside:
            kept += _hide(path)
        toml = ws / "trestle.toml"
        if toml.is_file() and not toml.is_symlink():
            kept += ["--ro-bind", str(toml), str(toml)]  # the operator's policy
        sockets = host_sockets(
            ws, layout.hidden_dirs, layout.seen_again, layout.resolved, self.sockets_found
        )
        # /proc/net/unix lists a socket as long as it is open, its file removed or not:
        # where nothing is left there is nothing to reach, and bubblewrap could not make
        # the mount's point (one removed after this look: see run_shell)
        covered = [
            arg for s in sockets if os.path.lexists(s) for arg in ("--ro-bind", "/dev/null", s)
        ]
        return _Seen(
            ws=ws,
            hidden_outside=tuple(arg for path in layout.outside for arg in _hide(path)),
            resolver=Path("/run/systemd/resolve").is_dir(),
            shown=tuple(shown),
            held=tuple(kept),
            sockets=tuple(covered),
            left_out=(*git.left_out, *reads.left_out),
        )


@functools.lru_cache(maxsize=64)
def _with_noted(kept: tuple[Path, ...], noted: tuple[Path, ...]) -> tuple[Path, ...]:
    """``kept``, then those of ``noted`` it does not hold (worked out once for the
    commands of a run: comparing paths is what building a command costs most)."""
    held = set(kept)
    return (*kept, *(p for p in noted if p not in held))


def _named(left_out: tuple[str, ...]) -> list[str]:
    """The lines that name what is left out, quoted for the shell, as many as fit in
    :data:`LEFT_OUT_BYTES`, then one that counts the rest: they go on the command's
    text, which the kernel takes up to 128 KiB, and 400 entries left out (under a
    hidden directory) made every start fail (``Argument list too long``)."""
    named: list[str] = []
    used = 0
    for i, line in enumerate(left_out):
        quoted = shlex.quote(line)
        used += size(quoted) + 1
        if used > LEFT_OUT_BYTES - 100:  # room for the count
            rest = f"trestle: {len(left_out) - i:,} more entries are not shown to this command"
            named.append(shlex.quote(rest))
            break
        named.append(quoted)
    return named


# the system read-only, with a /dev and /proc of its own and private temporary dirs
_SYSTEM = (
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    *(arg for private in PRIVATE_DIRS for arg in ("--tmpfs", str(private))),
)


# A bind whose source lies in the workspace is judged by the driver (a .git directory, a
# trestle.toml file) and then resolved again by bubblewrap when it starts: a command of
# another step running meanwhile could put a link in its place in between, pointing at
# a hidden directory, and bubblewrap would bind that (a race such a command won about
# once in 2,000 starts). Bound by a descriptor opened at the judging instead, no link
# followed, bubblewrap binds that very file and refuses the start if what it finds at
# the destination is another (the start is then made again, judged afresh).
_BY_DESCRIPTOR = {"--bind": "--bind-fd", "--ro-bind": "--ro-bind-fd"}
# a source that cannot exist: the start fails before anything runs, and is made again
_MOVED = "/dev/null/moved-since-judged"


def _bound_by_descriptor(args: list[str], ws: Path, held_open: list[int]) -> list[str]:
    """``args`` with each bind from strictly inside ``ws`` made by a descriptor opened
    beneath it (``O_PATH``, no link followed at its end), appended to ``held_open``."""
    inside = str(ws).rstrip("/") + "/"
    out: list[str] = []
    i = 0
    while i < len(args):
        option = args[i]
        if option not in _BY_DESCRIPTOR or not args[i + 1].startswith(inside):
            out.append(option)
            i += 1
            continue
        source, dest = args[i + 1], args[i + 2]
        try:
            fd = _open_path(ws, source[len(inside) :])
        except (OSError, Refused):  # moved since it was judged
            out += [option, _MOVED, dest]
        else:
            held_open.append(fd)
            out += [_BY_DESCRIPTOR[option], str(fd), dest]
        i += 3
    return out


def _open_path(ws: Path, relative: str) -> int:
    root = os.open(ws, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_beneath(root, relative, os.O_PATH | os.O_NOFOLLOW)
    finally:
        os.close(root)


@dataclass(frozen=True)
class _Layout:
    """What a command's mounts hide and show, as it follows from the paths alone.

    Attributes:
        outside: hidden paths above or beside the workspace, parents first.
        inside: hidden paths inside the workspace.
        shown_args: the ``--ro-bind-try`` arguments of the paths shown read-only.
        hidden_again: hidden paths inside a shown one (a store beside a venv), hidden
            once more after it is shown, and the credentials beside the tools.
        hidden_dirs: directories nothing of the host is seen in (private or hidden).
        seen_again: what is seen again inside them: the workspace and the paths shown
            (a workspace in the home or under ``/tmp`` holds a daemon's socket too).
        resolved: the real path of each path shown that no step can point elsewhere
            (not reached through the workspace), for the host's sockets: a link shows
            what it leads to under its own name.
    """

    outside: tuple[Path, ...]
    inside: tuple[Path, ...]
    shown_args: tuple[str, ...]
    hidden_again: tuple[Path, ...]
    hidden_dirs: tuple[Path, ...]
    seen_again: tuple[Path, ...]
    resolved: tuple[tuple[str, str], ...]


@functools.lru_cache(maxsize=64)
def _layout(
    ws: Path, hidden: tuple[Path, ...], homes: tuple[Path, ...], wanted: tuple[Path, ...]
) -> _Layout:
    """The layout for workspace ``ws`` (real path), the ``hidden`` paths (real) and
    ``homes``, showing ``wanted``: a pure function of its arguments, so worked out once
    for the commands of a run (comparing paths was four fifths of building a command's
    arguments)."""
    outside, inside = _split([*hidden, *homes], ws)
    shown = [p for p in _outermost(wanted) if not _within(ws, p)]
    # what a shown directory holds of the hidden (a store beside a venv) stays hidden
    again = [p for p in outside if any(p != s and _within(s, p) for s in shown)]
    again += [h / p for h in homes for p in SECRET_TOOL_FILES]
    return _Layout(
        outside=tuple(outside),
        inside=tuple(inside),
        shown_args=tuple(a for p in shown for a in ("--ro-bind-try", str(p), str(p))),
        hidden_again=tuple(again),
        hidden_dirs=(*PRIVATE_DIRS, *outside),
        seen_again=(ws, *shown),
        resolved=tuple((str(p), os.path.realpath(p)) for p in shown if not reached_through(p, ws)),
    )


@dataclass(frozen=True)
class Cell:
    """Where one step's or one tool's commands run: the run's sandbox, its workspace,
    and the name (step id or tool name) the policy's ``sandbox.network`` is matched
    against."""

    sandbox: Sandbox
    workspace: Path
    name: str
    approved: bool = False  # a human approved this command: it may write .git's history
    pinned: Pinned = ()  # the approved bytes of the files it names, shown in their place

    def argv(self, command: str, cwd: Path, held_open: list[int] | None = None) -> list[str]:
        return self.sandbox.argv(
            command,
            cwd=cwd,
            workspace=self.workspace,
            name=self.name,
            approved=self.approved,
            pinned=self.pinned,
            held_open=held_open,
        )

    def environ(self, source: Mapping[str, str] | None = None) -> dict[str, str]:
        return self.sandbox.environ(source)


def _tool_dirs(homes: list[Path], ws: Path) -> list[Path]:
    """The hidden directories that hold the tools a command finds: each ``PATH`` entry
    or this Python that lives in the home (the top directory: ``~/.pyenv``,
    ``~/.cargo``, ``~/.local``) or in a private directory (``/tmp/x/.venv`` itself),
    shown read-only so ``python3`` and friends resolve as they do outside. An entry
    in the workspace ``ws`` (a virtualenv or ``node_modules/.bin`` in the project), or
    reached through a link there, is left out: the commands see it in the workspace
    anyway, and a step can point it, or a link on the way to it, anywhere in the home.

    They are the driver's own setting (its ``PATH``, ``sys.path``, homes and working
    directory), so they are worked out once per distinct one, not for every command:
    resolving them was three quarters of building a command's arguments, on the event
    loop, and a wide fan-out's starts waited on one another for it."""
    found = _tool_dirs_of(
        tuple(homes),
        os.environ.get("PATH", ""),
        (sys.prefix, sys.base_prefix, sys.executable, os.getcwd()),
        tuple(sys.path),
        ws,
    )
    return list(found)


@functools.lru_cache(maxsize=8)
def _tool_dirs_of(
    homes: tuple[Path, ...],
    search_path: str,
    python: tuple[str, str, str, str],
    import_path: tuple[str, ...],
    ws: Path,
) -> tuple[Path, ...]:
    prefix, base_prefix, executable, _cwd = python  # the cwd: what relative entries mean
    entries = [Path(p) for p in search_path.split(os.pathsep) if p]
    entries += [Path(prefix), Path(base_prefix), Path(executable).parent]
    # where this Python imports from beyond its prefix: a project installed in editable
    # mode (pip install -e) is imported from its source tree, which a python -m ...
    # inside the sandbox needs too; shown as the entry itself
    imported = [Path(entry) for entry in import_path if entry and _exists(Path(entry))]
    found: list[Path] = []
    for entry, whole in [(e, False) for e in entries] + [(e, True) for e in imported]:
        try:
            real = entry.resolve()
        except OSError:
            continue
        if reached_through(entry, ws):
            continue
        for path in (entry.absolute(), real):
            home = next((h for h in homes if _below(h, path)), None)
            if home is not None:
                found.append(path if whole else home / path.relative_to(home).parts[0])
            elif any(_below(private, path) for private in PRIVATE_DIRS):
                found.append(path)
    return tuple(found)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # behind a directory this user may not search: not one to show
        return False


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """``paths`` without those inside another of them, outermost first."""
    kept: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(_within(outer, path) for outer in kept):
            kept.append(path)
    return kept


def _identity() -> list[str]:
    """Root outside is not root inside: a root driver's commands run as nobody (mapped
    to root outside, so the workspace's files stay theirs, without root's powers)."""
    return ["--uid", NOBODY, "--gid", NOBODY] if os.geteuid() == 0 else []


def _account_home() -> Path | None:
    """This account's home as the system knows it: hidden even when ``$HOME`` names
    another directory."""
    try:
        home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    except (KeyError, OSError):
        return None
    if not home.is_dir() or home.resolve() == Path("/"):
        return None
    return home.resolve()


def _home() -> Path | None:
    home = os.environ.get("HOME")
    if not home or not Path(home).is_dir() or Path(home).resolve() == Path("/"):
        return None
    return Path(home).resolve()


def _within(parent: Path, path: Path) -> bool:
    """``path`` is ``parent`` or lies under it (by their names, as written). Compared
    part by part: ``parent in path.parents`` built a path for each parent."""
    inner, outer = path.parts, parent.parts
    return inner[: len(outer)] == outer


def _below(parent: Path, path: Path) -> bool:
    """``parent in path.parents``, without building each parent: ``path`` lies under
    ``parent``, and is not it."""
    return len(path.parts) > len(parent.parts) and _within(parent, path)


def _split(paths: Iterable[Path], workspace: Path) -> tuple[list[Path], list[Path]]:
    """Hidden paths to mount before the workspace (outside it, or above it: the
    workspace is mounted again on top) and after it (inside it)."""
    outside: list[Path] = []
    inside: list[Path] = []
    for path in paths:
        if path != workspace:  # the workspace is never hidden, whatever holds it
            (inside if _within(workspace, path) else outside).append(path)
    # hide parents first: a later mount inside a hidden directory must stay visible
    return sorted(set(outside), key=lambda p: len(p.parts)), sorted(set(inside))


def _hide(path: Path) -> list[str]:
    """An empty directory over a directory; /dev/null over a file. A path that does
    not exist yet is covered by hiding its directory (see :func:`hidden_paths`). One
    behind a directory this user may not search is left as it is: nothing this user
    starts can reach it either (a driver that is root in a user namespace of its own,
    as in a rootless container, facing the real root's ``/root``), and asking raised."""
    try:
        if path.is_dir():
            return ["--tmpfs", str(path)]
        if path.exists():
            return ["--ro-bind", "/dev/null", str(path)]
    except PermissionError:
        pass
    return []


def policy_of(state: RunState) -> SandboxPolicy:
    """The run's sandbox policy: the operator's if it has one, else the plan's."""
    for policy in (state.operator_policy, state.plan.policy):
        if policy is not None and "sandbox" in policy.model_fields_set:
            return policy.sandbox
    return SandboxPolicy()


def hidden_paths(
    workspace: Path, store_file: Path | None, key_file: Path, config: Path | None
) -> tuple[Path, ...]:
    """What no command may see: the store's directory (its file, journal and WAL), the
    key's directory and Trestle's configuration directory. A store or key right in the
    workspace is hidden file by file (with the store's journal and WAL)."""
    ws = workspace.resolve()
    paths: list[Path] = []
    for file, sidecars in ((store_file, STORE_SIDECARS), (key_file, ())):
        if file is None:
            continue
        file = file.resolve()
        if file.parent != ws:
            paths.append(file.parent)
        else:
            paths += [file, *(file.with_name(file.name + s) for s in sidecars)]
    if config is not None:
        paths.append(config.resolve())
    paths += _account_files()
    return tuple(dict.fromkeys(paths))


# the host's files a root driver's commands would read as their owner (see
# root_reads): the password hashes and the SSH host keys
ROOT_SECRETS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")


def _account_files() -> list[Path]:
    """Files of the driver's account no command needs, wherever they are: the index of
    the stores it started runs in (it names where other runs' records are); and, for a
    root driver, the host's password hashes and SSH host keys."""
    from trestle.store.location import recent_stores_file

    found = [recent_stores_file()]
    if _real_root():
        found += [Path(p) for p in ROOT_SECRETS]
        found += sorted(Path("/etc/ssh").glob("ssh_host_*key"))
    return [path.resolve() for path in found if path.exists()]


def _real_root() -> bool:
    """Whether this process is root outside any user namespace of its own (a rootless
    container's root is not: what the real root owns is out of its commands' reach)."""
    if os.geteuid() != 0:
        return False
    try:
        first = Path("/proc/self/uid_map").read_text().split()
    except OSError:
        return True
    return first[:2] == ["0", "0"]


def root_reads() -> str:
    """What the sandbox cannot keep from a root driver's commands, said in the sandbox's
    line at each drive: they run as nobody mapped to root outside (so the workspace's
    files stay root's), and root's own files read as theirs."""
    if not _real_root():
        return ""
    return (
        "; as nobody, which is root outside: every file of root's shown is readable "
        "(other runs' stores outside the workspace, keys in /etc; the password hashes "
        "and SSH host keys are hidden): drive as an unprivileged user to keep them out "
        "of reach"
    )


STORE_SIDECARS = ("-wal", "-shm", "-journal")


def other_stores_in(workspace: Path, hidden: tuple[Path, ...] = ()) -> list[tuple[Path, ...]]:
    """The paths to hide of each store this account started a run in (the index of
    stores used, which no step reaches) that lies in ``workspace``, besides those
    ``hidden`` already: its directory, or, right in the workspace, its file, journal,
    log and checkpoints. A step of a run whose workspace held another run's (``R`` and
    ``R/sub/.trestle``) rewrote that run's events, and a ``python:`` step of its making
    ran in the driver at that run's next resume."""
    ws = workspace.resolve()
    inside = f"{ws}{os.sep}"
    found: list[tuple[Path, ...]] = []
    for store in _recent_store_names():
        where = _real_store(store, inside)
        if not where.startswith(inside) or (real := Path(where)) in hidden:
            continue
        if real.parent != ws:
            found.append((real.parent,))  # its checkpoints beside it too
        else:
            ends = (*STORE_SIDECARS, "")
            found.append((*(real.with_name(real.name + e) for e in ends), ws / "shadow.git"))
    return found


# the real path of each store in the index named outside the workspace (its links are
# not a step's to change), worked out once, and the index as last read: resolving 89
# of them for every command cost a sandboxed command 2.5 ms more
_REAL_STORES: dict[str, str] = {}
_INDEX_READ: dict[tuple[int, int], tuple[str, ...]] = {}


def _recent_store_names() -> tuple[str, ...]:
    """The store files the index of stores used names, read again when it changed."""
    from trestle.store.location import RecentStores, recent_stores_file

    try:
        info = os.stat(recent_stores_file())
    except OSError:
        return ()
    key = (info.st_mtime_ns, info.st_size)
    names = _INDEX_READ.get(key)
    if names is None:
        _INDEX_READ.clear()
        names = _INDEX_READ[key] = tuple(map(str, RecentStores().paths()))
    return names


def _real_store(named: str, inside: str) -> str:
    """The store ``named``'s real path; looked at again each time when named in the
    workspace (``inside``: its path and a separator), where a step may change a link on
    the way."""
    if named.startswith(inside):
        return os.path.realpath(named)
    real = _REAL_STORES.get(named)
    if real is None:
        real = _REAL_STORES[named] = os.path.realpath(named)
    return real


def choose(
    mode: Mode,
    *,
    hidden: tuple[Path, ...] = (),
    policy: SandboxPolicy | None = None,
    scope: tuple[str, ...] = (),
    workspace: Path | None = None,
    kept: tuple[Path, ...] = (),
) -> Sandbox:
    """The sandbox for a drive: bubblewrap if it works here, unless ``mode`` is off;
    found on no ``PATH`` entry a step of ``workspace`` could fill (see
    :func:`find_bwrap`).

    Raises:
        SandboxUnavailableError: ``mode`` is ``require`` and none works here.
    """
    policy = policy or SandboxPolicy()
    if workspace is not None:  # what the driver runs from now on is found outside it
        note_workspace(workspace)
    if mode == "off":
        return Sandbox(None, "turned off by the operator", True, hidden, policy, scope, kept)
    bwrap, why = find_bwrap(workspace)
    if bwrap is None and mode == "require":
        raise SandboxUnavailableError(
            f"no sandbox: {why}; install bubblewrap (apt install bubblewrap) or run "
            "with --sandbox auto (refuses confirm-tier work) or --sandbox off"
        )
    return Sandbox(bwrap, why, False, hidden, policy, scope, kept)


def mode_from(value: str | None) -> Mode:
    """The mode named by ``value`` (a flag) or ``$TRESTLE_SANDBOX``; ``auto`` if neither."""
    text = (value or os.environ.get(MODE_ENV) or "auto").strip().lower()
    for mode in MODES:
        if text == mode:
            return mode
    raise ConfigError(
        f"sandbox mode {text!r} (from {'--sandbox' if value else MODE_ENV}) is not one of "
        + ", ".join(MODES)
    )


def find_bwrap(workspace: Path | None = None) -> tuple[str | None, str]:
    """A bubblewrap that can make a sandbox for ``workspace``'s commands here, or None
    and why not. It runs as the driver, unconfined: never one a step of ``workspace``
    could have planted (found on a ``PATH`` entry in the workspace, a project's
    activated virtualenv, or named there by ``$TRESTLE_BWRAP``). Without a workspace
    (an early look while a run loads), only one in the system's own directories is
    run; another is looked up only, and run once the workspace is known."""
    if not sys.platform.startswith("linux"):
        return None, f"no sandbox is available on {sys.platform} (bubblewrap is Linux-only)"
    named = os.environ.get(BWRAP_ENV)
    path = program(named or "bwrap", workspaces=() if workspace is None else (workspace,))
    if path is None:
        return None, (
            f"bubblewrap ({named or 'bwrap'}) is not installed outside the places a step "
            "can write (the workspace, a relative directory)"
        )
    if workspace is None and os.path.dirname(os.path.realpath(path)) not in _SYSTEM_BIN:
        return path, ""
    return _probe(path)


# where a bubblewrap may be run before the workspace is known: no workspace is one of
# these (a workspace under /usr, /usr/src/app, can put its own directories on PATH)
_SYSTEM_BIN = frozenset({"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"})


@functools.cache
def _probe(path: str) -> tuple[str | None, str]:
    """Whether ``path`` can make the namespaces a sandbox needs; asked once per process."""
    probe = [path, *CONFINEMENT, *_identity(), "--ro-bind", "/", "/", "--proc", "/proc"]
    probe.append("/bin/true")
    try:
        done = subprocess.run(probe, capture_output=True, timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"bubblewrap ({path}) cannot run: {exc}"
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, f"bubblewrap ({path}) cannot make a sandbox here: {' '.join(said[-1:])}"
    return path, ""
