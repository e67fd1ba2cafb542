"""Errors, split by who must act.

    TrestleError
    ├── ConfigError          the user's input is wrong (plan file, config, arguments)
    │   ├── PlanError        a plan file is invalid; carries file, step and field
    │   ├── UnknownRunError  no run with that id (or no such step in it)
    │   ├── UnknownGroupError  no group of runs by that name in the store
    │   ├── NoStoreError     no store where a command that only reads looked for one
    │   ├── PolicyNotAcceptedError  a policy file a step could have written, not accepted
    │   ├── NotConfirmedError  a command that changes the workspace was not confirmed
    │   ├── MissingExtraError  an optional dependency is not installed; names the pip command
    │   ├── MissingKeyError  a provider has no API key; names where it looked
    │   ├── ModelRequestBlockedError  a real network model call while requests are blocked
    │   └── ModelBindingError  an agent run's model cannot be used as bound: its server
    │                          refused the key or cannot be reached; names the resume
    │                          options that point the run elsewhere
    └── RunError             something failed while running
        ├── StoreError       the store cannot be opened, migrated or written
        │   └── StoreDamagedError  the store's file or records are damaged; names what
        │                          is wrong and what can be recovered
        ├── RunCancelledError  the run was cancelled (trestle cancel): it cannot go on
        ├── LeaseHeldError   another live process drives this run
        ├── LeaseLostError   this process lost the run's lease (fenced off)
        ├── ScriptExhaustedError  a scripted model was asked for more replies than it holds
        ├── PhaseError       the agent asked for a phase change the rules do not allow
        ├── PinLostError     a context compression lost a pinned fact (goal, rules, scope)
        └── ProviderError    a model provider failed; carries provider, status and body
            ├── ProviderAuthError         credentials refused (401/403); not retried
            ├── ProviderConnectError      nothing listens at the URL, or its host has no
            │                             address (a wrong base URL); not retried
            ├── ProviderRequestError      the request was refused (400/404/422...); not retried
            ├── ProviderResponseError     the reply could not be understood
            └── ProviderUnavailableError  429/5xx/timeouts outlasted the retry budget

Every error has an ``exit_code`` so the CLI maps it without a lookup table.
"""

from __future__ import annotations

from collections.abc import Sequence


class TrestleError(Exception):
    """Root of every error Trestle raises on purpose."""

    exit_code = 1


class ConfigError(TrestleError):
    """The user's input is wrong; nothing has been run or recorded because of it."""

    exit_code = 2


class PlanError(ConfigError):
    """A plan file is invalid.

    Each problem is shown as ``file:line: where: what`` (``plan.yaml:7: step 'build',
    field 'retries': must be a whole number, not 'many'``), or ``file: ...`` when it
    has no line.

    Args:
        source: the file (or other origin) the plan came from.
        problems: one message per problem, each naming the step and field.
        lines: the 1-based line of each problem in ``source``, None where there is none.
    """

    def __init__(self, source: str, problems: list[str], lines: Sequence[int | None] = ()) -> None:
        self.source = source
        self.problems = problems
        self.lines = [*lines, *[None] * (len(problems) - len(lines))]
        shown = [
            f"{source}:{line}: {p}" if line is not None else f"{source}: {p}"
            for p, line in zip(problems, self.lines, strict=False)
        ]
        super().__init__("\n".join(shown))


class MissingKeyError(ConfigError):
    """A provider has no API key.

    Args:
        provider: ``"openai"``, ``"anthropic"``.
        model: the model asked for.
        env: the environment variable the provider reads its key from.
    """

    def __init__(self, provider: str, model: str, env: str) -> None:
        self.provider, self.model, self.env = provider, model, env
        super().__init__(
            f"{provider}: no API key for model {model!r}: pass api_key= or set {env} "
            "(a local server at a custom base_url needs none)"
        )


class RunError(TrestleError):
    """Something failed while running."""

    exit_code = 1


class StoreError(RunError):
    """The store cannot be opened, migrated or written."""

    exit_code = 4


class StoreDamagedError(StoreError):
    """The store's file or a run's records are damaged.

    Args:
        path: the store file.
        problem: what is wrong, naming the run and seq where there is one.
        recover: what can still be recovered, and how.
        run_id: the damaged run, when the damage is confined to one run.
        heading: what the message says the file is (a file that was never a store,
            such as a plan named by mistake, is not called damaged).
    """

    def __init__(
        self,
        path: object,
        problem: str,
        *,
        recover: str | None = None,
        run_id: str | None = None,
        heading: str = "the store is damaged",
    ) -> None:
        self.path = str(path)
        self.problem = problem
        self.run_id = run_id
        self.recover = recover or (
            f"`trestle doctor --store {self.path}` lists the runs that are intact, and "
            f"`trestle doctor --store {self.path} --salvage NEW.db` copies them to a new store"
        )
        super().__init__(f"{self.path}: {heading}: {problem}; {self.recover}")


