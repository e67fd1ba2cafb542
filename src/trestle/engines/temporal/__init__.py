"""The Temporal engine: a workflow per run drives the pure core; activities do the store,
the key, the workspace and each attempt; a worker serves a task queue."""
