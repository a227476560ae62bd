"""SQAL: device ingestion over the authenticated WebSocket `/ws/sensors/` (docs/protocol.md)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from apiflask import APIFlask

from backend.core import auth

logger = logging.getLogger(__name__)

auth.register_scopes("devices:admin")  # before the routes' `require_scope` decorators run

# simple-websocket closes with 1009 by itself (no error frame possible) above this multiple of
# WS_MAX_MESSAGE_BYTES; between the two the handler answers `message_too_large` then closes with 1009.
TRANSPORT_LIMIT_FACTOR = 2
SERVER_PING_INTERVAL = 25.0
RECEIVE_BYTES = 65536


class _ReaderThread(threading.Thread):
    """simple-websocket's per-connection reader, as a daemon.

    After a server-side close the reader can wait for its next ping tick (the socket is already gone), and a
    non-daemon thread would hold a stopping gunicorn worker's exit until then.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, daemon=True, **kwargs)


def init_app(app: APIFlask) -> None:
    """Register the WebSocket route, the per-process runtime, the dev seeder and the `flask sqal` commands."""
    from backend.observability import register_scrape_collector
    from backend.sqal import metrics, models
    from backend.sqal.devices import cli, provisioning
    from backend.sqal.devices import routes as admin
    from backend.sqal.ingest import routes as ws
    from backend.sqal.live import routes as dashboard_page
    from backend.sqal.live import service as live
    from backend.sqal.reads.routes import metrics_snapshot, register_reads

    del models  # imported for its tables (metadata, migrations, truncation in tests)
    settings = app.config["SETTINGS"]
    app.config.setdefault("SOCK_SERVER_OPTIONS", {}).update(
        max_message_size=TRANSPORT_LIMIT_FACTOR * settings.ws_max_message_bytes,
        receive_bytes=RECEIVE_BYTES,
        ping_interval=SERVER_PING_INTERVAL,
        thread_class=_ReaderThread,
    )
    app.extensions[ws.EXTENSION_KEY] = ws.SqalRuntime(app)
    app.register_blueprint(ws.bp)
    app.register_blueprint(admin.bp)  # device administration over HTTP (devices:admin)
    app.cli.add_command(cli.sqal_cli)
    register_scrape_collector(app, metrics.SqalCollector(app))
    register_reads(app)  # REST reads and dashboard metrics
    live.init_hub(app, lambda: metrics_snapshot(app))  # /ws/dashboard/
    app.register_blueprint(dashboard_page.bp)  # the /dashboard page

    def seed() -> None:
        written = provisioning.provision_dev_devices(settings.app_env)
        if written:
            logger.info("simulator devices provisioned", extra={"event": "seed", "token_file": str(written)})

    app.extensions.setdefault("seeders", []).append(seed)
