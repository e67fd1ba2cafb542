"""The sandbox as a boundary against the step it confines, as root and as a normal user.

A hostile plan step tries what a root step did before the sandbox dropped its powers:
undo the mounts that hide the home, the key and the store (``umount``, or a nested
user namespace that grants the capabilities again), then approve the run's own
irreversible step from a detached process; plant hooks, ``core.fsmonitor`` or a
``commondir`` in ``.git`` for the operator's next ``git status``; replace ``.git``
wholesale; reach a daemon's UNIX socket; read the account's real home while ``$HOME``
names another directory. Each attack appends ``GOT <what>`` to ``got.txt`` when it
works; the test counts them, and checks from outside that the irreversible step still
waits for a human and that nothing in ``.git`` changed.

The same plan runs under a root driver (this machine's default, as in most
containers and CI) and under an unprivileged one (uid 1000, through ``setpriv``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_helpers import (
    agent_settings,
    call,
    drive,
    fix_replies,
    recorded,
    sample_workspace,
)
from test_approvals_cli import Cli, flat, run_id_of
from test_sandbox import SECRET, HostCli, _attack, _require_bwrap
from trestle.core.events import ToolCallEnded
from trestle.core.policy import Policy, SandboxPolicy
from trestle.core.records.agent import bootstrap_plan
from trestle.execution.sandbox import Cell, choose
from trestle.lifecycle.runs import create_run
from trestle.models import ScriptedModel
from trestle.store import SqliteStore

USER = 1000  # the unprivileged driver
OUTSIDE_TMP = "/var/lib"  # a host directory every sandbox shows as it is
SOURCE = Path(__file__).resolve().parents[1] / "src"
SPAWNS_ITSELF = "import subprocess, sys; subprocess.run([sys.executable, '-c', ''], check=True)"


def _as(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


@dataclass
class Target:
    """What the attacks aim at, outside the workspace."""

    host: Path  # holds home/ (with the key), ws/ and the store
    socket: Path  # a daemon's socket on the host
    real_home_secret: Path  # a file in the account's real home
    python: str  # the driver's Python, which a step uses to run trestle too


@dataclass(frozen=True)
class UserCli(HostCli):
    """The CLI run by an unprivileged user (``uid``); None runs it as this process."""

    uid: int | None = None
    python: str = sys.executable

    def env(self, **extra: str) -> dict[str, str]:
        if self.python != sys.executable:  # the system's Python, with this one's packages
            ours = [p for p in sys.path if p.startswith((sys.prefix, str(SOURCE)))]
            extra = {"PYTHONPATH": os.pathsep.join(ours), **extra}
        # the index of stores outside the home and /tmp, where every sandbox shows it
        # unless it is hidden itself
        extra = {"XDG_STATE_HOME": str(self.dir.parent / "state"), **extra}
        return super().env(**extra)

    def launcher(self) -> list[str]:
        prefix = [] if self.uid is None else _as(self.uid)
        return [*prefix, self.python, "-m", "trestle"]


def run_as_driver(base: Path, uid: int | None, script: str, cases: object) -> object:
    """Run the driver ``script`` (given ``base`` and ``cases`` as JSON) in ``base``, as
    root or as ``uid``, with this checkout's trestle and a home under ``base``; what
    it printed, read as JSON."""
    python = _python_for(uid)
    ours = [p for p in sys.path if p.startswith((sys.prefix, str(SOURCE)))]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base / "home"), "PYTHONPATH": os.pathsep.join(ours)}
    prefix = [] if uid is None else _as(uid)
    done = subprocess.run(
        [*prefix, python, "-c", script, str(base), json.dumps(cases)],
        capture_output=True,
        text=True,
        env=env,
        cwd=base,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def outside_tmp(prefix: str) -> Path:
    """A fresh directory in :data:`OUTSIDE_TMP`. A test run by a user who may not write
    there is skipped: each directory such a user may write is one the sandbox gives its
    commands empty (``/tmp``, ``/var/tmp``, ``/run``) or hides (the home), where a mount
    taken away shows an empty directory, not the host's files, and an attack proves
    nothing. Run as root, these tests drive both as root and as a user."""
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=OUTSIDE_TMP))
    except PermissionError:
        pytest.skip(f"uid {os.getuid()} cannot make a directory in {OUTSIDE_TMP} (run as root)")


def driver_host(
    who: str, prefix: str, lay_out: Callable[[Path], None]
) -> Iterator[tuple[Path, int | None]]:
    """For a fixture run as root and as a user (``who``: its param): a directory outside
    /tmp (private in the sandbox), laid out by ``lay_out`` and owned by the driver that
    :func:`run_as_driver` runs there; its uid (None: root). Removed after."""
    _require_bwrap()
    uid = None if who == "root" else USER
    if os.getuid() != 0 and uid is not None:
        pytest.skip("the unprivileged driver is made with setpriv, which needs root")
    base = outside_tmp(prefix)
    try:
        lay_out(base)
        _chown_tree(base, os.getuid() if uid is None else uid)
        base.chmod(0o755)
        yield base, uid
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _home_of(uid: int) -> Path:
    return Path(pwd.getpwuid(uid).pw_dir)


def _python_for(uid: int | None) -> str:
    """A Python of this version that ``uid`` may run: this one, or the system's when
    this one lives in a home the user cannot enter (pyenv under /root)."""
    # it must start itself again, as the driver's watchdog does (an exec through a
    # directory the user cannot search may pass the first time and fail the second)
    candidates = [sys.executable, f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"]
    if uid is None:
        return sys.executable
    for python in candidates:
        ran = subprocess.run(
            [*_as(uid), python, "-c", SPAWNS_ITSELF],
            capture_output=True,
            check=False,
        )
        if ran.returncode == 0:
            return python
    pytest.fail(f"no Python {sys.version_info[:2]} that uid {uid} may run: {candidates}")


@pytest.fixture(params=["root", "user"])
def driver(request: pytest.FixtureRequest) -> Iterator[tuple[UserCli, Target]]:
    _require_bwrap()
    uid = None if request.param == "root" else USER
    owner = os.getuid() if uid is None else uid
    if os.getuid() != 0 and uid is not None:
        pytest.skip("the unprivileged driver is made with setpriv, which needs root")
    # not under /tmp: the sandbox's /tmp is private, so a mount taken away there would
    # show an empty directory, not the host's files, and the test would prove nothing
    base = outside_tmp("trestle-boundary-")
    sock_dir = outside_tmp("trestle-boundary-")
    real_home = _home_of(owner)
    secret_file = real_home / f".trestle-boundary-{secrets.token_hex(4)}"
    server = socket.socket(socket.AF_UNIX)
    try:
        home = base / "home"
        (home / ".config" / "trestle").mkdir(parents=True)
        (home / ".config" / "trestle" / "approval.key").write_text(SECRET)
        (home / ".config" / "trestle" / "approval.key").chmod(0o600)
        (base / "ws").mkdir()
        (base / "store").mkdir()
        subprocess.run(["git", "init", "-q", str(base / "ws")], check=True)
        (base / "ws" / "README").write_text("hello\n")
        _with_a_submodule(base / "ws", base / "lib")
        secret_file.write_text(SECRET)
        server.bind(str(sock_dir / "daemon.sock"))
        server.listen(8)
        os.chmod(sock_dir / "daemon.sock", 0o777)
        for path in (base, sock_dir, secret_file):
            _chown_tree(path, owner)
        base.chmod(0o755)
        sock_dir.chmod(0o755)
        python = _python_for(uid)
        cli = UserCli(base / "ws", base / "store" / "trestle.db", uid, python)
        yield cli, Target(base, sock_dir / "daemon.sock", secret_file, python)
    finally:
        server.close()
        secret_file.unlink(missing_ok=True)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(sock_dir, ignore_errors=True)


def _with_a_submodule(ws: Path, lib: Path) -> None:
    """``lib``, a repository of one commit, as the submodule ``vendor/lib`` of ``ws``."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@x", "-c", "protocol.file.allow=always"]
    subprocess.run(["git", "init", "-q", str(lib)], check=True)
    (lib / "a.txt").write_text("a\n")
    subprocess.run([*git, "-C", str(lib), "add", "a.txt"], check=True)
    subprocess.run([*git, "-C", str(lib), "commit", "-qm", "a"], check=True)
    subprocess.run(
        [*git, "-C", str(ws), "submodule", "-q", "add", str(lib), "vendor/lib"], check=True
    )


