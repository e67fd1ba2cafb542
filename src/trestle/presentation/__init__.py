"""Presentation: the words and descriptions that the CLI and the dashboard share, and
redaction of secrets in text shown.
"""
