"""The peer's Flask app: `GET /products/<id>` reads the row; instrumentation when PEER_INSTRUMENTED=true."""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime
from typing import Any

from flask import Flask, Response, g, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

db = SQLAlchemy()


class Product(db.Model):  # type: ignore[name-defined]
    """The same `products` table as the app (read only here)."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[float] = mapped_column(Float)
    category: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "price": self.price,
            "category": self.category,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def instrumented() -> bool:
    return os.environ.get("PEER_INSTRUMENTED", "false").lower() in {"1", "true", "yes"}


def create_app() -> Flask:
    app = Flask(__name__)
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the driver installed is psycopg2, as for the app.
    url = os.environ["DATABASE_URL"]
    app.config["SQLALCHEMY_DATABASE_URI"] = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    # The app's pool settings and defaults (backend.core.database.engine_options).
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        "pool_size": int(os.environ.get("DB_POOL_SIZE", "10")),
        "max_overflow": int(os.environ.get("DB_MAX_OVERFLOW", "20")),
        "pool_pre_ping": True,
    }
    db.init_app(app)

    @app.get("/products/<int:product_id>")
    def get_product(product_id: int) -> Response:
        return jsonify(db.get_or_404(Product, product_id).to_dict())

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="UP")

    if instrumented():
        _instrument(app)
    return app


def _instrument(app: Flask) -> None:
    """What the libraries' docs suggest; the tracer provider itself is set per worker (gunicorn_conf.post_fork).
    Imported here so the uninstrumented arm loads none of it."""
    from opentelemetry import metrics, trace
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics
    from pythonjsonlogger.json import JsonFormatter

    FlaskInstrumentor().instrument_app(app)
    with app.app_context():
        # What SQLAlchemyInstrumentor().instrument(engine=...) attaches to the engine. instrument() itself refuses
        # SQLAlchemy 2.1 (it declares < 2.1) and, forced, needs greenlet for its asyncio wrapper; it would also add
        # a `connect` span per checkout, which the app does not have.
        EngineTracer(
            trace.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
            db.engine,
            metrics.get_meter("opentelemetry.instrumentation.sqlalchemy").create_up_down_counter(
                "db.client.connections.usage"
            ),
        )
    GunicornInternalPrometheusMetrics(app)

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}", style="{"))
    access = logging.getLogger("peer.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def access_line(response: Response) -> Response:
        context = trace.get_current_span().get_span_context()
        access.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.started) * 1000, 3),
                "bytes": response.content_length,
                "remote_addr": request.remote_addr,
                "user_agent": request.user_agent.string,
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
            },
        )
        return response
