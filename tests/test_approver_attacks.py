"""The team-approval files, attacked from inside a step, as root and as a normal user
(the drivers of :mod:`test_boundary`).

A hostile ``run:`` step tries to read the approver's identity key, the decision key,
``notify.toml`` and ``notifications.sqlite``; to write an ``identity.key``, a
``notify.toml`` or an accepted policy into the configuration directory; to add a row
to the store; and to plant a ``trestle.toml`` whose ``[policy.groups]`` and
``[[policy.approvers]]`` name a key of its own. Each attempt that works appends
``GOT <what>`` to ``got.txt``. From outside, the test then checks that the
configuration directory is as it was, that the run's resume still judges by the policy
it started under, and that a new run does not obey the planted file unaccepted.
"""

from __future__ import annotations

import os
from pathlib import Path

from test_approvals_cli import Cli, flat, run_id_of
from test_boundary import Target, UserCli, _chown_tree, _plan, driver
from test_sandbox import SECRET

__all__ = ["driver"]  # the fixture, shared

PLANTED_KEY = "ed25519:" + "ee" * 32
PLANTED = " ".join(
    f"'{line}'"
    for line in ("[policy.groups.mine]", f'me = "{PLANTED_KEY}"', "[[policy.approvers]]")
)


def _config(target: Target) -> dict[str, str]:
    """What a step must not read in the configuration directory, each holding SECRET."""
    config = target.host / "home" / ".config" / "trestle"
    files = {
        "identity key": "identity.key",
        "decision key": "approval.key",
        "notify.toml": "notify.toml",
        "notifications ledger": "notifications.sqlite",
    }
    for name in files.values():
        (config / name).write_text(_content(name))
        (config / name).chmod(0o600)
    return {what: str(config / name) for what, name in files.items()}


def _content(name: str) -> str:
    """SECRET as each file holds it: a key's hex, else a TOML comment."""
    return SECRET if name.endswith(".key") else f"# {SECRET}\n"


def _attacks(target: Target, store: str, read: dict[str, str]) -> dict[str, str]:
    config = target.host / "home" / ".config" / "trestle"
    insert = (
        f"import sqlite3; c = sqlite3.connect({store!r}); "
        "c.execute('create table pwned(x)'); c.commit()"
    )
    return {
        **{f"read the {what}": f"grep -q {SECRET} {path}" for what, path in read.items()},
        "write identity.key": f"echo {'ab' * 32} > {config / 'identity.key'}",
        "write notify.toml": f"echo '[x]' > {config / 'notify.toml'}",
        "accept a policy": f"echo '{{}}' > {config / 'accepted-policies.json'}",
        "a row in the store": f'test -s {store} && {target.python} -c "{insert}"',
        "plant trestle.toml": (
            f"printf '%s\\n' {PLANTED} 'groups = [\"mine\"]' > trestle.toml && test -s trestle.toml"
        ),
    }


def test_a_step_cannot_make_itself_an_approver_as_root_or_as_a_user(
    driver: tuple[UserCli, Target],
) -> None:
    cli, target = driver
    read = _config(target)
    owner = os.stat(target.host / "home").st_uid
    _chown_tree(target.host / "home", owner)
    tried = _attacks(target, str(cli.store), read)
    cli.write("plan.yaml", _plan(tried, "become an approver", after=True))
    _chown_tree(cli.dir, owner)
    started = cli("run", "plan.yaml")
    assert started.returncode == 3, started.stdout + started.stderr
    run_id = run_id_of(started)
    assert (cli.dir / "ran.txt").exists(), "the probe step did not run"
    # a write may land in what the sandbox shows in the hidden directory's place (a
    # private tmpfs, gone with the step): only what reached the host counts
    writes = {"GOT write identity.key", "GOT write notify.toml", "GOT accept a policy"}
    got = [g for g in cli.lines("got.txt") if g not in {*writes, "GOT plant trestle.toml"}]
    assert got == [], f"{len(got)} of {len(tried)} attacks worked: {got}"
    for path in read.values():  # nothing written over
        assert Path(path).read_text() == _content(path), path
    assert not (target.host / "home" / ".config" / "trestle" / "accepted-policies.json").exists()

    # the workspace is the step's: a planted policy file is there, and is not obeyed
    planted = cli.dir / "trestle.toml"
    assert PLANTED_KEY in planted.read_text()
    resumed = cli("resume", run_id)  # judged by the policy the run started under
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    [card] = Cli.json(cli, "inbox", "--run", run_id)
    assert card["status"] == "pending" and not card.get("may_decide")
    again = cli("run", "plan.yaml")
    assert again.returncode == 9, again.stdout + again.stderr
    assert "a policy file no one has accepted" in flat(again.stderr)
    assert not (cli.dir / "pushed.txt").exists()
