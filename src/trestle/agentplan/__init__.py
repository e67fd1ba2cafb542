"""The coding agent's plan, pure: its rounds of planning, work, review and acceptance.

Functions of the run's state, shared by the agent's performer and the Temporal
workflow, which may not import the agent's runtime.
"""
