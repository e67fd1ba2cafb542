"""The workspace's files and history: checkpoints, git, files opened beneath a root."""
