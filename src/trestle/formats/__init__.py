"""File formats a person writes: plan files, the trestle.toml policy file, ages."""
