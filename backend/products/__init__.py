"""Products: the reference service's CRUD resource."""

from __future__ import annotations

import logging

from apiflask import APIFlask

logger = logging.getLogger(__name__)


def init_app(app: APIFlask) -> None:
    """Register the routes and the sample-data seeder."""
    from backend.products import routes, service

    def seed() -> None:
        added = service.seed_sample_products()
        logger.info("products seeded", extra={"event": "seed", "added": added})

    app.register_blueprint(routes.bp)
    app.extensions.setdefault("seeders", []).append(seed)
