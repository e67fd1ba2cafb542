"""Operating a store: its doctor, pruning old runs, and the health of runs in it."""
