"""The app's extension objects, created unbound and bound to the app in `create_app` with `init_app`.

Each keeps its per-app state in `app.extensions[<its name>]`; its members work on the current app, `of(app)` on a
given one (code without an app context). The classes of the service's own extensions (core) never import this
module: it imports them (tests/test_architecture.py checks there is no cycle). `db` is defined in backend.base.orm
for the same reason; the domains import it from here with the others.
"""

from flask_migrate import Migrate
from flask_sock import Sock

from backend.base.orm import db
from backend.core.cache import Cache
from backend.core.cli import Seeders
from backend.core.ratelimit import RateLimits
from backend.core.redis import RedisClient
from backend.core.resilience import Breakers
from backend.core.shutdown import ShutdownCoordinator

__all__ = ["breakers", "cache", "db", "migrate", "rate_limits", "redis_client", "seeders", "shutdown", "sock"]

migrate = Migrate()
sock = Sock()
redis_client = RedisClient()  # the process's Redis client (lazy)
breakers = Breakers()  # circuit breakers: PostgreSQL (every new connection), Redis
rate_limits = RateLimits()  # per-client limits (Redis storage)
shutdown = ShutdownCoordinator()  # graceful shutdown: in-flight tracking, drain on SIGTERM
seeders = Seeders()  # sample data of each domain, run by init_db.py
cache = Cache()  # Redis read-through cache of API reads
