"""A steady HTTP load for fault tests, and reading the server's /metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import requests
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Outcome:
    """One request: when it started (monotonic), how long it took, its status or the error it raised."""

    started: float
    elapsed: float
    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status == 200


class SteadyLoad:
    """`rate` requests per second spread over `threads` keep-alive sessions, until the block exits.

    `url_for(n)` gives the URL of the n-th request. Every request is recorded in `outcomes`.
    """

    def __init__(self, url_for: Callable[[int], str], rate: float, threads: int = 8, timeout: float = 15.0) -> None:
        self.url_for = url_for
        self.interval = 1.0 / rate
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next_slot = 0.0
        self._count = 0

    def __enter__(self) -> SteadyLoad:
        self._next_slot = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _take_slot(self) -> tuple[float, int]:
        with self._lock:
            slot, number = self._next_slot, self._count
            self._next_slot += self.interval
            self._count += 1
        return slot, number

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                slot, number = self._take_slot()
                delay = slot - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                started = time.monotonic()
                try:
                    response = session.get(self.url_for(number), timeout=self.timeout)
                    outcome = Outcome(started, time.monotonic() - started, response.status_code, None)
                except requests.RequestException as exc:
                    outcome = Outcome(started, time.monotonic() - started, None, f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.outcomes.append(outcome)

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [outcome for outcome in self.outcomes if not outcome.ok]

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the server's /metrics, keyed by (name, sorted labels)."""
    response = requests.get(base_url + "/metrics", timeout=10)
    response.raise_for_status()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, /, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)