def _chown_tree(path: Path, uid: int) -> None:
    if os.getuid() != 0:
        return
    os.chown(path, uid, uid, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for child in path.rglob("*"):
            os.chown(child, uid, uid, follow_symlinks=False)


def boundary_attacks(target: Target, store: Path) -> dict[str, str]:
    home = target.host / "home"
    key = home / ".config" / "trestle" / "approval.key"
    trestle = f"{target.python} -m trestle"
    # the key's directory and the home are each hidden: take both mounts away
    unhide = f"umount -l {key.parent}; umount -l {home}; umount -l {key.parent}"
    connect = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(target.socket)!r})"
    return {
        "root inside": 'test "$(id -u)" = 0',
        "capabilities": "grep -Eq '^CapEff:.*[1-9a-f]' /proc/self/status",
        "umount the hidden home": f"{unhide}; grep -q {SECRET} {key}",
        "umount in a nested namespace": f"unshare -Urm sh -c '{unhide}; grep -q {SECRET} {key}'",
        "write a hook": (
            "printf '#!/bin/sh\\ntouch pwned\\n' > .git/hooks/post-index-change"
            " && chmod +x .git/hooks/post-index-change"
        ),
        "set core.fsmonitor": "git config core.fsmonitor 'touch pwned'",
        "plant commondir": "echo evil > .git/commondir",
        "replace .git": "mv .git .git-old && mkdir .git",
        "a daemon socket": f'{target.python} -c "{connect}"',
        "the real home": f"grep -q {SECRET} {target.real_home_secret}",
        # what a root driver's nobody, root outside, read as root's: the password
        # hashes; and the index naming where other runs' stores are
        "the password hashes": "head -c 1 /etc/shadow | grep -q .",
        "the index of stores": f"grep -q trestle.db {target.host / 'state/trestle/stores'}",
        "mount over .git": "mount -t tmpfs none .git && touch .git/x && umount .git",
        # a submodule checkout given a repository of its own, whose configuration the
        # operator's next `git status` obeys there: in its place, or where it was moved
        "a submodule checkout with its own .git": "rm -f vendor/lib/.git; mkdir vendor/lib/.git",
        "a submodule moved away": "mv vendor/lib vendor/gone && mkdir -p vendor/lib/.git",
        "its directory moved away": "mv vendor vendor-gone && mkdir -p vendor/lib/.git",
        "detached approve after umount": (
            f"({unhide} 2>/dev/null; setsid env -i PATH=$PATH PYTHONPATH=$PYTHONPATH "
            f"{trestle} approve $TRESTLE_RUN_ID.1 --store {store} > approve.out 2>&1 &); sleep 3;"
            f" {trestle} inbox --store {store} 2>/dev/null | grep -q approved"
        ),
    }


