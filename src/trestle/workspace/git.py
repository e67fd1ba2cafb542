"""The one way the driver runs git on a repository a step can write, outside the sandbox.

A step (a plan command, a model's ``run_command``) may write anything in the workspace,
``.git`` included, and git obeys many settings that run a program: a promisor remote's
``uploadpack`` when a blob is missing, filters, textconv and external diff drivers,
fsmonitor, hooks, a pager, ssh and credential helpers, ``include.path`` pulling any of
those in from another file. The driver's git (``git_diff``, ``fetch_artifact``, the
checkpoint store) runs with the driver's rights, so none of that may take effect:

1. The repository is checked before git runs: its git directory must be a real
   directory (not a link, not a ``gitdir:`` file, no ``commondir`` pointing elsewhere),
   and its configuration may hold only settings known to be inert (:data:`INERT`).
   Anything else (``include.*``, ``extensions.partialClone``, ``remote.*.uploadpack``,
   ``filter.*``, ``core.worktree``, ``core.fsmonitor``...) is refused with
   :class:`UnsafeRepositoryError`, which names the settings and points to
   ``run_command``, where git runs in the sandbox. The configuration is read once
   (no links followed), and parsed by ``git config --file -`` with includes off:
   reading configuration runs nothing.
2. Every call runs with a clean environment (no ``GIT_*`` from the driver, no system
   or global configuration, no prompts, no pager) and :data:`OVERRIDES`, which switch
   the executable settings off on the command line, where they outrank the
   repository's: hooks, fsmonitor, every transport (so no promisor fetch, ssh or
   ``ext::`` can start), credential helpers, the pager, signing.

The second layer holds if a step rewrites the configuration between the check and
the call (a process it left running); the first is what refuses filters and drivers,
which no command-line setting can switch off by name.

Errors::

    RunError
    └── UnsafeRepositoryError   the repository is laid out or configured so that git
                                could run a program, or its git directory is unusable
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from trestle.core.errors import RunError
from trestle.workspace.reach import search_path_outside

# Settings git reads but that never make it run a program or look outside the git
# directory. Names as ``git config --list`` gives them: section and key lowercased, the
# subsection (a remote's or branch's name) as written.
INERT = re.compile(
    r"core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase"
    r"|precomposeunicode|symlinks|autocrlf|safecrlf|eol|checkstat|trustctime"
    r"|protecthfs|protectntfs)"
    r"|extensions\.(objectformat|refstorage)"
    r"|(user|author|committer)\.(name|email)"
    r"|init\.defaultbranch"
    r"|(pull\.(rebase|ff)|push\.(default|autosetupremote)|fetch\.prune)"
    # a remote's address is only read: no transport can start (protocol.allow=never)
    r"|remote\.[^\n]+\.(url|pushurl|fetch|push|tagopt|prune|mirror)"
    r"|branch\.[^\n]+\.(remote|merge|rebase|pushremote|description)"
    r"|submodule\.[^\n]+\.(url|active)"
)
# ``-c`` settings on every call: they outrank the repository's configuration.
OVERRIDES = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.editor=false",
    "core.askPass=",
    "core.sshCommand=false",
    "credential.helper=",
    "protocol.allow=never",
    "submodule.recurse=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gpg.program=false",
    "gc.auto=0",
    "maintenance.auto=false",
)
# variables beside GIT_* that would make git run something or ask someone
_DROPPED = ("SSH_ASKPASS", "PAGER", "EDITOR", "VISUAL")
MAX_CONFIG_BYTES = 1024 * 1024
WHERE_TO_RUN_IT = "run git with run_command instead, which runs it in the sandbox"


class UnsafeRepositoryError(RunError):
    """The repository could make git run a program (or cannot be used): refused.

    Attributes:
        git_dir: the git directory that was refused.
    """

    def __init__(self, message: str, git_dir: Path) -> None:
        super().__init__(message)
        self.git_dir = git_dir


def workspace_git_dir(workspace: Path) -> Path:
    """The workspace's own ``.git`` directory, checked (see :func:`check_git_dir`).

    Only ``WORKSPACE/.git`` is used: never a repository found above the workspace, nor
    one a ``.git`` file (``gitdir: ...``) or link points to.

    Raises:
        UnsafeRepositoryError: there is no such directory, or it is refused.
    """
    git_dir = workspace / ".git"
    try:
        mode = os.lstat(git_dir).st_mode
    except FileNotFoundError:
        raise UnsafeRepositoryError(
            "the workspace is not a git repository (it has no .git directory)", git_dir
        ) from None
    except OSError as exc:
        raise UnsafeRepositoryError(f"cannot read {str(git_dir)!r}: {exc}", git_dir) from None
    if not stat.S_ISDIR(mode):
        what = "a link" if stat.S_ISLNK(mode) else "a file (a gitdir: link), not a directory"
        raise UnsafeRepositoryError(
            f"the workspace's .git is {what}; the repository it points to is not used "
            f"outside the sandbox: {WHERE_TO_RUN_IT}",
            git_dir,
        )
    check_git_dir(git_dir)
    return git_dir


# an alternates file lends git another repository's objects
_BORROWED = ("objects/info/alternates", "objects/info/http-alternates")
# the most entries of .git looked at for links: a repository's loose objects are kept
# below git's gc.auto (6,700) and its refs in a packed file
MOST_LOOKED_AT = 200_000


def refuse_links_read_outside(git_dir: Path, advice: str = WHERE_TO_RUN_IT) -> None:
    """Refuse ``git_dir`` for git run outside the sandbox when anything in it is a link
    (git reads through it whatever file the driver may: a ``packed-refs`` or an
    ``info/grafts`` linked to the approval key had git print the key as a line it could
    not parse; an ``objects/pack`` linked to a hidden repository's showed its files),
    or when it borrows another repository's objects, or holds too much to look at.

    Raises:
        UnsafeRepositoryError: naming the first such file.
    """
    looked = 0
    for where, dirs, files in os.walk(git_dir):
        for name in (*dirs, *files):
            looked += 1
            path = Path(where, name)
            if path.is_symlink():
                raise UnsafeRepositoryError(
                    f"{str(path)!r} is a link: git would read whatever it leads to; the "
                    f"driver runs no git on it outside the sandbox: {advice}",
                    git_dir,
                )
        if looked > MOST_LOOKED_AT:
            raise UnsafeRepositoryError(
                f"{str(git_dir)!r} holds more than {MOST_LOOKED_AT:,} files to look at for "
                f"links; the driver runs no git on it outside the sandbox: {advice}",
                git_dir,
            )
    for name in _BORROWED:
        if os.path.lexists(git_dir / name):
            raise UnsafeRepositoryError(
                f"{str(git_dir / name)!r} lends the repository another's objects; the "
                f"driver runs no git on it outside the sandbox: {advice}",
                git_dir,
            )


def check_git_dir(
    git_dir: Path,
    *,
    git: str = "git",
    advice: str = WHERE_TO_RUN_IT,
    workspace: Path | None = None,
) -> None:
    """Refuse a git directory whose layout or configuration could make git run a program;
    ``advice`` ends the error's message (what to do instead); ``workspace``: the one
    whose steps may write (see :func:`environment`), ``git_dir``'s parent if None.

    Raises:
        UnsafeRepositoryError: it is not a plain directory, it shares another's
            (``commondir``), or its configuration holds a setting not known to be inert.
    """
    try:
        mode = os.lstat(git_dir).st_mode
    except OSError as exc:
        raise UnsafeRepositoryError(f"cannot read {str(git_dir)!r}: {exc}", git_dir) from None
    if not stat.S_ISDIR(mode):
        raise UnsafeRepositoryError(f"{str(git_dir)!r} is not a directory", git_dir)
    if os.path.lexists(git_dir / "commondir"):
        raise UnsafeRepositoryError(
            f"{str(git_dir)!r} holds a commondir file, which makes git take its "
            f"configuration and hooks from another directory: {advice}",
            git_dir,
        )
    settings = read_config(git_dir, git=git, workspace=workspace)
    refused = sorted({key for key, _ in settings if not INERT.fullmatch(key)})
    if refused:
        shown = ", ".join(refused[:8]) + (
            f" and {len(refused) - 8} more" if len(refused) > 8 else ""
        )
        raise UnsafeRepositoryError(
            f"the configuration of {str(git_dir)!r} holds settings that could make git run a "
            f"program or read another file ({shown}); the driver runs no git on it outside "
            f"the sandbox: {advice}",
            git_dir,
        )


def read_config(
    git_dir: Path, *, git: str = "git", workspace: Path | None = None
) -> list[tuple[str, str]]:
    """The settings in ``git_dir``'s own ``config`` file (includes not followed), as
    ``(name, value)`` pairs in file order; none if there is no such file. ``workspace``
    as for :func:`check_git_dir`.

    Raises:
        UnsafeRepositoryError: the file is not a regular file, is too large, or git
            cannot parse it.
    """
    path = git_dir / "config"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return []
    except OSError as exc:  # ELOOP: a link, which git would follow somewhere else
        raise UnsafeRepositoryError(
            f"cannot read {str(path)!r} as a plain file: {exc.strerror}", git_dir
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeRepositoryError(f"{str(path)!r} is not a regular file", git_dir)
        if info.st_size > MAX_CONFIG_BYTES:
            raise UnsafeRepositoryError(
                f"{str(path)!r} is {info.st_size} bytes, more than {MAX_CONFIG_BYTES}", git_dir
            )
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    # GIT_DIR names no repository: the parse reads the bytes given and nothing else
    env = environment(Path(os.devnull), workspace=workspace or git_dir.parent)
    try:
        done = subprocess.run(
            [git, *_settings(), "config", "--file", "-", "--no-includes", "--list", "-z"],
            input=data,
            capture_output=True,
            cwd="/",
            env=env,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnsafeRepositoryError(
            f"cannot run git to read {str(path)!r}: {exc}", git_dir
        ) from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", errors="replace").strip()
        raise UnsafeRepositoryError(f"git cannot read {str(path)!r}: {said}", git_dir)
    pairs = []
    for item in done.stdout.decode("utf-8", errors="replace").split("\0"):
        if item:
            name, _, value = item.partition("\n")
            pairs.append((name, value))
    return pairs


def environment(
    git_dir: Path,
    work_tree: Path | None = None,
    extra: Mapping[str, str] | None = None,
    *,
    workspace: Path | None = None,
) -> dict[str, str]:
    """A clean environment for git on ``git_dir``: nothing ``GIT_*`` from the driver (a
    ``GIT_DIR``, ``GIT_CONFIG_PARAMETERS`` or ``GIT_SSH_COMMAND`` would redirect or
    arm it), no system or global configuration, no prompt, no pager, no lazy fetch.

    ``git`` itself is found on a ``PATH`` without the entries a step could fill (see
    :func:`~trestle.workspace.reach.search_path_outside`) in ``workspace`` (else
    ``work_tree``, else ``git_dir``'s parent): a project's activated virtualenv on
    ``PATH`` let a step plant a ``git`` there that the next checkpoint ran unconfined."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k not in _DROPPED}
    place = workspace or work_tree or git_dir.parent
    env["PATH"] = search_path_outside(os.environ.get("PATH", os.defpath), place)
    env.update(
        GIT_DIR=str(git_dir),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_ATTR_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        # an empty list of allowed transports: it outranks any protocol.<name>.allow the
        # repository sets (which would outrank protocol.allow=never), so no fetch starts
        GIT_ALLOW_PROTOCOL="",
        GIT_NO_LAZY_FETCH="1",  # git 2.45 and the 2.39.4+ fixes; the line above holds without
        GIT_PROTOCOL_FROM_USER="0",
        GIT_PAGER="cat",
        LC_ALL="C",
    )
    if work_tree is not None:
        env["GIT_WORK_TREE"] = str(work_tree)
    env.update(extra or {})
    return env


def command(*args: str, git: str = "git", settings: Sequence[str] = ()) -> list[str]:
    """The command line for ``git ARGS``: :data:`OVERRIDES` and then ``settings``, each
    as ``-c``, first."""
    return [git, *_settings(settings), *args]


def _settings(extra: Sequence[str] = ()) -> list[str]:
    return [word for setting in (*OVERRIDES, *extra) for word in ("-c", setting)]
