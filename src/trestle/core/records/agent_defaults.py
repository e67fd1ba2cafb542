"""The agent's default limits, apart from its settings (:mod:`trestle.core.records.agent`)
so the CLI can show them in ``--help`` without importing the agent's records."""

DEFAULT_STEP_TIMEOUT = 1800.0  # seconds: half an hour per attempt of an agent step
DEFAULT_MAX_TOKENS = 4096  # the most tokens one model answer may have: its cap and its reserve
