"""Scrape-time collectors: series read from a shared store (PostgreSQL, Redis) when /metrics is scraped.

`StoreCollector` is the one way to write one. `families()` names the series without samples (`describe()`:
registering never touches the store); `compute()` reads them. The result is kept `ttl` seconds by the collector (the
app keeps one instance for every scrape, `register_scrape_collector`), so every worker answers with the same values
without querying on each scrape. A failing store yields no series (logged, `metrics_collector_failed`), not a failed
scrape nor stale numbers, and is read again at the next scrape.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


class StoreCollector(Collector):
    """Subclasses implement `families` and `compute`; `collect` caches and guards them."""

    def __init__(self, ttl: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._expires = -math.inf

    def families(self) -> Iterable[Metric]:
        """The metric families, without samples."""
        raise NotImplementedError

    def compute(self) -> Iterable[Metric]:
        """The families with their samples, read from the store; raise when it cannot be read."""
        raise NotImplementedError

    def clear(self) -> None:
        """Forget the cached series: the next scrape reads the store (after a bulk import, between tests)."""
        with self._lock:
            self._expires = -math.inf

    def describe(self) -> Iterable[Metric]:
        return list(self.families())

    def collect(self) -> Iterable[Metric]:
        """The series, from the cache while fresher than `ttl`; nothing when the store cannot be read."""
        with self._lock:
            if self._clock() < self._expires:
                return list(self._cached)
            try:
                computed = list(self.compute())
            except Exception as exc:
                logger.warning(
                    "metrics collector failed",
                    exc_info=True,
                    extra={"event": "metrics_collector_failed", "collector": type(self).__name__, "error": str(exc)},
                )
                return []
            self._cached, self._expires = computed, self._clock() + self.ttl
            return list(computed)
