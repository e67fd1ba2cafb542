"""The run's lifecycle: creating a run, and every decision about it, through the store.

Approve, reject, retry, skip, tell, cancel, a budget raise, a rewind: each is queued
or recorded in the store, signed where a human decides, and the run's driver is woken
through the waker its engine provides (:mod:`.doorbell`); nothing here imports an engine.
"""
