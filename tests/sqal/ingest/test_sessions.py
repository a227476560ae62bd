"""The device-session registry against the real Redis (several registries stand for several workers): take-over
order, the eviction notice, the tombstone that catches a missed notice, and the per-process cap without Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from apiflask import APIFlask

from backend import create_app
from backend.sqal.ingest.sessions import DeviceSession, SessionRegistry
from scripts.services import TestServices
from tests.sqal.helpers import unique_device_id


class FakeSocket:
    """What `DeviceSession.wake` touches on a simple-websocket Server."""

    def __init__(self) -> None:
        self.input_buffer: list[Any] = []
        self.event = threading.Event()


def session(device_id: str, opened_ms: int) -> DeviceSession:
    return DeviceSession(FakeSocket(), device_id, "digest", opened_ns=opened_ms * 1_000_000)  # type: ignore[arg-type]


def no_credential_problem(_device_id: str, _token_hash: str) -> None:
    return None


@pytest.fixture
def registries(app: APIFlask) -> Iterator[list[SessionRegistry]]:
    """Two registries on the session's Redis (cap 1): the second has no listener, like a worker missing notices."""
    made = [SessionRegistry(app, no_credential_problem), SessionRegistry(app, no_credential_problem)]
    made[1]._redis_url = ""  # no subscriber thread: notices never reach it
    yield made
    for registry in made:
        registry.stop()


def test_the_oldest_connection_is_replaced_even_when_it_is_the_newcomer(registries: list[SessionRegistry]) -> None:
    registry = registries[0]
    device_id, now = unique_device_id(), time.time_ns() // 1_000_000
    live, abandoned = session(device_id, now), session(device_id, now - 50)  # upgrade came first, admitted last
    registry.admit(live)
    registry.admit(abandoned)
    refusal = registry.refusal(abandoned)
    assert refusal is not None
    assert refusal.code == "session_replaced"
    assert registry.refusal(live) is None
    for each in (live, abandoned):
        registry.release(each)
    assert registry.local_count(device_id) == 0


def test_sockets_opened_within_one_millisecond_keep_their_order(registries: list[SessionRegistry]) -> None:
    """A device reconnecting at once opens its next socket within the millisecond of the last: the newer one wins."""
    registry = registries[0]
    for _ in range(20):  # with millisecond members the order of a tie was a coin toss
        device_id, now_ns = unique_device_id(), time.time_ns()
        older = DeviceSession(FakeSocket(), device_id, "digest", opened_ns=now_ns)  # type: ignore[arg-type]
        newer = DeviceSession(FakeSocket(), device_id, "digest", opened_ns=now_ns + 1_000)  # type: ignore[arg-type]
        registry.admit(older)
        registry.admit(newer)
        assert registry.refusal(newer) is None, "the newer socket of the same millisecond was replaced"
        refusal = registry.refusal(older)
        assert refusal is not None
        assert refusal.code == "session_replaced"
        for each in (older, newer):
            registry.release(each)


def test_the_notice_reaches_another_worker_and_a_missed_one_is_caught_at_renewal(
    registries: list[SessionRegistry],
) -> None:
    listening, deaf = registries
    device_id, now = unique_device_id(), time.time_ns() // 1_000_000
    first, missed = session(device_id, now - 20), session(device_id, now - 10)
    listening.admit(first)
    assert listening.wait_live(5)
    deaf.admit(missed)  # newer: takes over from `first`, in the other registry
    assert first.replaced.wait(5), "the eviction notice did not reach the other registry"
    assert first.ws.input_buffer, "the replaced socket's thread was not woken"  # type: ignore[attr-defined]
    newest = session(device_id, now)
    listening.admit(newest)  # takes over from `missed`, whose registry hears nothing
    assert not missed.replaced.is_set()
    missed.next_renewal = 0.0  # its next renewal finds the tombstone
    refusal = deaf.refusal(missed)
    assert refusal is not None
    assert refusal.code == "session_replaced"
    assert listening.refusal(newest) is None


def test_without_redis_the_cap_holds_within_the_process(services: TestServices) -> None:
    app = create_app({"app_env": "test", "database_url": services.database_url, "redis_url": "redis://127.0.0.1:9/0"})
    registry = SessionRegistry(app, no_credential_problem)
    registry._redis_url = ""
    device_id, now = unique_device_id(), time.time_ns() // 1_000_000
    older, newer = session(device_id, now - 10), session(device_id, now)
    registry.admit(older)
    registry.admit(newer)
    assert older.replaced.is_set()
    assert not newer.replaced.is_set()
    assert registry.refusal(newer) is None  # the failed renewal keeps the session (fail open)
    for each in (older, newer):
        registry.release(each)
    assert registry.local_count(device_id) == 0
