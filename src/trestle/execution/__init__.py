"""Executing an attempt: actions, checks, processes, the sandbox and the watchdog.

Also the files a command names (what an approval binds) and the pinned bytes a
``python:`` step imports.
"""