def _git_state(ws: Path) -> str:
    """A digest of everything in ``.git`` but its objects, refs and index."""
    h = hashlib.sha256()
    for path in sorted((ws / ".git").rglob("*")):
        relative = path.relative_to(ws).as_posix()
        h.update(relative.encode() + b"\0")
        skipped = relative == ".git/index" or relative.startswith((".git/objects", ".git/refs"))
        if path.is_file() and not skipped:
            h.update(path.read_bytes())
    return h.hexdigest()


def _plan(attacks: dict[str, str], goal: str = "escape the sandbox", after: bool = False) -> str:
    """A ``probe`` step trying each attack, and an irreversible ``push`` (``after`` the
    probe, or beside it) that only a human may let run."""
    probes = "\n".join(f"      {_attack(what, cmd)}" for what, cmd in attacks.items())
    return (
        f"goal: {goal}\nsteps:\n"
        "  - id: probe\n"
        "    approval: auto\n"
        "    run: |\n"
        f"{probes}\n"
        "      echo ran > ran.txt\n"
        "  - id: push\n"
        + ("    needs: [probe]\n" if after else "")
        + "    run: echo pushed >> pushed.txt\n"
        "    irreversible: true\n"
    )


def test_no_attack_from_inside_a_step_gets_out_as_root_or_as_a_user(
    driver: tuple[UserCli, Target],
) -> None:
    cli, target = driver
    tried = boundary_attacks(target, cli.store)
    before = _git_state(cli.dir)
    cli.write("plan.yaml", _plan(tried))
    started = cli("run", "plan.yaml")
    assert started.returncode == 3, started.stdout + started.stderr
    run_id = run_id_of(started)
    got = cli.lines("got.txt")
    assert (cli.dir / "ran.txt").exists(), "the probe step did not run:\n" + started.stdout
    assert got == [], f"{len(got)} of {len(tried)} attacks worked: {got}"
    [card] = Cli.json(cli, "inbox", "--run", run_id)
    assert card["status"] == "pending"
    assert not (cli.dir / "pushed.txt").exists()
    assert _git_state(cli.dir) == before, "the step changed .git"
    assert (cli.dir / ".git").is_dir() and not (cli.dir / ".git-old").exists()
    assert (cli.dir / "vendor" / "lib" / ".git").read_text().startswith("gitdir: ")


