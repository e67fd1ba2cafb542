"""The workspace's files and history: the checkpoint repository beside a store, git on the
workspace, and opening files beneath a root.
"""
