"""Gunicorn configuration: bind, workers and timeouts from the same settings object as the app."""

from __future__ import annotations

import sys

from backend.core.config import ConfigError, Settings

try:
    _settings = Settings.from_env()
except ConfigError as _exc:
    # One clear line, then stop: gunicorn would otherwise boot workers that all fail the same way.
    print(f"config error: {_exc}", file=sys.stderr)
    sys.exit(2)

wsgi_app = "backend:create_app()"
bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.web_concurrency
worker_class = "gthread"
threads = _settings.threads
graceful_timeout = int(_settings.shutdown_timeout)
timeout = 60
keepalive = 5
