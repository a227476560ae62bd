"""Products: the reference service's CRUD resource."""

from __future__ import annotations

import logging

from apiflask import APIFlask

from backend.core import auth
from backend.extensions import cache, seeders

logger = logging.getLogger(__name__)

auth.register_scopes("products:write")  # before the routes' `require_scope` decorators run


def init_app(app: APIFlask) -> None:
    """Register the cache namespace, the routes and the sample-data seeder."""
    from backend.products import routes, service

    cache.register_namespace(app, service.CACHE, ttl=app.config["SETTINGS"].cache_ttl_products)

    def seed() -> None:
        added = service.seed_sample_products()
        logger.info("products seeded", extra={"event": "seed", "added": added})

    app.register_blueprint(routes.bp)
    seeders.of(app).append(seed)
