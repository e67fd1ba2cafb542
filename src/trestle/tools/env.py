"""The environment a model's commands run in: the parent's, minus its secrets.

A command the model writes can print its environment, and whatever it prints goes
back to the model (and, through it, possibly to a provider's logs). So API keys,
tokens and passwords are removed before any such command starts. The rules err on the
side of removing: a command that needs a credential should get it another way (a
file the user points it to), not from Trestle's own environment.

A variable is removed when

- its name contains one of :data:`SECRET_NAME_PARTS` (``API_KEY``, ``GITHUB_TOKEN``,
  ``DB_PASSWORD``, ``SSH_AUTH_SOCK``, ...), or
- its name starts with one of :data:`SECRET_NAME_PREFIXES` (every ``AWS_*``,
  ``OPENAI_*``, ``ANTHROPIC_*``, ... variable), or
- its value is a URL with a password in it (``postgres://user:pw@host/db``).

Names are compared in upper case.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

SECRET_NAME_PARTS = (
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "SESSION",
    "PRIVATE",
    "SIGNATURE",
    "DSN",
)
SECRET_NAME_PREFIXES = (
    "AWS_",
    "AZURE_",
    "GOOGLE_",
    "GCP_",
    "GCLOUD_",
    "OPENAI_",
    "ANTHROPIC_",
    "MISTRAL_",
    "COHERE_",
    "GROQ_",
    "GEMINI_",
    "HF_",
    "HUGGING",
    "GITHUB_",
    "GH_",
    "GITLAB_",
    "NPM_",
    "PYPI_",
    "TWINE_",
    "DOCKER_",
    "SLACK_",
    "STRIPE_",
    "DATABASE_",
    "VAULT_",
)
_URL_WITH_PASSWORD = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:[^/\s@]+@")


def is_secret(name: str, value: str = "") -> bool:
    """Whether the variable ``name`` (with ``value``) is kept out of commands."""
    upper = name.upper()
    return (
        any(part in upper for part in SECRET_NAME_PARTS)
        or upper.startswith(SECRET_NAME_PREFIXES)
        or _URL_WITH_PASSWORD.search(value) is not None
    )


def command_env(
    *,
    run_id: str,
    step_id: str,
    workspace: str,
    parent: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for a model's command.

    Args:
        run_id: exported as ``TRESTLE_RUN_ID``.
        step_id: exported as ``TRESTLE_STEP_ID``.
        workspace: exported as ``TRESTLE_WORKSPACE``.
        parent: the environment to start from; this process's by default.

    Returns:
        ``parent`` without its secrets (see the module docstring), plus the
        ``TRESTLE_*`` variables above.
    """
    source = os.environ if parent is None else parent
    env = {name: value for name, value in source.items() if not is_secret(name, value)}
    env.update(TRESTLE_RUN_ID=run_id, TRESTLE_STEP_ID=step_id, TRESTLE_WORKSPACE=workspace)
    return env
