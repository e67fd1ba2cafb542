"""File formats a person writes: plan files and the trestle.toml policy file."""
