"""Monitors: watch a run's event stream for failure modes and act on what they find."""
