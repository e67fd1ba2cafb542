"""Starting the dashboard: bind, print the login URL, serve until stopped.

The socket is bound before the URL is printed, so the URL's port is the one that
answers (``--port 0`` takes any free port) and a script can read the URL and use it.

The dashboard speaks plain HTTP. On loopback that stays on this machine; bound to any
other address, the login token and the session cookie cross the network in clear, so
starting there is said loudly (:func:`exposure_warning`).
"""

from __future__ import annotations

import getpass
import ipaddress
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

from trestle.core.errors import MissingExtraError
from trestle.dashboard.accounts import SERVED_AT, Lifetimes
from trestle.store.location import where_shown

WILDCARDS = ("0.0.0.0", "::", "")
SHUTDOWN_GRACE = 2  # seconds


def require_extra() -> None:
    """MissingExtraError naming ``pip install "trestle-runtime[ui]"`` when a part is missing."""
    import importlib.util

    for module, package in (
        ("fastapi", "fastapi"),
        ("uvicorn", "uvicorn"),
        ("jinja2", "jinja2"),
        ("multipart", "python-multipart"),
    ):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingExtraError(package, "ui")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    store: str | Path,
    *,
    host: str,
    port: int,
    runs: frozenset[str] | None,
    say: Callable[[str], None],
    warn: Callable[[str], None],
    lifetimes: Lifetimes | None = None,
) -> None:
    """Serve the dashboard over ``store`` until interrupted; ``say`` prints the URL,
    ``warn`` says that it is exposed beyond this machine. The invited people log in
    too (:mod:`trestle.dashboard.accounts`), their sessions lasting ``lifetimes``."""
    require_extra()
    import uvicorn

    from trestle.dashboard.accounts import Accounts
    from trestle.dashboard.app import Settings, create_app
    from trestle.dashboard.security import Gate, allowed_hosts

    sock = bind(host, port)
    bound, port = sock.getsockname()[:2]
    warning = exposure_warning(bound, port)
    if warning is not None:
        warn(warning)
    shown = host
    extra: list[str] = []
    if host in WILDCARDS:
        shown = socket.gethostname()
        extra = [socket.gethostname(), socket.getfqdn()]
    accounts = Accounts(lifetimes=lifetimes)
    gate = Gate(user=_user(), hosts=allowed_hosts(host, port, extra), runs=runs, accounts=accounts)
    app = create_app(Settings(store=store, gate=gate))
    where = f"[{shown}]" if ":" in shown else shown
    base = f"http://{where}:{port}/"
    try:  # where `trestle people invite` sends people
        accounts.remember(SERVED_AT, base)
    except (OSError, sqlite3.Error) as exc:
        warn(
            f"warning: {accounts.path}: cannot note this address for invitations ({exc}); "
            "give it to `trestle people invite NAME --url` instead"
        )
    say(f"dashboard for {where_shown(store)} at {base}")
    say(f"log in (once) with: http://{where}:{port}/login?token={gate.login_token}")
    # live streams never end on their own: on Ctrl-C or SIGTERM, give requests a moment,
    # then close what is still open, instead of waiting for every browser to leave
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
    )
    uvicorn.Server(config).run(sockets=[sock])


def exposure_warning(bound: str, port: int) -> str | None:
    """What to say about a dashboard listening on the address ``bound``; None on
    loopback, where nothing leaves this machine."""
    address = ipaddress.ip_address(bound.partition("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
    if address.is_loopback or (mapped is not None and mapped.is_loopback):
        return None
    where = "every address of this machine" if address.is_unspecified else bound
    return (
        f"warning: the dashboard listens on {where}, over plain HTTP: the login token "
        "in the URL below and the session cookie it gives cross the network in clear, "
        "and whoever reads them can approve and cancel as you. The cookie cannot be "
        "marked Secure without HTTPS. To reach it from another machine, keep it on "
        f"127.0.0.1 and use an SSH tunnel: ssh -L {port}:127.0.0.1:{port} THIS-HOST, "
        f"then open http://127.0.0.1:{port}/ there."
    )


def _user() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "user"
    return f"{user}@{socket.gethostname()}"
