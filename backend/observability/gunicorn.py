"""Gunicorn server hooks (wired in gunicorn.conf.py): multiprocess metrics directory, per-worker tracing, JSON logs.

Order of events: the master loads gunicorn.conf.py (PROMETHEUS_MULTIPROC_DIR is set before prometheus_client is
imported), `on_starting` empties the directory, `when_ready` logs the banner; each worker runs `post_fork`
(tracing provider, after the fork) then loads the app, and `chain_shutdown` (its `post_worker_init`) hands its
SIGTERM to the app's graceful shutdown; `worker_exit` flushes its spans; the master's `child_exit`
drops the dead worker's live gauges; `on_exit` removes a directory it created itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from gunicorn.glogging import Logger as GunicornLogger

from backend.base.config import Settings
from backend.observability import metrics, tracing
from backend.observability.logging import log_startup_banner
from backend.observability.sampling import build_sampler

logger = logging.getLogger(__name__)


class JsonLogger(GunicornLogger):
    """Gunicorn's logger with its access log off unless asked for explicitly (`--access-logfile`): the app writes
    the access-log line itself, with trace ids. A `logconfig_dict` would otherwise switch it on. Only the public
    logger interface is overridden: `access` (every gunicorn version) and `access_log_enabled` (read by the ASGI
    workers to skip building the line)."""

    @property
    def access_log_enabled(self) -> bool:
        return bool(self.cfg.accesslog)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)


def validate(settings: Settings) -> None:
    """Fail at master start (ConfigError) rather than in every worker."""
    if not settings.otel_sdk_disabled:
        build_sampler(settings)


def prepare_multiproc_dir(path: str) -> None:
    """Create the directory and delete what a previous run left (stale counters of dead pids)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_file() and entry.suffix == ".db":
            entry.unlink(missing_ok=True)


def on_starting(server: Any) -> None:
    """Master start, before any worker: an empty multiprocess directory."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        prepare_multiproc_dir(path)


def when_ready(server: Any, settings: Settings, version: str) -> None:
    """Master listening: the startup banner."""
    log_startup_banner(settings, version, f"http://{settings.host}:{settings.port}", settings.web_concurrency)


def post_fork(server: Any, worker: Any, settings: Settings, version: str) -> None:
    """In the new worker: Python warnings to the JSON log, process metrics of the group, its own tracing."""
    logging.captureWarnings(True)
    metrics.set_gunicorn_master(server.pid)
    tracing.configure_provider(settings, version)


def worker_exit(server: Any, worker: Any) -> None:
    """In the exiting worker: export the spans still queued."""
    tracing.shutdown()


def child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker died: its live gauges must no longer count."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any, owned_dir: str | None) -> None:
    """Master exit: remove the multiprocess directory when gunicorn.conf.py chose it."""
    if owned_dir:
        shutil.rmtree(owned_dir, ignore_errors=True)


class GracefulShutdown(Protocol):
    """What `chain_shutdown` needs from the app's shutdown sequence (backend.core.shutdown.Coordinator)."""

    @property
    def refusing(self) -> bool: ...

    def begin(self, hand_over: Callable[[], None], needs_drain: Callable[[], bool]) -> bool: ...


def chain_shutdown(worker: Any, sequence: GracefulShutdown) -> None:
    """In the worker, its app loaded and its signal handlers set (gunicorn's `post_worker_init`, with or without
    `preload_app`): SIGTERM starts `sequence` (drained unless the master is replacing the worker), then runs
    gunicorn's own SIGTERM handler; while refusing, `pre_request` closes kept-alive connections."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return

    def hand_over() -> None:
        previous(signal.SIGTERM, None)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # Signal handler: no blocking work here, the sequence runs in its own thread.
        sequence.begin(hand_over, lambda: not _master_keeps_listening(worker))

    signal.signal(signal.SIGTERM, on_sigterm)
    previous_pre_request = worker.cfg.pre_request

    def pre_request(current_worker: Any, req: Any) -> None:
        if sequence.refusing:
            req.must_close = True  # gunicorn then answers with "Connection: close" and closes
        previous_pre_request(current_worker, req)

    worker.cfg.set("pre_request", pre_request)


def _master_keeps_listening(worker: Any) -> bool:
    """True when the gunicorn master still holds this worker's listening socket: it is replacing the worker
    (it closes its listeners before signalling workers on shutdown). Unknown (no /proc) means shutdown."""
    try:
        ours = {os.fstat(listener.fileno()).st_ino for listener in worker.sockets}
        fd_dir = f"/proc/{worker.ppid}/fd"
        for name in os.listdir(fd_dir):
            target = os.readlink(os.path.join(fd_dir, name))
            if target.startswith("socket:[") and int(target[8:-1]) in ours:
                return True
    except (OSError, ValueError, AttributeError):
        return False
    return False
