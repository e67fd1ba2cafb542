"""Which operator policy file a run may obey: a file a step could have written is
obeyed only once a human accepted exactly its bytes.

A run's steps can write its workspace (the sandbox makes nothing else writable), so a
``trestle.toml`` there, or anywhere between the workspace and its repository's root
(another run's workspace may have been the repository), may have been written by a
step: planted where there was none, or changed. Obeying it would let a step approve
its own irreversible actions, open the network and show itself the approval key. So:

- every file the search finds (:func:`~trestle.formats.policyfile.find_policy_file`), and a
  file named with ``--policy`` that lies in the workspace or its repository, is pinned
  by its SHA-256: obeyed when a human accepted that hash for that file (its real
  path), refused otherwise (:class:`~trestle.core.errors.PolicyNotAcceptedError`);
- a file named with ``--policy`` outside both is the operator's own, and trusted.

Accepted hashes live in ``accepted-policies.json`` in Trestle's configuration
directory, which every sandbox hides, owner-only, replaced atomically under a lock.
Accepting is a human's act: it is refused from inside a step
(:func:`trestle.trust.step_origin.inside_a_step`).

The CLI's ``run`` and ``agent`` go through :func:`trusted_settings`; the library's
:func:`~trestle.formats.policyfile.operator_policy` and
:func:`~trestle.formats.policyfile.load_policy` trust the file they are given.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from trestle.core.errors import ConfigError, PolicyNotAcceptedError
from trestle.core.policy import Policy
from trestle.core.records.mcp import McpServer
from trestle.core.records.monitors import MonitorSettings
from trestle.core.records.policy_source import PolicySource, when
from trestle.formats.mcp_servers import with_server_rules
from trestle.formats.policyfile import (
    POLICY_FILE,
    PolicyFile,
    find_policy_file,
    read_policy_file,
)
from trestle.support.whole_files import locked, write_whole
from trestle.trust.signing import config_dir  # hidden from every sandbox

ACCEPTED_FILE = "accepted-policies.json"
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class OperatorSettings:
    """What a new run records from the operator's file, and where it came from:
    ``mcp`` is the MCP servers its ``[mcp.servers.*]`` tables declare, obeyed (started)
    only as the rest of the file is, once accepted where a step could have written it."""

    policy: Policy | None
    monitors: MonitorSettings | None
    source: PolicySource
    mcp: tuple[McpServer, ...] = ()


@dataclass(frozen=True)
class Acceptance:
    sha256: str
    at: float


def trusted_settings(
    workspace: Path,
    path: Path | None = None,
    *,
    accept_sha256: str | None = None,
    now: float | None = None,
) -> OperatorSettings:
    """The operator's policy and monitor settings for a new run in ``workspace``, from
    ``path`` or the nearest ``trestle.toml``, and where they came from.

    Args:
        accept_sha256: accept the file first if its SHA-256 is this (what a script that
            wrote or reviewed the file passes); any other content is refused.

    Raises:
        ConfigError: the file is invalid (checked first: a bad file is refused as bad),
            or ``accept_sha256`` is malformed, given without a file, or asked from inside
            a step.
        PolicyNotAcceptedError: the file is pinned and its hash is not the accepted one.
    """
    found = path if path is not None else find_policy_file(workspace)
    if path is None:
        _refuse_a_workspace_led_elsewhere(workspace, found)
    if found is None:
        _refuse_a_policy_left_behind(workspace)
        if accept_sha256 is not None:
            raise ConfigError(
                f"--accept-policy: there is no policy file for {str(workspace)!r} to accept"
            )
        return OperatorSettings(None, None, PolicySource(trust="none"))
    read = read_policy_file(found)
    servers, server_rules = read.mcp_servers()
    policy, monitors = with_server_rules(read.policy(), server_rules), read.monitors()
    real = found.resolve()
    if accept_sha256 is not None:
        wanted = _checked_digest(accept_sha256, "--accept-policy")
        if wanted != read.sha256:
            raise PolicyNotAcceptedError(
                f"{real}: --accept-policy {wanted} does not match the file, whose SHA-256 "
                f"is {read.sha256}: it was not accepted and nothing ran"
            )
    # judged by the name given as well as where it leads (a step put a link to a file
    # outside in its place: trusted as yours); a file once accepted stays pinned,
    # wherever a .git (a step's?) says the project ends
    root = _project_root(workspace)
    named = _as_named(found)
    if _within(root, named) and Path(os.path.realpath(named.parent)) != named.parent:
        raise PolicyNotAcceptedError(
            f"{named}: named through a link in the project (it leads to {real}): a "
            "run's step could have made that link, and the run did not start. Name "
            f"the file by its real path ({real}) if the link is yours"
        )
    pinned = (
        path is None
        or _within(root, real)
        or _within(root, named)
        or _accepted_as(found) in acceptances()
    )
    if not pinned:
        source = PolicySource(trust="outside", path=str(real), sha256=read.sha256)
        return OperatorSettings(policy, monitors, source, servers)
    if accept_sha256 is not None:
        accepted: Acceptance | None = accept(read, now=now)
    else:
        accepted = acceptances().get(_accepted_as(found))
    if accepted is None or accepted.sha256 != read.sha256:
        raise PolicyNotAcceptedError(refusal(Path(_accepted_as(found)), read.sha256, accepted))
    source = PolicySource(
        trust="accepted", path=str(real), sha256=read.sha256, accepted_at=accepted.at
    )
    return OperatorSettings(policy, monitors, source, servers)


def refusal(real: Path, sha256: str, accepted: Acceptance | None) -> str:
    """Why a pinned file is not obeyed, and the commands that accept it."""
    if accepted is None:
        what = f"a policy file no one has accepted (sha256 {sha256})"
    else:
        what = (
            f"this policy file changed since it was accepted on {when(accepted.at)} "
            f"(sha256 {accepted.sha256} then, {sha256} now)"
        )
    return (
        f"{real}: {what}: the run did not start. A run's step can write where it lies, so "
        f"no run obeys it until you accept it: read it, then `trestle policy accept {real}`, "
        f"or add `--accept-policy {sha256}` to this command to accept exactly these bytes"
    )


def status(path: Path, sha256: str) -> str:
    """How the file at ``path`` stands, in words: accepted on DATE, not accepted, or
    changed."""
    accepted = acceptances().get(_accepted_as(path))
    if accepted is None:
        return "not accepted: no run obeys it until you accept it"
    if accepted.sha256 == sha256:
        return f"accepted on {when(accepted.at)}"
    return (
        f"changed since it was accepted on {when(accepted.at)} "
        f"(sha256 {accepted.sha256} then): no run obeys it until you accept it"
    )


def accept(read: PolicyFile, *, now: float | None = None) -> Acceptance:
    """Record that a human accepted ``read``'s bytes for its file (its real path).

    Raises:
        ConfigError: asked from inside a run's step, or the file of accepted hashes
            cannot be read or written.
    """
    from trestle.trust.step_origin import inside_a_step

    inside = inside_a_step()
    if inside is not None:
        raise ConfigError(
            f"{read.path}: a policy file cannot be accepted from inside a running step ({inside})"
        )
    done = Acceptance(read.sha256, time.time() if now is None else now)
    with _locked():
        held = acceptances()
        held[_accepted_as(read.path)] = done
        _write(held)
    return done


def _accepted_as(path: Path) -> str:
    """The name a file's acceptance is kept under: its real path, or, for a link, the
    link's own (absolute) name. Kept under the target alone, a link a step made
    (``sub/trestle.toml`` pointing at a policy you accepted for another project) was
    obeyed as that one."""
    named = Path(os.path.abspath(path))
    return str(named.parent.resolve() / named.name) if named.is_symlink() else str(path.resolve())


def acceptances() -> dict[str, Acceptance]:
    """The accepted hashes, by the real path of each file ({} before the first)."""
    path = accepted_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        return {
            str(name): Acceptance(_checked_digest(entry["sha256"], name), float(entry["at"]))
            for name, entry in files.items()
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as exc:
        raise ConfigError(
            f"{path}: the accepted policy files cannot be read ({exc}); move it away and "
            "accept your policy files again with `trestle policy accept`"
        ) from None


def accepted_file() -> Path:
    return config_dir() / ACCEPTED_FILE


def _write(held: dict[str, Acceptance]) -> None:
    """Replace the file whole (a reader sees the old or the new, never half), 0600."""
    path = accepted_file()
    data = {
        "version": 1,
        "files": {name: {"sha256": a.sha256, "at": a.at} for name, a in sorted(held.items())},
    }
    try:
        write_whole(path, json.dumps(data, indent=1), sync=True)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot record the accepted policy: {exc}") from None


@contextmanager
def _locked() -> Iterator[None]:
    """One writer at a time: two acceptances at once both count."""
    directory = accepted_file().parent
    with ExitStack() as held:
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            held.enter_context(locked(directory / f"{ACCEPTED_FILE}.lock"))
        except OSError as exc:
            raise ConfigError(f"{directory}: cannot record the accepted policy: {exc}") from None
        yield


def _checked_digest(value: str, where: str) -> str:
    digest = value.strip().lower()
    if not SHA256.fullmatch(digest):
        raise ConfigError(f"{where}: {value!r} is not a SHA-256 (64 hex digits)")
    return digest


def _refuse_a_policy_left_behind(workspace: Path) -> None:
    """Refuse a run that found no ``trestle.toml`` where a policy file you accepted lies
    on the way up from ``workspace``: gone (a step of a run in a directory above
    deleted it), or above the ``.git`` the search stopped at (a step can make one where
    there was none: ``: > .git`` in its workspace). Either way the next run obeyed no
    policy, and an approval it asked for was not asked."""
    accepted = acceptances()
    if not accepted:
        return
    stop = _project_root(workspace)
    here = workspace.resolve()
    for directory in (here, *here.parents):
        candidate = directory / POLICY_FILE
        if str(candidate) not in accepted:
            continue
        if not candidate.is_file():
            raise PolicyNotAcceptedError(
                f"{candidate}, a policy file you accepted, is gone: a run's step could have "
                "removed it to leave your policy behind, and the run did not start. Put it "
                f"back; if you removed it, `trestle policy forget {candidate}`"
            )
        raise PolicyNotAcceptedError(
            f"{stop / '.git'} ends the search for {POLICY_FILE} at {stop}, but {candidate}, "
            "a policy file you accepted, lies above it: a run's step could have made that "
            ".git to leave your policy behind, and the run did not start. Remove it if it "
            f"is not yours; if it is, name the policy (--policy {candidate}) or give {stop} "
            f"a {POLICY_FILE} of its own"
        )


def _refuse_a_workspace_led_elsewhere(workspace: Path, found: Path | None) -> None:
    """Refuse a run whose workspace, as named, leads elsewhere through a link, where
    the policy file found on the way up as named is not the one found where it leads:
    a step of a run in B made ``B/sub`` a link to another project's ``A/sub``, and the
    next run in ``B/sub`` obeyed A's accepted, permissive policy instead of B's."""
    where = _as_named(workspace)
    named = find_policy_file(where, resolved=False)
    same = (named is None and found is None) or (
        named is not None and found is not None and named.resolve() == found.resolve()
    )
    if not same:
        raise PolicyNotAcceptedError(
            f"{where} leads to {where.resolve()} through a link, and the policy file found "
            f"above it as named ({named or 'none'}) is not the one found above where it "
            f"leads ({found or 'none'}): a run's step could have made that link, and the "
            f"run did not start. Name the workspace by its real path ({where.resolve()}) "
            "if the link is yours"
        )


def _as_named(path: Path) -> Path:
    """``path`` made absolute as the user named it: a relative one from the shell's
    ``$PWD`` when that is this process's directory (whose own name has every link
    resolved: ``cd B/sub`` where ``sub`` leads to ``A/sub`` is ``A/sub`` to it)."""
    if path.is_absolute():
        return Path(os.path.normpath(path))
    pwd = os.environ.get("PWD", "")
    try:
        here = pwd if os.path.isabs(pwd) and os.path.samefile(pwd, ".") else os.getcwd()
    except OSError:
        here = os.getcwd()
    return Path(os.path.normpath(os.path.join(here, path)))


def forget(path: Path) -> bool:
    """Forget that a human accepted the file at ``path``; whether an acceptance was
    recorded for it.

    Raises:
        ConfigError: asked from inside a run's step, or the record cannot be written.
    """
    from trestle.trust.step_origin import inside_a_step

    inside = inside_a_step()
    if inside is not None:
        raise ConfigError(
            f"{path}: an acceptance cannot be forgotten from inside a step ({inside})"
        )
    with _locked():
        held = acceptances()
        gone = held.pop(_accepted_as(path), None)
        if gone is not None:
            _write(held)
    return gone is not None


def _project_root(workspace: Path) -> Path:
    """The repository holding the workspace (its first parent with ``.git``), else the
    workspace: where this run's steps, or an earlier run's, could write."""
    here = workspace.resolve()
    for directory in (here, *here.parents):
        if (directory / ".git").exists():
            return directory
    return here


def _within(parent: Path, path: Path) -> bool:
    return path == parent or parent in path.parents
