"""JSON logs: one object per line on stdout, for the app, gunicorn's master and workers alike.

Every line has `timestamp` (UTC ISO 8601), `level`, `service`, `logger`, `message`, `trace_id`, `span_id` (empty
outside a span) and `pid`, then the event fields passed with `extra=`. Exceptions are one structured `exc_info`
object. JSON encoding escapes newlines, quotes and control characters (and non-ASCII), so user input can never
start a new line; credentials are masked (see `redaction`).
"""

from __future__ import annotations

import logging
import sys
import time
from functools import lru_cache
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from backend.base.config import Settings
from backend.observability.exceptions import exception_fields
from backend.observability.ids import current_ids
from backend.observability.redaction import REDACTED, is_sensitive_key, redact, redact_text

logger = logging.getLogger(__name__)

_RESERVED = frozenset({*RESERVED_ATTRS, "taskName", "message"})
_TRUSTED_FIELDS = frozenset({"timestamp", "level", "service", "logger", "trace_id", "span_id", "pid"})
# Values that redaction returns unchanged (it scrubs strings and recurses into containers only).
_PLAIN_TYPES = (int, float, type(None))
# Most string values repeat (methods, routes, paths, user agents): scrub each distinct short one once.
_CACHED_TEXT_LENGTH = 512
_redact_short_text = lru_cache(maxsize=4096)(redact_text)


_second_prefix: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """UTC ISO 8601 with milliseconds and Z (as datetime renders it); the part up to the second is computed once
    per second."""
    global _second_prefix
    second = int(created)
    micros = round((created - second) * 1e6)  # datetime.fromtimestamp rounds to the microsecond, then truncates
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    cached_second, prefix = _second_prefix
    if cached_second != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_prefix = (second, prefix)
    return f"{prefix}.{micros // 1000:03d}Z"


class JsonFormatter(_BaseJsonFormatter):
    """python-json-logger formatter producing the service's line format."""

    def __init__(self, service: str = "backend", **kwargs: Any) -> None:
        super().__init__(reserved_attrs=sorted(_RESERVED), json_ensure_ascii=True, **kwargs)
        self.service = service
        # One encoder for every line (json.dumps(cls=...) would build one per call); encode() keeps no state.
        self._encoder = JsonEncoder(ensure_ascii=True)
        self._skip = frozenset(self.reserved_attrs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        """Base fields first (they win over a same-named event field), then the event fields."""
        trace_id, span_id = current_ids()
        log_data.update(
            timestamp=_timestamp(record.created),
            level=record.levelname,
            service=self.service,
            logger=record.name,
            message=record.message,
            trace_id=trace_id,
            span_id=span_id,
            pid=record.process,
        )
        for key, value in message_dict.items():
            log_data.setdefault(key, value)
        skip = self._skip
        for key, value in record.__dict__.items():  # the `extra=` fields (as pythonjsonlogger's merge_record_extra)
            if key not in skip and not key.startswith("_"):
                log_data.setdefault(key, value)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Mask credentials in the message and every event field."""
        for key, value in log_data.items():
            if key in _TRUSTED_FIELDS:
                continue
            if is_sensitive_key(key):
                log_data[key] = REDACTED
            elif value.__class__ is str:
                log_data[key] = _redact_short_text(value) if len(value) <= _CACHED_TEXT_LENGTH else redact_text(value)
            elif not isinstance(value, _PLAIN_TYPES):
                log_data[key] = redact(value)
        return log_data

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        """The line as JSON (non-ASCII escaped, so a line can never be split)."""
        return self._encoder.encode(log_data)

    def formatException(self, ei: Any) -> Any:  # noqa: N802 (logging.Formatter API)
        """The exception as one object: type, message and stack trace (database errors without values)."""
        exc = ei[1]
        return exception_fields(exc) if isinstance(exc, BaseException) else None


class StdoutHandler(logging.StreamHandler):
    """Writes each record as one line to the *current* `sys.stdout` (which test runners may swap), or to the current
    `sys.stderr` for command-line tools, whose stdout is their output (`KEY=$(flask … keys create …)`)."""

    def __init__(self, to_stderr: bool = False) -> None:
        super().__init__(sys.stderr if to_stderr else sys.stdout)
        self.to_stderr = to_stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            stream = sys.stderr if self.to_stderr else sys.stdout
            stream.write(line)
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def _json_handler(service: str, to_stderr: bool = False) -> StdoutHandler:
    handler = StdoutHandler(to_stderr)
    handler.setFormatter(JsonFormatter(service))
    return handler


def configure_logging(settings: Settings, to_stderr: bool = False) -> None:
    """Route the root logger to JSON on stdout (stderr for the CLI) at LOG_LEVEL (idempotent: replaces our previous
    handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, StdoutHandler):
            root.removeHandler(handler)
    root.addHandler(_json_handler(settings.service_name, to_stderr))
    root.setLevel(settings.log_level)


def gunicorn_logconfig(settings: Settings) -> dict[str, Any]:
    """`logconfig_dict` for gunicorn: its error log (master and workers) and access log in the same JSON."""
    level = settings.log_level
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": settings.service_name}},
        "handlers": {"stdout": {"()": StdoutHandler, "formatter": "json"}},
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }


def log_startup_banner(settings: Settings, version: str, base_url: str, workers: int) -> None:
    """One JSON line with the version, the configuration (secrets masked) and the endpoints."""
    endpoints = {
        "api": base_url,
        "docs": f"{base_url}/docs",
        "openapi": f"{base_url}/openapi.json",
        "health": f"{base_url}/health",
        "liveness": f"{base_url}/health/live",
        "readiness": f"{base_url}/health/ready",
        "startup": f"{base_url}/health/startup",
        "metrics": f"{base_url}/metrics",
    }
    logger.info(
        "service %s %s ready",
        settings.service_name,
        version,
        extra={
            "event": "startup",
            "version": version,
            "workers": workers,
            "config": settings.public_summary(),
            "endpoints": endpoints,
        },
    )
