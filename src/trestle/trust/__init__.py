"""Who may decide: the approval key that signs decisions, the step a caller stands in, and
the policy file a run obeys.
"""
