"""The run's lifecycle: creating a run, and every decision about it (approve, retry, skip,
tell, cancel, a budget raise, a rewind) made through the store.
"""