class RunCancelledError(RunError):
    """The run was cancelled by a person (``trestle cancel``); it cannot be resumed,
    retried or changed."""

    exit_code = 7


class LeaseHeldError(RunError):
    """Another live process holds the lease on a run."""

    exit_code = 5


class LeaseLostError(RunError):
    """This process no longer holds the run's lease; its writes are refused."""

    exit_code = 5


class UnknownRunError(ConfigError):
    """A run id, or a step within a run, does not exist."""


class UnknownGroupError(ConfigError):
    """No blackboard entry or message of a group by that name in the store."""


class RunExistsError(ConfigError, ValueError):
    """A new run's id is already in the store (a ``ValueError`` too, as it was)."""


class NoStoreError(ConfigError):
    """No store at the path a command was given, or where it looked for one.

    Commands that read never create a store; they say where they looked instead.
    """

    exit_code = 8


class PolicyNotAcceptedError(ConfigError):
    """An operator policy file that a run's step could have written (in the workspace or
    its repository) is new, or changed since a human accepted it: no run obeys it until
    one does (``trestle policy accept``). The message names the file, its SHA-256, what
    changed and the command that accepts it."""

    exit_code = 9


class NotConfirmedError(ConfigError):
    """A command that deletes or overwrites files in the workspace (``trestle rewind``)
    was not confirmed: off a terminal it needs ``--yes``. Nothing was changed."""

    exit_code = 11


class ModelBindingError(ConfigError):
    """An agent run's model cannot be used as the run binds it: its server refused the
    key (HTTP 401/403) or nothing can be reached at its base URL. No attempt is spent on
    it: the drive stops (nothing counted as failed) and the message names the fix,
    ``trestle resume RUN`` with ``--base-url``, ``--api-key-env`` or ``--model``.

    Args:
        run_id: the run.
        problem: what the provider said, naming its base URL.
        cause: the same in a few words, as the run's log records the stop.
    """

    def __init__(self, run_id: str, problem: str, cause: str) -> None:
        self.run_id, self.problem, self.cause = run_id, problem, cause
        super().__init__(
            f"run {run_id}: {problem}. Nothing was counted against its steps' attempts: "
            f"fix it and go on with `trestle resume {run_id}`; if the server moved, "
            f"`trestle resume {run_id} --base-url URL`; for a key kept in another "
            "variable, `--api-key-env NAME`; for another model, `--model PROVIDER:MODEL`"
        )


MODEL_STOP = "the model ({})"  # RunInterrupted.by when the model could not be used


def model_stop(cause: str) -> str:
    """What a drive stopped for a model that cannot be used records as its ``by``."""
    return MODEL_STOP.format(cause)


def model_stopped(by: str | None) -> str | None:
    """The cause, when ``by`` (a RunInterrupted's) says the model could not be used."""
    head, _, tail = MODEL_STOP.partition("{}")
    if by is None or not (by.startswith(head) and by.endswith(tail)):
        return None
    return by[len(head) : len(by) - len(tail)]


class MissingExtraError(ConfigError):
    """An optional dependency is not installed.

    Args:
        package: the importable module that is missing (``"openai"``).
        extra: the Trestle extra that installs it (``"openai"``).
    """

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"the {package!r} package is not installed; "
            f'install it with: pip install "trestle-runtime[{extra}]"'
        )


class ModelRequestBlockedError(ConfigError):
    """A model provider was about to reach a non-loopback address while requests are blocked."""


class ScriptExhaustedError(RunError):
    """A scripted model was asked for a reply after its script ran out."""


class ProviderError(RunError):
    """A model provider failed.

    Args:
        message: what happened, naming the provider and its base URL.
        provider: ``"openai"``, ``"anthropic"``, ...
        status: the HTTP status, or None when no response arrived.
        body: the response body as text, or None when no response arrived.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.body = body
        super().__init__(message)


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (HTTP 401 or 403); retrying cannot help."""


class ProviderConnectError(ProviderError):
    """The provider's URL cannot be reached at all: the connection was refused, or the
    host name does not resolve. A wrong base URL, not a passing outage: not retried."""


class ProviderRequestError(ProviderError):
    """The provider refused the request itself (HTTP 400, 404, 422, ...); not retried."""


class ProviderResponseError(ProviderError):
    """The provider answered, but the answer could not be turned into a response."""


class ProviderUnavailableError(ProviderError):
    """Rate limits, server errors, timeouts or connection failures outlasted the retries.

    ``attempts`` says how many requests were sent; ``status`` and ``body`` describe the last.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        attempts: int,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        self.attempts = attempts
        super().__init__(message, provider=provider, status=status, body=body)


class PhaseError(RunError):
    """The agent runtime asked for a phase change the phase rules do not allow."""


class PinLostError(RunError):
    """A compression (or another rewrite of the conversation) lost a pinned fact."""
