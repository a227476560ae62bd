"""The operations side: who may read /metrics and the details of the health probes.

/metrics names every device and its firmware, /health/ready and /health/startup name the Redis host and the schema
revisions: nothing a client of the API needs. A request is on the operations side when

- it arrived on `OPS_PORT` (a second gunicorn listener; Prometheus and Kubernetes reach it, the ingress does not),
  where only /metrics and /health* are served, every other path is 404; or
- it carries `Authorization: Bearer <METRICS_TOKEN>` (for a scraper that can only reach PORT); or
- neither is configured and APP_ENV is not production (`make run`, tests: one port, as before).

Elsewhere /metrics answers 404 (401 when a token would open it) and the probes answer their status only, with the
same status codes, so load balancers and Kubernetes probes on PORT keep working.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Flask, current_app, request
from werkzeug.exceptions import NotFound

from backend.base.config import Settings
from backend.core.auth import Unauthorized
from backend.observability.metrics import METRICS_PATH

logger = logging.getLogger(__name__)

HEALTH_PREFIX = "/health"
CHALLENGE = 'Bearer realm="operations"'


def listener_port(environ: dict[str, Any]) -> int | None:
    """The local port the request came in on: the accepted socket's under gunicorn, else SERVER_PORT."""
    connection = environ.get("gunicorn.socket")
    if connection is not None:
        try:
            address = connection.getsockname()
        except OSError:
            return None
        return address[1] if isinstance(address, tuple) else None
    try:
        return int(environ.get("SERVER_PORT", ""))
    except ValueError:
        return None


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def on_operations_port() -> bool:
    ops_port = _settings().ops_port
    return ops_port is not None and listener_port(request.environ) == ops_port


def _has_token(token: str) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def is_operations_request() -> bool:
    """Whether this request may see /metrics and the probes' details (see the module docstring)."""
    settings = _settings()
    if on_operations_port():
        return True
    if settings.metrics_token:
        return _has_token(settings.metrics_token)
    return settings.ops_port is None and not settings.is_production


def is_operations_path(path: str) -> bool:
    return path in (METRICS_PATH, HEALTH_PREFIX) or path.startswith(HEALTH_PREFIX + "/")


def _guard() -> None:
    if on_operations_port():
        if not is_operations_path(request.path):
            raise NotFound()
        return
    if request.path == METRICS_PATH and not is_operations_request():
        if _settings().metrics_token:
            raise Unauthorized("A bearer token is required for /metrics", headers={"WWW-Authenticate": CHALLENGE})
        raise NotFound()


def public_view(body: dict[str, Any]) -> dict[str, Any]:
    """A probe's body as the API side sees it: status and time, no details."""
    if is_operations_request():
        return body
    return {key: body[key] for key in ("status", "timestamp") if key in body}


def init_app(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]
    if settings.is_production and settings.ops_port is None and not settings.metrics_token:
        logger.warning(
            "/metrics and the probes' details are served to no one: set OPS_PORT or METRICS_TOKEN",
            extra={"event": "operations_closed"},
        )
    app.before_request(_guard)
