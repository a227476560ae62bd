"""bugs domain (being built: see its issue)."""

from __future__ import annotations

from apiflask import APIFlask


def init_app(app: APIFlask) -> None:
    """Register the domain's routes, seeders and CLI commands."""
