"""Presentation: the words the CLI and the dashboard share, and redaction of secrets."""
