"""Circuit breakers: a database that hangs or stops costs one fast 503 per request once the breaker is open, and
service resumes by itself when it is back."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pybreaker
import pytest
import requests
from prometheus_client import REGISTRY

from backend import create_app
from backend.base.config import Settings
from backend.core.resilience import Breaker
from scripts.devservices import EmbeddedPostgres
from tests.core.load import sample, scrape

BREAKER_OPEN_BUDGET = 0.1  # seconds: the bound for a 503 once the breaker is open


def assert_fast(timings: list[float]) -> None:
    """Typical answer within the budget; none anywhere near a connect timeout (1 s here, 2 s by default), which
    is what a request waiting on the database would cost. The median, not the maximum: a loaded CI machine may
    stall any single request."""
    ordered = sorted(timings)
    assert ordered[len(ordered) // 2] < BREAKER_OPEN_BUDGET, ordered
    assert ordered[-1] < 0.5, ordered


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: a PostgreSQL that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def test_hanging_database_costs_one_timeout_per_breaker_trip(blackhole: int) -> None:
    settings = Settings.from_env(
        {},
        app_env="test",
        database_url=f"postgresql://x@127.0.0.1:{blackhole}/x",
        db_connect_timeout=1,
        breaker_fail_max=2,
        breaker_reset_timeout=30,
    )
    app = create_app(settings)  # the startup banner's database check is the first failure
    with app.test_client() as client:
        started = time.perf_counter()
        tripping = client.get("/products/1")
        assert time.perf_counter() - started >= 0.9  # waited for the connect timeout
        assert tripping.status_code == 503
        assert REGISTRY.get_sample_value("circuit_breaker_state", {"name": "postgresql"}) == 1
        timings = []
        for path in ("/products/1", "/products", "/health", "/health/ready") * 5:
            started = time.perf_counter()
            response = client.get(path)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 503, path
        assert_fast(timings)
        body = client.get("/products/2").get_json()
        assert body["error"]["code"] == "service_unavailable"
        assert body["error"]["details"] == {"dependency": "postgresql", "circuit": "open", "retry_after": 30}
        assert client.get("/products/2").headers["Retry-After"] == "30"
        assert client.get("/health/live").status_code == 200


def test_half_open_lets_one_trial_through_and_closes_on_success() -> None:
    calls: list[str] = []
    breaker = Breaker("test-breaker", fail_max=2, reset_timeout=0.2, is_failure=lambda exc: isinstance(exc, OSError))

    def fail(exc: Exception) -> None:
        calls.append(type(exc).__name__)
        raise exc

    with pytest.raises(ValueError, match="business"):  # not a dependency failure: does not count
        breaker.call(fail, ValueError("business"))
    assert breaker.fail_counter == 0
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(fail, OSError("down"))
    assert breaker.current_state == pybreaker.STATE_OPEN
    assert REGISTRY.get_sample_value("circuit_breaker_state", {"name": "test-breaker"}) == 1
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail, OSError("down"))
    assert calls == ["ValueError", "OSError", "OSError"]  # refused without calling

    time.sleep(0.25)
    release, trial_started = threading.Event(), threading.Event()

    def slow_trial() -> str:
        trial_started.set()
        release.wait(5)
        return "ok"

    results: list[str] = []
    trial = threading.Thread(target=lambda: results.append(breaker.call(slow_trial)))
    trial.start()
    assert trial_started.wait(5)
    assert breaker.current_state == pybreaker.STATE_HALF_OPEN
    with pytest.raises(pybreaker.CircuitBreakerError):  # one trial at a time; the others fail fast
        breaker.call(lambda: "second")
    release.set()
    trial.join(5)
    assert results == ["ok"]
    assert breaker.current_state == pybreaker.STATE_CLOSED
    assert REGISTRY.get_sample_value("circuit_breaker_state", {"name": "test-breaker"}) == 0


def test_postgres_stopped_then_restarted_under_gunicorn(
    server_factory: Callable[..., Any], running_postgres: EmbeddedPostgres
) -> None:
    server = server_factory(
        workers=2,
        CACHE_ENABLED="false",
        BREAKER_FAIL_MAX="3",
        BREAKER_RESET_TIMEOUT="2",
        RATE_LIMIT_READ="100000/minute",
    )
    url = server.url("/products/1")
    with requests.Session() as session:
        assert session.get(url, timeout=5).status_code == 200
        running_postgres.stop(mode="fast")
        # Until each worker's breaker opens, requests fail with a 503 as well (connection refused), never a 500.
        in_a_row, deadline = 0, time.monotonic() + 20
        while in_a_row < 20:
            assert time.monotonic() < deadline, "the PostgreSQL breakers never opened"
            response = requests.get(url, timeout=5)  # a new connection each time: both workers answer
            assert response.status_code == 503
            in_a_row = in_a_row + 1 if response.json()["error"]["details"]["circuit"] == "open" else 0
        # Open (1), or half-open (2) while a worker's trial connect runs: the max over the workers.
        assert sample(scrape(server.base_url), "circuit_breaker_state", name="postgresql") >= 1

        timings = []
        for _ in range(30):
            started = time.perf_counter()
            response = requests.get(url, timeout=5)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 503
            assert response.json()["error"]["details"]["dependency"] == "postgresql"
            assert 1 <= int(response.headers["Retry-After"]) <= 2
        assert_fast(timings)

        running_postgres.start()
        # Each worker has its own breaker and recovers on its own trial connect, so "recovered" means: fresh
        # connections (spread over the workers) succeed 10 times in a row and no worker reports a breaker open.
        back, in_a_row = time.monotonic(), 0
        while in_a_row < 10 or sample(scrape(server.base_url), "circuit_breaker_state", name="postgresql") != 0:
            assert time.monotonic() - back < 30, "no recovery within 30 s"
            if requests.get(url, timeout=5).status_code == 200:
                in_a_row += 1
            else:
                in_a_row = 0
                time.sleep(0.2)
        recovered_in = time.monotonic() - back
    assert recovered_in < 30
    assert session.get(url, timeout=5).status_code == 200
