"""Small pydantic building blocks shared by the domains' schemas."""

from __future__ import annotations


def not_blank(value: str) -> str:
    """Reject strings made only of whitespace (length limits are the Field's job)."""
    if not value.strip():
        raise ValueError("must not be blank")
    return value
