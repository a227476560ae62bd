"""Per-device frame budget shared by workers through Redis, and the best-effort sample fan-out; Redis down."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from prometheus_client import REGISTRY

from backend import create_app
from backend.sqal.ingest.publisher import SamplePublisher
from backend.sqal.ingest.routes import SqalRuntime
from scripts.devservices import free_port
from scripts.services import TestServices
from tests.sqal.helpers import unique_device_id


def dead_redis() -> tuple[str, redis.Redis]:
    url = f"redis://127.0.0.1:{free_port()}/0"
    return url, redis.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)


def runtime(services: TestServices, redis_url: str, rate: str) -> SqalRuntime:
    """The SQAL runtime of a separate app instance, as in another gunicorn worker."""
    application = create_app(
        {"app_env": "test", "database_url": services.database_url, "redis_url": redis_url, "ws_device_rate_limit": rate}
    )
    return SqalRuntime(application)


def test_device_budget_is_shared_by_workers(services: TestServices) -> None:
    worker_a = runtime(services, services.redis_url, "5/minute")
    worker_b = runtime(services, services.redis_url, "5/minute")
    device, other = unique_device_id(), unique_device_id()
    assert [worker_a.retry_after(device) for _ in range(3)] == [None] * 3
    assert [worker_b.retry_after(device) for _ in range(2)] == [None] * 2
    wait = worker_a.retry_after(device)
    assert wait is not None
    assert 0 < wait <= 60
    assert worker_b.retry_after(device) is not None
    assert worker_b.retry_after(other) is None


def test_rate_limit_check_survives_redis_down(services: TestServices) -> None:
    url, _ = dead_redis()
    worker = runtime(services, url, "100/minute")
    started = time.perf_counter()
    assert [worker.retry_after("ESP32_X") for _ in range(20)] == [None] * 20
    assert time.perf_counter() - started < 5  # fails fast, never a connect timeout per frame


def test_stored_samples_are_published(services: TestServices) -> None:
    client = redis.Redis.from_url(services.redis_url)
    channel = f"sqal:samples:test:{unique_device_id()}"
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    subscribed = pubsub.get_message(timeout=2)
    assert subscribed is not None
    assert subscribed["type"] == "subscribe"
    publisher = SamplePublisher(lambda send: send(client), channel=channel)
    summaries = [{"device_id": "D", "sample_id": f"S-{n}", "grade": "A"} for n in range(3)]
    publisher.publish(summaries)
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while len(received) < 3 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            received.append(json.loads(message["data"]))
    pubsub.close()
    assert received == summaries


def test_publishing_never_blocks_when_redis_is_down() -> None:
    _, client = dead_redis()
    dropped_before = REGISTRY.get_sample_value("sqal_sample_fanout_dropped_total") or 0.0
    publisher = SamplePublisher(lambda send: send(client))
    started = time.perf_counter()
    publisher.publish([{"sample_id": f"S-{n}"} for n in range(100)])
    assert time.perf_counter() - started < 0.05
    deadline = time.monotonic() + 5
    while (REGISTRY.get_sample_value("sqal_sample_fanout_dropped_total") or 0.0) < dropped_before + 100:
        assert time.monotonic() < deadline, "dropped summaries were not counted"
        time.sleep(0.05)
