"""Secrets kept out of what a model reads.

A tool's output, a failing check's output and a test command's output go back to the
model, and from there to a provider outside the machine. Whatever a step could print,
an API key in the driver's environment or a token in a workspace file, is replaced
here before any text is sent: the values of secret-named environment variables the
driver can see, and text shaped like a well-known credential wherever it came from.

Pure: the caller passes the environment in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|PRIVATE|DSN",
    re.IGNORECASE,
)
"""Environment variable names whose values are treated as secrets."""

MIN_SECRET_LENGTH = 8
"""Shorter values (``1``, ``true``, a port) would redact ordinary text and protect nothing."""

_SHAPES = re.compile(
    r"""
    -----BEGIN[ A-Z]*PRIVATE\ KEY-----[\s\S]*?(?:-----END[ A-Z]*PRIVATE\ KEY-----|\Z)
    | \bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}          # OpenAI, Anthropic
    | \bgh[pousr]_[A-Za-z0-9]{30,}                     # GitHub tokens
    | \bgithub_pat_[A-Za-z0-9_]{30,}
    | \bxox[abposr]-[A-Za-z0-9-]{10,}                  # Slack
    | \b(?:AKIA|ASIA)[0-9A-Z]{16}\b                    # AWS access key ids
    | \bAIza[0-9A-Za-z_-]{35}                          # Google API keys
    | \bglpat-[A-Za-z0-9_-]{20,}                       # GitLab
    | \bnpm_[A-Za-z0-9]{36}
    | \bpypi-[A-Za-z0-9_-]{50,}
    """,
    re.VERBOSE,
)


# Every shape above begins with one of these (the pattern is case-sensitive): a text
# holding none of them cannot match, and ``str.__contains__`` finds that out far
# faster than the pattern, which tries each of its alternatives at every position.
_SHAPE_STARTS = (
    "-----BEGIN",
    "sk-",
    "github_pat_",
    "xox",
    "AKIA",
    "ASIA",
    "AIza",
    "glpat-",
    "npm_",
    "pypi-",
)
# nor any of the five GitHub token prefixes (ghp_ gho_ ghu_ ghs_ ghr_): one search for
# the literal "gh" they share, where five scans of the whole text took five times as long
_GITHUB_START = re.compile(r"gh[pousr]_")


def secret_values(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment's secrets: value -> the variable that holds it. A value that is
    an absolute path (``SSH_AUTH_SOCK``, ``TRESTLE_KEY_FILE``) names where a secret is,
    is not one, and redacting it would garble every path the model reads."""
    found: dict[str, str] = {}
    for name, value in sorted(environ.items()):
        value = value.strip()
        long_enough = len(value) >= MIN_SECRET_LENGTH
        if SECRET_NAME.search(name) and long_enough and not value.startswith("/"):
            found.setdefault(value, name)
    return found


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """``text`` with every known secret value and every credential-shaped string
    replaced by a marker naming what was there (never the value)."""
    if not text:
        return text
    for value in sorted(secrets, key=len, reverse=True):  # a longer secret may hold a shorter
        if value in text:
            text = text.replace(value, f"[redacted: ${secrets[value]}]")
    if not any(start in text for start in _SHAPE_STARTS) and not _GITHUB_START.search(text):
        return text
    return _SHAPES.sub("[redacted: credential]", text)
