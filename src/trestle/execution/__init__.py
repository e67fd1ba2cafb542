"""Executing an attempt: a step's action and checks, their processes, the sandbox around
them, the watchdog, and the files a command names or a python: step imports.
"""
