"""Checking an agent run's model before anything is recorded or driven: ``trestle
agent`` checks the model it is given, ``trestle resume`` the model the run is bound to
(or is being pointed at)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trestle.core.errors import ConfigError, MissingKeyError, ModelBindingError

if TYPE_CHECKING:
    from trestle.core.records.agent import AgentSettings


def check_model(settings: AgentSettings, *, run_id: str | None = None) -> None:
    """Build the model once before anything is recorded or driven: a bad spec, a missing
    key or a base URL where nothing listens is the user's error, said at once. For a
    run being resumed (``run_id``) the error names the resume options that fix it."""
    from trestle.agent.runtime import settings_model
    from trestle.models.guard import may_connect
    from trestle.models.provider import unreachable
    from trestle.support.urls import url_problem

    bad = None if settings.base_url is None else url_problem(settings.base_url)
    if bad is not None:
        raise ConfigError(f"--base-url {settings.base_url!r} is not a server's address: {bad}")
    try:
        settings_model(settings)
    except MissingKeyError as exc:
        raise ConfigError(
            f"{exc.provider}: no API key for model {exc.model!r}: set {exc.env}, or name "
            "the variable that holds it with --api-key-env NAME (a local server at "
            "--base-url needs none)"
        ) from None
    if settings.base_url is not None and may_connect(settings.base_url):
        wrong = unreachable(settings.base_url)
        if wrong is not None and run_id is not None:
            raise ModelBindingError(run_id, f"its model's server: {wrong}", "unreachable")
        if wrong is not None:
            raise ConfigError(f"--base-url: {wrong}")
