"""The pure core: plans, events and their records, the fold, the decider and policies.

Everything here is a function of its inputs: no IO, no clock, no asyncio, no store, no
model SDK, no terminal. The engines (``trestle.engines``) drive it, and the store, the
agent, monitors, models, tools and the CLI sit around it. It imports nothing of
Trestle from outside this package, so it loads and runs alone; the import contract in
``pyproject.toml`` (``lint-imports``, part of ``make lint``) keeps it so.
"""
