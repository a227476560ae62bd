"""`GET /dashboard`: the live quality page (static HTML/JS/CSS in `static/dashboard/`, nothing from the internet)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, request, send_from_directory

STATIC_DIR = Path(__file__).resolve().parent / "static" / "dashboard"

bp = Blueprint("sqal_dashboard_page", __name__, static_folder=str(STATIC_DIR), static_url_path="/dashboard/static")


def content_security_policy(host: str) -> str:
    """Same-origin only: scripts, styles, fetches and the dashboard WebSocket of this host."""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' ws://{host} wss://{host}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@bp.get("/dashboard", strict_slashes=False)
def dashboard_page() -> Response:
    """The page; its script loads the REST figures, then follows `/ws/dashboard/`."""
    response = send_from_directory(STATIC_DIR, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = content_security_policy(request.host)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
