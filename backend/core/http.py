"""Request guards applied before any view (JSON content type, nesting depth) and security headers on every response."""

from __future__ import annotations

from typing import Any

from apiflask import APIFlask
from flask import Response, request

from backend.core.errors import error_response

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# No request body of this API nests deeper than a few levels; deeper input is hostile or broken.
MAX_JSON_DEPTH = 32
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def _check_json_body() -> Response | None:
    """Parse the body once (Flask caches it for the view) and refuse input nested too deep."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        body = None
        depth = MAX_JSON_DEPTH + 1
    else:
        depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        return error_response(
            400, "json_too_deep", f"JSON body nests deeper than {MAX_JSON_DEPTH} levels", {"max_depth": MAX_JSON_DEPTH}
        )
    return None


def register_request_guards(app: APIFlask) -> None:
    """415 for a body that is not JSON, before validation runs (APIFlask parses any body as JSON)."""

    @app.before_request
    def require_json_body() -> Response | None:
        if request.method not in BODY_METHODS or request.endpoint is None:
            return None
        if _is_json(request.mimetype):
            return _check_json_body()
        return error_response(
            415,
            "unsupported_media_type",
            "Request body must be JSON (Content-Type: application/json)",
            {"content_type": request.mimetype or None},
        )

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
