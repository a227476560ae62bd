"""Gunicorn configuration: bind, workers and timeouts from the same settings object as the app; JSON logs,
multiprocess Prometheus metrics and per-worker tracing (hooks in backend/observability/gunicorn.py)."""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile

from flask import Flask

# prometheus_client chooses multiprocess mode when it is first imported, which importing `backend` does: the
# directory must be known (and exist) before. Unset, each master gets its own directory, removed on exit.
_default_multiproc_dir = os.path.join(tempfile.gettempdir(), f"sqal-prometheus-{os.getpid()}")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _default_multiproc_dir)
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
# Also true after a configuration reload (SIGHUP re-reads this file with the variable already set).
_owned_multiproc_dir = (
    _default_multiproc_dir if os.environ["PROMETHEUS_MULTIPROC_DIR"] == _default_multiproc_dir else None
)

from backend import __version__  # noqa: E402
from backend.base.config import ConfigError, Settings  # noqa: E402
from backend.extensions import shutdown  # noqa: E402
from backend.observability import gunicorn as hooks  # noqa: E402
from backend.observability import tracing  # noqa: E402
from backend.observability.logging import gunicorn_logconfig  # noqa: E402

try:
    _settings = Settings.from_env()
    hooks.validate(_settings)
except ConfigError as _exc:
    # One clear line, then stop: gunicorn would otherwise boot workers that all fail the same way.
    print(f"config error: {_exc}", file=sys.stderr)
    if _owned_multiproc_dir:
        shutil.rmtree(_owned_multiproc_dir, ignore_errors=True)
    sys.exit(2)

# Tracing threads start in each worker (post_fork), never in the master, even if the app is preloaded.
tracing.defer_until_fork()

wsgi_app = "backend:create_app()"
bind = [f"{_settings.host}:{_settings.port}"]
if _settings.ops_port is not None:
    # The operations listener: /metrics and /health* only (backend/core/operations.py).
    bind.append(f"{_settings.host}:{_settings.ops_port}")
# X-Forwarded-Proto & co. only from the proxies the app trusts (gunicorn would trust 127.0.0.1 by default).
forwarded_allow_ips = ",".join(_settings.forwarded_allow_ips)
workers = _settings.web_concurrency
worker_class = "gthread"
threads = _settings.threads
graceful_timeout = int(_settings.shutdown_timeout)
timeout = 60
keepalive = 5

# Logs: gunicorn's own lines in the app's JSON format on stdout; its access log is off (the app writes one
# access line per request, with trace ids) unless --access-logfile is given.
loglevel = _settings.log_level.lower()
logger_class = hooks.JsonLogger
logconfig_dict = gunicorn_logconfig(_settings)
accesslog = None
errorlog = "-"


def on_starting(server: object) -> None:
    hooks.on_starting(server)


def when_ready(server: object) -> None:
    hooks.when_ready(server, _settings, __version__)


def post_fork(server: object, worker: object) -> None:
    hooks.post_fork(server, worker, _settings, __version__)


def post_worker_init(worker: object) -> None:
    # The app is loaded and the worker's signal handlers are set: SIGTERM now drains before gunicorn's exit.
    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask):
        hooks.chain_shutdown(worker, shutdown.of(app))
    # The app and its libraries are loaded: keep their objects out of the cyclic collector, so a full collection
    # walks only what requests allocate (spans and log records make collections frequent under load).
    gc.freeze()


def worker_exit(server: object, worker: object) -> None:
    hooks.worker_exit(server, worker)


def child_exit(server: object, worker: object) -> None:
    hooks.child_exit(server, worker)


def on_exit(server: object) -> None:
    hooks.on_exit(server, _owned_multiproc_dir)
