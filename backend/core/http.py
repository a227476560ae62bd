"""Request guards applied before any view (JSON content type, nesting depth) and security headers on every response."""

from __future__ import annotations

from typing import Any

from apiflask import APIFlask
from flask import Response, request

from backend.core.errors import error_response
from backend.core.validation import NUL

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# No request body of this API nests deeper than a few levels; deeper input is hostile or broken.
MAX_JSON_DEPTH = 32
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_SECURITY_HEADER_ITEMS = [(name.lower(), name, value) for name, value in SECURITY_HEADERS.items()]


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


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _takes_body(app: APIFlask, endpoint: str) -> bool:
    """Whether the view declares a JSON body (`@bp.input(...)` in the json location)."""
    spec = getattr(app.view_functions.get(endpoint), "_spec", None) or {}
    return bool(spec.get("body"))


def require_documented_bodies(spec: dict[Any, Any] | str) -> dict[Any, Any] | str:
    """Mark every request body of the OpenAPI document required: the guard refuses a missing one (415)."""
    if isinstance(spec, str):  # only with SPEC_PROCESSOR_PASS_OBJECT, which this app does not set
        return spec
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"]["required"] = True
    return spec


def _refuse_nul_in_path() -> Response | None:
    """404 for a NUL character in a path variable: no stored id can hold one (PostgreSQL text refuses NUL), and
    asking the database would fail instead of answering. Bodies and query strings are checked by the schemas."""
    fields = [name for name, value in (request.view_args or {}).items() if NUL in str(value)]
    if not fields:
        return None
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None  # WebSocket clients get their protocol's error frame and close code, never an HTTP error
    return error_response(404, "not_found", "No resource has a NUL character in its id", {"fields": fields})


def register_request_guards(app: APIFlask) -> None:
    """415 for a body that is not JSON, before validation runs (APIFlask parses any body as JSON)."""
    previous = app.spec_callback
    if previous is None:
        app.spec_callback = require_documented_bodies
    else:  # chained: APIFlask keeps a single spec processor
        app.spec_callback = lambda spec: require_documented_bodies(previous(spec))

    @app.before_request
    def require_json_body() -> Response | None:
        if request.method not in BODY_METHODS or request.endpoint is None:
            return None
        if not _has_body() and not _takes_body(app, request.endpoint):
            return None  # an action route without input (a POST that only names its target)
        if _is_json(request.mimetype):
            return _check_json_body()
        return error_response(
            415,
            "unsupported_media_type",
            "Request body must be JSON (Content-Type: application/json)",
            {"content_type": request.mimetype or None},
        )

    @app.before_request
    def refuse_nul_in_path() -> Response | None:
        return None if request.endpoint is None else _refuse_nul_in_path()

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        # One pass over the names (setdefault scans them and raises KeyError once per missing header).
        present = {name.lower() for name in headers.keys()}  # noqa: SIM118 (Headers iterates (name, value) pairs)
        for lowered, name, value in _SECURITY_HEADER_ITEMS:
            if lowered not in present:
                headers.add(name, value)
        return response
