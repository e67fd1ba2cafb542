"""Coordination between runs: groups of runs, and the board and mailboxes their agents write to."""