def _git_in_cell(ws: Path, command: str, *, approved: bool = False, named: bool = False) -> int:
    """Run ``command`` in the workspace's sandbox as a step the policy's ``sandbox.git``
    names or not, approved by a human or not; its exit code."""
    policy = SandboxPolicy(git=("releaser",))
    sandbox = choose("require", policy=policy)
    name = "releaser" if named else "step"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ws), **IDENTITY}
    argv = Cell(sandbox, ws, name, approved=approved).argv(command, ws)
    return subprocess.run(argv, cwd=ws, env=env, capture_output=True, check=False).returncode


IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
IDENTITY["GIT_COMMITTER_EMAIL"] = "t@x"


def test_only_an_approved_or_named_command_writes_the_history_and_never_the_config(
    tmp_path: Path,
) -> None:
    _require_bwrap()
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("a\n")
    commit = "git add a.txt && git commit -qm a"
    assert _git_in_cell(tmp_path, commit) != 0  # .git is read-only to a command
    assert _git_in_cell(tmp_path, commit, approved=True) == 0  # a human approved it
    (tmp_path / "a.txt").write_text("b\n")
    assert _git_in_cell(tmp_path, "git commit -qam b", named=True) == 0  # sandbox.git names it
    for planted in (
        "git config core.fsmonitor 'touch pwned'",
        "echo 'touch pwned' > .git/hooks/pre-commit",
        "mv .git .git-old",
        "rm -rf .git/hooks",
    ):
        assert _git_in_cell(tmp_path, planted, approved=True) != 0, planted
    assert not (tmp_path / ".git" / "hooks" / "pre-commit").exists()
    log = subprocess.run(["git", "-C", str(tmp_path), "log", "--format=%s"], capture_output=True)
    assert log.stdout.decode().split() == ["b", "a"]


