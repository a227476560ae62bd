"""One error shape for every failure: `{"error": {"code", "message", "details"}}` with the right status.

Services raise `ApiError` subclasses (no Flask imports needed); the handlers registered by `register_error_handlers`
render them, APIFlask validation errors, werkzeug HTTP errors and unhandled exceptions alike.
"""

from __future__ import annotations

import logging
from typing import Any

from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from flask import Response, jsonify, request
from psycopg2.errors import QueryCanceled
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from backend.base.orm import db

logger = logging.getLogger(__name__)

# Stable machine-readable codes for the statuses we emit.
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    428: "precondition_required",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
    504: "gateway_timeout",
}

# The error shape as documented in OpenAPI: APIFlask puts HTTP_ERROR_SCHEMA on every 4xx/5xx response a route
# declares and VALIDATION_ERROR_SCHEMA on the 422 of every route with an input (see `register_error_handlers`).
_ERROR_FIELDS = {
    "code": {"type": "string", "description": "Stable machine-readable code, e.g. `not_found`, `malformed_json`"},
    "message": {"type": "string", "description": "Human-readable explanation"},
}


def _error_envelope(fields: dict[str, Any]) -> dict[str, Any]:
    """`{"error": {code, message, details}}` with these field schemas, nothing else allowed."""
    return {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "additionalProperties": False,
                "properties": fields,
            }
        },
    }


HTTP_ERROR_SCHEMA = _error_envelope(
    {**_ERROR_FIELDS, "details": {"description": "Context for the client (any JSON, or null)"}}
)
VALIDATION_ERROR_SCHEMA = _error_envelope(
    {
        **_ERROR_FIELDS,
        "code": {"const": "validation_error"},
        "details": {
            "type": "array",
            "description": "One entry per invalid field",
            "items": {
                "type": "object",
                "required": ["location", "field", "message"],
                "additionalProperties": False,
                "properties": {
                    "location": {"type": "string", "description": "json, query, path or headers"},
                    "field": {"type": "string", "description": "dotted path; `_schema` for the whole input"},
                    "message": {"type": "string"},
                },
            },
        },
    }
)

# Statuses to declare with `@bp.doc(responses=...)`, beyond the route's own (404, 409...). APIFlask adds the 422 of
# an input and the 404 of a path parameter by itself.
# Every API route: the per-client rate limit (429) and an unavailable database or a draining worker (503).
COMMON_ERRORS = (429, 503)
# Every route behind `require_scope`: the API key is missing or unknown (401) or lacks the scope (403).
AUTH_ERRORS = (401, 403, *COMMON_ERRORS)
# Every route with a JSON body, on top: the request guards (400 malformed or too deep, 413 too large, 415 not JSON).
BODY_ERRORS = (400, 413, 415, *AUTH_ERRORS)


class ApiError(Exception):
    """An error meant for the client. Subclasses fix the status and code."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        details: Any = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}
        if code:
            self.code = code


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class UnprocessableEntity(ApiError):
    status, code = 422, "validation_error"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


class GatewayTimeout(ApiError):
    status, code = 504, "gateway_timeout"


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    """Build the JSON error response."""
    response = jsonify({"error": {"code": code, "message": message, "details": details}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _validation_details(detail: Any) -> list[dict[str, Any]]:
    """Flatten APIFlask's `{location: {field: [messages]}}` into a list naming each field."""
    details: list[dict[str, Any]] = []
    if isinstance(detail, dict):
        for location, fields in detail.items():
            if isinstance(fields, dict):
                for name, messages in fields.items():
                    for message in messages if isinstance(messages, list) else [messages]:
                        details.append({"location": location, "field": name, "message": str(message)})
    return details


def _rollback_quietly() -> None:
    try:
        db.session.rollback()
    except Exception:  # the session may be unusable when the DB is gone; the error is already being handled
        logger.debug("rollback after error failed", exc_info=True)


# A statement cancelled at DB_STATEMENT_TIMEOUT_MS: the database is busy or the query too costly for now.
QUERY_TIMEOUT_RETRY_AFTER = 5


def _query_timeout() -> Response:
    return error_response(
        503,
        "query_timeout",
        "The database cancelled the query at its statement timeout: retry later or narrow the request",
        {"retry_after": QUERY_TIMEOUT_RETRY_AFTER},
        {"Retry-After": str(QUERY_TIMEOUT_RETRY_AFTER)},
    )


def register_error_handlers(app: APIFlask) -> None:
    """Render every error as the JSON error shape, and document that shape in the OpenAPI document."""
    app.config["HTTP_ERROR_SCHEMA"] = HTTP_ERROR_SCHEMA
    app.config["VALIDATION_ERROR_SCHEMA"] = VALIDATION_ERROR_SCHEMA

    @app.error_processor
    def handle_apiflask_error(error: HTTPError) -> Response:
        if error.status_code == 422:
            return error_response(
                422, "validation_error", "Request validation failed", _validation_details(error.detail)
            )
        code = STATUS_CODES.get(error.status_code, "error")
        headers: dict[str, str] = dict(error.headers or {})  # type: ignore[arg-type]
        return error_response(error.status_code, code, error.message or code, error.detail or None, headers)

    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        if error.status >= 500:
            _rollback_quietly()
        return error_response(error.status, error.code, error.message, error.details, error.headers)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        headers: dict[str, str] = {}
        if status == 405:
            allowed = getattr(error, "valid_methods", None) or []
            headers["Allow"] = ", ".join(sorted(allowed))
        code = STATUS_CODES.get(status, "error")
        message = error.description or code
        if status == 400 and request.is_json:
            # The only 400 werkzeug raises on a JSON body is a decoding failure.
            code, message = "malformed_json", "Request body is not valid JSON"
        elif status == 404:
            message = f"No route or resource at {request.path}"
        return error_response(status, code, message, None, headers)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        _rollback_quietly()
        logger.error("unhandled exception", exc_info=error, extra={"event": "unhandled_exception"})
        return error_response(500, "internal_error", "Internal server error")

    @app.errorhandler(OperationalError)
    def handle_operational_error(error: OperationalError) -> Response:
        if not isinstance(error.orig, QueryCanceled):
            return handle_unexpected(error)
        _rollback_quietly()
        route = request.url_rule.rule if request.url_rule is not None else None
        logger.warning("query cancelled at the statement timeout", extra={"event": "query_timeout", "route": route})
        return _query_timeout()
