"""The records features add to the core: what an agent's and a monitor's events carry.

A feature's logic and IO live outside the core (``trestle.agent``,
``trestle.monitors``); the records its events hold live here, so the core folds and
replays every event without loading the feature.
"""
