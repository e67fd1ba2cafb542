"""Who may decide: the approval key, the step a caller stands in, the policy trusted."""
