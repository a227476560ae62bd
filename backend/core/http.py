"""Request guards applied before any view: JSON content type on bodies."""

from __future__ import annotations

from apiflask import APIFlask
from flask import Response, request

from backend.core.errors import error_response

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def register_request_guards(app: APIFlask) -> None:
    """415 for a body that is not JSON, before validation runs (APIFlask parses any body as JSON)."""

    @app.before_request
    def require_json_body() -> Response | None:
        if request.method not in BODY_METHODS or request.endpoint is None:
            return None
        if _is_json(request.mimetype):
            return None
        return error_response(
            415,
            "unsupported_media_type",
            "Request body must be JSON (Content-Type: application/json)",
            {"content_type": request.mimetype or None},
        )
