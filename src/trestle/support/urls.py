"""Whether a URL is a server's address a client could open, said before anything is
recorded or sent (``http://[::1`` and a port past 65535 crashed the clients that met
them: the model's, the webhook's)."""

from __future__ import annotations

import urllib.parse


def url_problem(url: str) -> str | None:
    """What makes ``url`` no server's address a client could open, or None."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http:// or https:// address"
    if port == 0:
        return "port 0"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return "it holds a space or a control character"
    return None
