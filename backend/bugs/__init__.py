"""Bug tracking: reports, comments, a checked workflow, statistics and Prometheus gauges.

Layout: `models` (tables), `enums`, `workflow` (allowed status transitions and the timestamps they own),
`schemas` (camelCase wire format), `service` (CRUD under row locks), `stats` (summary, trends, gauge snapshot in
SQL), `metrics` (scrape-time Prometheus collector, served on /metrics), `routes` (/api/bugs/).

`bug_metrics` is a VIEW over `bug_reports` (migration 0003_bugs), not a table maintained on every write: per UTC
day of creation x severity x current status it gives the bugs reported, how many are resolved and their summed
resolution time. A view cannot drift from the reports (no second write to forget in a new code path, no
double-counting under concurrent PATCHes, no repair job), and at this volume aggregating on read is cheap; the
Prometheus collector caches it for a few seconds per worker.

Concurrent PATCHes of one bug are serialised with `SELECT ... FOR UPDATE`; each accepted PATCH increments
`version`, so a lost update would be visible.
"""

from __future__ import annotations

from apiflask import APIFlask

from backend.core import auth
from backend.extensions import cache

auth.register_scopes("bugs:write")  # before the routes' `require_scope` decorators run


def init_app(app: APIFlask) -> None:
    """Register the cache namespace, the /api/bugs/ routes and the scrape-time bug gauges on the app's /metrics."""
    from backend.bugs import metrics, routes, service
    from backend.observability.metrics import register_scrape_collector

    cache.register_namespace(app, service.CACHE_NAME, ttl=app.config["SETTINGS"].cache_ttl_bugs)
    app.register_blueprint(routes.bp)
    register_scrape_collector(app, metrics.make_collector(app))
