"""The coding agent's plan: its rounds of planning, work, review and acceptance, as pure
functions of the run's state, shared by the agent's performer and the engines.
"""
