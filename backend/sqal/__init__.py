"""SQAL: sensor samples from devices to the line's dashboards, one sub-package per capability.

`ingest/` (the authenticated `/ws/sensors/`, docs/protocol.md), `devices/` (registration, tokens), `reads/` (REST
reads, dashboard figures) and `live/` (`/ws/dashboard/`, the page) share only the top-level modules (models,
vocabulary, websocket, metrics, pubsub, sessions); `init_app` wires them together.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from apiflask import APIFlask

from backend.core import auth
from backend.extensions import seeders

logger = logging.getLogger(__name__)

auth.register_scopes("devices:admin")  # before the routes' `require_scope` decorators run

# simple-websocket closes with 1009 by itself (no error frame possible) once a message passes WS_MAX_MESSAGE_BYTES
# (characters of text, bytes of binary): nothing larger is ever buffered. A text message within that many characters
# but over that many UTF-8 bytes reaches the handler, which answers `message_too_large` then closes with 1009.
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
    """Register the routes and sockets of every sub-package, the per-process runtime, the seeder and `flask sqal`."""
    from backend.observability import register_scrape_collector
    from backend.sqal import metrics, models
    from backend.sqal.devices import cli, provisioning
    from backend.sqal.devices import routes as devices
    from backend.sqal.ingest import routes as ingest
    from backend.sqal.lifecycle import cli as lifecycle_cli
    from backend.sqal.lifecycle import service as lifecycle
    from backend.sqal.live import routes as live
    from backend.sqal.reads import cli as reads_cli
    from backend.sqal.reads.routes import dashboard_snapshot, register_reads
    from backend.sqal.websocket import sockets

    del models  # imported for its tables (metadata, migrations, truncation in tests)
    settings = app.config["SETTINGS"]
    app.config.setdefault("SOCK_SERVER_OPTIONS", {}).update(
        max_message_size=settings.ws_max_message_bytes,
        receive_bytes=RECEIVE_BYTES,
        ping_interval=SERVER_PING_INTERVAL,
        thread_class=_ReaderThread,
    )
    caps = {live.SOCKET_KIND: settings.ws_dashboard_max_sockets}  # devices: the rest of the budget
    sockets.init_app(app, caps)
    ingest.ingest_runtime.init_app(app)
    app.register_blueprint(ingest.bp)
    app.register_blueprint(devices.bp)  # device administration over HTTP (devices:admin)
    for command in (lifecycle_cli.lifecycle_cli, lifecycle_cli.retention_cli, reads_cli.export):
        cli.sqal_cli.add_command(command)
    app.cli.add_command(cli.sqal_cli)
    register_scrape_collector(app, metrics.SqalCollector(app))
    metrics.zero_known_series((ingest.ENDPOINT, live.ENDPOINT), ingest.RATE_SCOPE)
    register_reads(app)  # REST reads and the dashboard figures
    # /ws/dashboard/ and the /dashboard page; its `metrics` frames carry the /api/dashboard/metrics/ body.
    live.register_live(app, lambda: dashboard_snapshot(app).model_dump(mode="json", by_alias=True))

    def seed() -> None:
        written = provisioning.provision_dev_devices(settings.app_env)
        if written:
            logger.info("simulator devices provisioned", extra={"event": "seed", "token_file": str(written)})

    def apply_policies() -> None:
        report = lifecycle.apply_policies(settings)
        if report.actions:
            logger.info("data lifecycle: " + "; ".join(report.actions), extra={"event": "lifecycle"})

    seeders.of(app).extend([seed, apply_policies])
