"""Errors, split by who must act.

    TrestleError
    ├── ConfigError          the user's input is wrong (plan file, config, arguments)
    │   ├── PlanError        a plan file is invalid; carries file, step and field
    │   └── UnknownRunError  no run with that id (or no such step in it)
    └── RunError             something failed while running
        ├── StoreError       the store cannot be opened, migrated or written
        ├── LeaseHeldError   another live process drives this run
        └── LeaseLostError   this process lost the run's lease (fenced off)

Every error has an ``exit_code`` so the CLI maps it without a lookup table.
"""

from __future__ import annotations


class TrestleError(Exception):
    """Root of every error Trestle raises on purpose."""

    exit_code = 1


class ConfigError(TrestleError):
    """The user's input is wrong; nothing has been run or recorded because of it."""

    exit_code = 2


class PlanError(ConfigError):
    """A plan file is invalid.

    Args:
        source: the file (or other origin) the plan came from.
        problems: one message per problem, each naming the step and field.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {p}" for p in problems]
        super().__init__("\n".join(lines))


class RunError(TrestleError):
    """Something failed while running."""

    exit_code = 1


class StoreError(RunError):
    """The store cannot be opened, migrated or written."""

    exit_code = 4


class LeaseHeldError(RunError):
    """Another live process holds the lease on a run."""

    exit_code = 5


class LeaseLostError(RunError):
    """This process no longer holds the run's lease; its writes are refused."""

    exit_code = 5


class UnknownRunError(ConfigError):
    """A run id, or a step within a run, does not exist."""
