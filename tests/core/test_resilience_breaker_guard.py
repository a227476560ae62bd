"""The breaker's lock-free call drives pybreaker's private state methods: with today's pybreaker it is selected
(concurrent calls overlap); with a pybreaker whose internals differ, pybreaker's own `call` is used, the breaker
still opens and closes, the app starts, and one warning says so."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pybreaker
import pytest

from backend import create_app
from backend.base.config import FAST_PATHS, Settings
from backend.core import resilience
from backend.core.resilience import Breaker
from backend.extensions import breakers
from backend.observability import internals


@pytest.fixture(autouse=True)
def fresh_switch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(internals, "_reported", set())
    resilience.lock_free_calls.cache_clear()
    yield
    resilience.lock_free_calls.cache_clear()


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "event", "") == internals.EVENT]


def overlapping_calls(breaker: Breaker) -> bool:
    """Whether a second call runs while a first one is still in progress."""
    first_running, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=breaker.call, args=(lambda: (first_running.set(), release.wait(5)),))
    thread.start()
    assert first_running.wait(5)
    second_ran = threading.Event()
    other = threading.Thread(target=breaker.call, args=(second_ran.set,))
    other.start()
    overlapped = second_ran.wait(0.5)
    release.set()
    thread.join(5)
    other.join(5)
    return overlapped


def test_todays_pybreaker_selects_lock_free_calls(caplog: pytest.LogCaptureFixture) -> None:
    assert resilience.lock_free_call_problem() is None
    with caplog.at_level(logging.WARNING):
        breaker = Breaker("guard-fast", fail_max=2, reset_timeout=60, is_failure=lambda exc: True)
    assert overlapping_calls(breaker)
    assert fallback_warnings(caplog) == []


@pytest.fixture
def pybreaker_without_reraise(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pybreaker whose `_handle_error` has no `reraise` parameter (its own `call` does not need one)."""
    original = pybreaker.CircuitBreakerState._handle_error

    def _handle_error(self: pybreaker.CircuitBreakerState, exc: BaseException) -> None:
        original(self, exc)

    monkeypatch.setattr(pybreaker.CircuitBreakerState, "_handle_error", _handle_error)


@pytest.mark.usefixtures("pybreaker_without_reraise")
def test_other_internals_fall_back_to_pybreakers_call(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def fail() -> Any:
        calls.append("fail")
        raise OSError("down")

    with caplog.at_level(logging.WARNING):
        breaker = Breaker("guard-public", fail_max=2, reset_timeout=0.2, is_failure=lambda e: isinstance(e, OSError))
        Breaker("guard-public-2", fail_max=2, reset_timeout=0.2, is_failure=lambda e: True)
    assert not overlapping_calls(breaker)  # pybreaker's call holds its lock for the whole call
    with pytest.raises(OSError):
        breaker.call(fail)
    with pytest.raises(pybreaker.CircuitBreakerError):  # pybreaker's own call reports the tripping failure so
        breaker.call(fail)
    assert breaker.current_state == pybreaker.STATE_OPEN
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    assert calls == ["fail", "fail"]  # refused without calling
    assert breaker.retry_after() > 0
    time.sleep(0.25)
    assert breaker.call(lambda: "ok") == "ok"  # the half-open trial succeeds
    assert breaker.current_state == pybreaker.STATE_CLOSED
    [warning] = fallback_warnings(caplog)
    assert warning.__dict__["library"] == "pybreaker"
    assert warning.__dict__["library_version"] == internals.library_version("pybreaker")
    assert warning.__dict__["fallback"] == "pybreaker.CircuitBreaker.call"
    assert "reraise" in warning.__dict__["reason"]


@pytest.mark.usefixtures("app", "pybreaker_without_reraise")  # the session app has migrated the database
def test_the_app_starts_and_serves_on_the_fallback(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        app = create_app(dataclasses.replace(settings, fast_paths=FAST_PATHS))  # the probe runs (stock run too)
    assert breakers.of(app)[resilience.POSTGRESQL]._lock_free is False
    with app.test_client() as client:
        assert client.get("/health/ready").status_code == 200
        assert client.get("/products").status_code == 200
    assert len(fallback_warnings(caplog)) == 1
