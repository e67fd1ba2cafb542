"""``trestle people invite|list|logout|remove``: who may log in to the dashboard with a
name and password, each deciding with a key of their own (:mod:`trestle.dashboard.accounts`)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from trestle.cli.console import _out

people_app = typer.Typer(
    help="The dashboard's people: invite a teammate, list them and their public keys, "
    "log them out everywhere, remove them.",
    rich_markup_mode=None,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The person's name (like alice).")]


@people_app.command("invite")
def invite(
    name: NameArg,
    expires: Annotated[
        str, typer.Option(metavar="AGE", help="How long the invitation works (24h, 30m, 2d).")
    ] = "24h",
    url: Annotated[
        str | None,
        typer.Option(
            help="The dashboard's address [default: the one `trestle ui` last printed].",
        ),
    ] = None,
) -> None:
    """Print a one-time invitation URL for NAME: opening it sets their password and logs
    them in. Invites a new person with a key of their own, or lets one who forgot their
    password set a new one (their key stays, their sessions end)."""
    from trestle.core.errors import ConfigError
    from trestle.dashboard.accounts import SERVED_AT, Accounts
    from trestle.formats.age import parse_age

    _refuse_inside_a_step()
    try:
        lifetime = parse_age(expires)
    except ConfigError as exc:
        raise ConfigError(f"--expires: {exc}") from None
    accounts = Accounts()
    base = url or accounts.recalled(SERVED_AT)
    made = accounts.invite(name, lifetime)
    out = _out()
    link = f"/invite?token={made.token}"
    if base:
        link = base.rstrip("/") + link
    else:
        link = f"http://HOST:PORT{link} (HOST:PORT: where `trestle ui` listens)"
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(made.expires))
    out.print(f"invitation for {name} (works once, until {until}):", markup=False)
    out.print(link, markup=False, soft_wrap=True)
    out.print(
        f'{name}\'s key, for an approver group in trestle.toml: {name} = "{made.public_key}"',
        markup=False,
        soft_wrap=True,
    )


@people_app.command("list")
def list_people() -> None:
    """Every person invited: whether they joined, their live sessions, their public key
    (what [policy.groups] lists)."""
    from trestle.dashboard.accounts import Accounts

    out = _out()
    found = Accounts().people()
    if not found:
        out.print("no people: invite one with `trestle people invite NAME`", markup=False)
    for p in found:
        joined = "joined" if p.joined else "invited"
        live = f"{p.sessions} live session{'s' if p.sessions != 1 else ''}"
        out.print(f"{p.name}  {joined}  {live}  {p.public_key}", markup=False, soft_wrap=True)


@people_app.command("logout")
def logout(name: NameArg) -> None:
    """Log NAME out everywhere: every session of theirs ends at once."""
    from trestle.dashboard.accounts import Accounts

    ended = Accounts().end_all(name)
    _out().print(f"{name}: {ended} session{'s' if ended != 1 else ''} ended", markup=False)


@people_app.command("remove")
def remove(name: NameArg) -> None:
    """Forget NAME: their sessions end, their password and key are deleted (take their
    key out of [policy.groups] too)."""
    from trestle.dashboard.accounts import Accounts

    Accounts().remove(name)
    _out().print(
        f"{name} removed: their sessions ended; remove their key from [policy.groups]",
        markup=False,
    )


def _refuse_inside_a_step() -> None:
    """What a step starts must not make itself a person who can decide."""
    import os

    from trestle.core.errors import ConfigError
    from trestle.trust.step_origin import inside_a_step

    if os.environ.get("TRESTLE_STEP_ID") or inside_a_step() is not None:
        raise ConfigError("people cannot be invited from inside a running step")
