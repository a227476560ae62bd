"""Request guards applied before any view (JSON content type, nesting depth) and security headers on every response."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, TypeVar

from apiflask import APIFlask
from flask import Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from backend.base.errors import error_response
from backend.core.validation import NUL

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Largest body of a route that declares none with `body_limit`: every such body here is a few short fields.
DEFAULT_BODY_LIMIT = 16 * 1024
# Longest JSON spelling of one character of a string: an escaped surrogate pair such as `\ud83d\ude00`.
JSON_BYTES_PER_CHARACTER = 12
BODY_LIMIT_ATTRIBUTE = "_body_limit"
# No request body of this API nests deeper than a few levels; deeper input is hostile or broken.
MAX_JSON_DEPTH = 32
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_SECURITY_HEADER_ITEMS = [(name.lower(), name, value) for name, value in SECURITY_HEADERS.items()]

F = TypeVar("F", bound=Callable[..., Any])


def body_limit(limit: int) -> Callable[[F], F]:
    """Decorate a view (under its route decorator) to accept bodies up to `limit` bytes instead of
    DEFAULT_BODY_LIMIT; MAX_CONTENT_LENGTH stays the ceiling. Beyond it: 413 before the body is read."""

    def decorator(view: F) -> F:
        setattr(view, BODY_LIMIT_ATTRIBUTE, limit)
        return view

    return decorator


def json_text_bytes(*max_lengths: int, overhead: int = 1024) -> int:
    """The largest JSON body holding strings of these maximum lengths, every character escaped, plus `overhead`
    for the field names, other values and whitespace: the `body_limit` of a route with long text fields."""
    return JSON_BYTES_PER_CHARACTER * sum(max_lengths) + overhead


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


def _is_chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _has_body() -> bool:
    return bool(request.content_length) or _is_chunked()


def _bound_chunked_body(limit: int) -> None:
    """Read a chunked body here, at most `limit` bytes, and give the view that bounded copy; 413 beyond.

    Gunicorn marks a chunked body `wsgi.input_terminated`, and werkzeug then applies no `max_content_length` at
    all (it trusts the server to have limited the stream, which gunicorn does not): without this, any size is read.
    """
    environ = request.environ
    data = environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(data)


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
        # Per route: reading more than its largest real body raises 413 (declared length or chunked stream).
        limit = getattr(app.view_functions.get(request.endpoint), BODY_LIMIT_ATTRIBUTE, DEFAULT_BODY_LIMIT)
        request.max_content_length = limit = min(limit, app.config["MAX_CONTENT_LENGTH"] or limit)
        if _is_chunked() and "stream" not in request.__dict__:  # the stream is read only once, here
            _bound_chunked_body(limit)
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