HIDDEN_WRITES = {
    # the child's commands, each of which writes outside its scope without naming the
    # file on its command line, so the gate cannot see it: only the sandbox can
    "a script": "sh write.sh",
    "python -c": "python3 -c \"open('src/app.py', 'a').write('# x')\"",
    "a computed path": 'd=sr; echo x >> "${d}c/app.py"',
    "a link made first": "ln -sf ../src/app.py notes/link && echo x >> notes/link",
}


def test_a_child_run_writes_only_inside_its_carved_scope(tmp_path: Path) -> None:
    _require_bwrap()
    cli = Cli(dir=tmp_path, store=tmp_path / "trestle.db")
    (tmp_path / "src").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "src" / "app.py").write_text("app\n")
    cli.write("write.sh", "echo x >> src/app.py\n")
    steps = "".join(
        f"  - id: w{i}\n    approval: auto\n    optional: true\n    run: {json.dumps(command)}\n"
        for i, command in enumerate(HIDDEN_WRITES.values())
    )
    cli.write("child.yaml", f"steps:\n{steps}  - id: ok\n    run: echo fine > notes/ok.txt\n")
    cli.write(
        "plan.yaml",
        "steps:\n  - id: notes\n    delegate: {goal: notes, plan: child.yaml, scope: [notes/**]}\n",
    )
    result = cli("run", "plan.yaml", "--no-live")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    landed = (tmp_path / "src" / "app.py").read_text().count("x")
    assert landed == 0, f"{landed} of {len(HIDDEN_WRITES)} hidden writes landed outside the scope"
    assert (tmp_path / "notes" / "ok.txt").read_text() == "fine\n"  # its scope is writable


def test_a_python_step_never_imports_code_a_step_wrote_after_the_run_started(
    tmp_path: Path,
) -> None:
    """The plan's directory is the workspace here, as it often is: a command step
    rewrites the module a later ``python:`` step imports into the driver itself. A
    sandbox keeps the module read-only to commands (``tests/test_run_files.py``); the
    pin is what holds without one."""
    cli = Cli(dir=tmp_path, store=tmp_path / "trestle.db")
    cli.write("hooks.py", "def go(ctx):\n    return True\n")
    planted = 'import pathlib; pathlib.Path("pwned").write_text("driver")'
    cli.write(
        "plan.yaml",
        "steps:\n"
        "  - id: plant\n    approval: auto\n"
        f"    run: printf '{planted}\\n' >> hooks.py\n"
        "  - id: hook\n    needs: [plant]\n    python: hooks:go\n",
    )
    result = cli("run", "plan.yaml", "--no-live", "--sandbox", "off")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "hooks.py' changed after the run started" in flat(result.stdout)
    assert not (tmp_path / "pwned").exists()
    # nor in a new process resuming it (no module cached), after a retry
    run_id = run_id_of(result)
    cli("retry", run_id, "hook")
    again = cli("resume", run_id, "--no-live", "--sandbox", "off")
    assert "changed after the run started" in flat(again.stdout), again.stdout
    assert not (tmp_path / "pwned").exists()


def test_a_store_kept_in_the_workspace_hides_its_checkpoints_too(tmp_path: Path) -> None:
    """``TRESTLE_STORE=ws/trestle.db`` puts ``shadow.git`` beside it, in the workspace:
    a step must not reach the checkpoints it would be rewound to."""
    _require_bwrap()
    cli = Cli(dir=tmp_path, store=tmp_path / "trestle.db")
    probe = "ls shadow.git/objects >/dev/null 2>&1 && echo seen > got.txt; echo ran > ran.txt"
    cli.write(
        "plan.yaml",
        "checkpoints: every_step\nsteps:\n"
        "  - id: first\n    run: echo one > one.txt\n"
        f"  - id: probe\n    needs: [first]\n    approval: auto\n    run: {json.dumps(probe)}\n",
    )
    result = cli("run", "plan.yaml", "--no-live")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "shadow.git" / "objects").is_dir()  # there are checkpoints
    assert (tmp_path / "ran.txt").exists() and not (tmp_path / "got.txt").exists()


