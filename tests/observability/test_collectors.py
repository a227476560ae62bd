"""StoreCollector: the one way to read metrics from a store at scrape time (cached, guarded, describe-only)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from backend.observability.collectors import StoreCollector


class Counting(StoreCollector):
    def __init__(self, clock: list[float]) -> None:
        super().__init__(ttl=10, clock=lambda: clock[0])
        self.reads = 0
        self.failing = False

    def families(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("store_reads", "Reads of the store")]

    def compute(self) -> Iterable[Metric]:
        if self.failing:
            raise ConnectionError("store down")
        self.reads += 1
        family = GaugeMetricFamily("store_reads", "Reads of the store")
        family.add_metric([], self.reads)
        return [family]


def value(collector: StoreCollector) -> float | None:
    found = [sample.value for metric in collector.collect() for sample in metric.samples]
    return found[0] if found else None


def test_cached_for_ttl_then_read_again() -> None:
    clock = [100.0]
    collector = Counting(clock)
    registry = CollectorRegistry()
    registry.register(collector)  # describe(): no read
    assert collector.reads == 0
    assert value(collector) == 1
    clock[0] += 9.9
    assert value(collector) == 1
    clock[0] += 0.2
    assert value(collector) == 2
    assert b"store_reads 2.0" in generate_latest(registry)


def test_a_failing_store_yields_nothing_logged_and_is_read_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = [100.0]
    collector = Counting(clock)
    collector.failing = True
    with caplog.at_level(logging.WARNING, logger="backend.observability.collectors"):
        assert list(collector.collect()) == []
    assert [getattr(record, "collector", None) for record in caplog.records] == ["Counting"]
    collector.failing = False
    assert value(collector) == 1  # the failure was not cached


def test_clear_forgets_the_cache() -> None:
    collector = Counting([100.0])
    assert value(collector) == 1
    collector.clear()
    assert value(collector) == 2
