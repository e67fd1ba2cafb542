"""Coordination between runs: groups, and the board and mailboxes their agents use."""