def test_an_agents_command_cannot_undo_its_sandbox_to_show_the_model_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hijacked model runs, through ``run_command``, what a root step ran before: take
    away the mounts that hide the key, then print it into its own next request."""
    _require_bwrap()
    key_dir = outside_tmp("trestle-agent-key-")
    try:
        (key_dir / "approval.key").write_text(SECRET)
        monkeypatch.setenv("TRESTLE_KEY_FILE", str(key_dir / "approval.key"))
        store = SqliteStore(tmp_path / "trestle.db")
        ws = sample_workspace(tmp_path)
        steal = (
            f"umount -l {key_dir}; unshare -Urm sh -c 'umount -l {key_dir}; cat {key_dir}/*';"
            f" cat {key_dir}/approval.key; grep CapEff /proc/self/status; id -u"
        )
        policy = Policy(auto_commands=("*",), confirm_commands=())  # nothing asks a human
        plan = bootstrap_plan("make add() return the sum", policy=policy)
        run_id = create_run(store, plan, workspace=ws, agent=agent_settings())
        replies = fix_replies()
        replies[3:3] = [call("run_command", command=steal)]
        drive(store, run_id, ScriptedModel(replies))
        [seen] = [e for e in recorded(store, run_id) if isinstance(e, ToolCallEnded)][1:2]
        assert seen.tool == "run_command" and "CapEff:\t0000000000000000" in seen.content
        shown = " ".join(str(e.model_dump()) for e in recorded(store, run_id))
        assert SECRET not in shown
    finally:
        shutil.rmtree(key_dir, ignore_errors=True)


def test_a_link_a_child_plants_in_its_scope_widens_nothing(
    driver: tuple[UserCli, Target],
) -> None:
    # a child whose scope is one file planted that file as a link to a directory, each
    # time from inside a script the gate cannot read: its next command had the link's
    # target writable (`../src`), or the whole workspace (`..`)
    cli, _ = driver
    cli.write("src/app.py", "app\n")
    cli.write("notes/.keep", "")
    cli.write("plant.sh", 'ln -sfn "$1" notes/x.md\n')
    cli.write("write.sh", "echo x >> src/app.py; echo x > newtop.txt\n")
    chain = "".join(  # one after another: each write after its link is planted
        f"  - {{id: plant{i}, approval: auto, optional: true, run: sh plant.sh {target}"
        + (f", needs: [write{i - 1}]}}\n" if i else "}\n")
        + f"  - {{id: write{i}, approval: auto, optional: true, run: sh write.sh"
        + f", needs: [plant{i}]}}\n"
        for i, target in enumerate(("../src", ".."))
    )
    cli.write("child.yaml", "steps:\n" + chain)
    delegation = "{goal: notes, plan: child.yaml, scope: [notes/x.md]}"
    cli.write("plan.yaml", f"steps:\n  - id: notes\n    delegate: {delegation}\n")
    _chown_tree(cli.dir, os.getuid() if cli.uid is None else cli.uid)
    result = cli("run", "plan.yaml", "--no-live")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert (cli.dir / "notes" / "x.md").is_symlink()  # its scope was writable
    assert (cli.dir / "src" / "app.py").read_text() == "app\n"
    assert not (cli.dir / "newtop.txt").exists()


def test_a_scope_that_climbs_out_of_its_root_makes_nothing_writable(tmp_path: Path) -> None:
    # `notes/../src/**` reads as inside `notes/**` to a check of the text: the sandbox
    # leaves it read-only rather than follow it up and into `src`
    from trestle.execution.sandbox_mounts import writable_dirs

    (tmp_path / "notes").mkdir()
    (tmp_path / "src").mkdir()
    assert writable_dirs(tmp_path, ("notes/../src/**",)) == []
    assert writable_dirs(tmp_path, ("notes/**",)) == [tmp_path / "notes"]
