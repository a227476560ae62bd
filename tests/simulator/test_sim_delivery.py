"""Delivery against a misbehaving in-test server: every sample acked once, none lost, none stored twice."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from simulator.runner import EXIT_INCOMPLETE, EXIT_OK, Runner
from tests.simulator.fake_server import Chaos, FakeSensorServer
from tests.simulator.helpers import CountingRunner, device_ids, run_config, run_to_end, server_tokens

CHAOS = Chaos(drop_before_store=0.03, drop_after_store=0.03, duplicate_ack=0.1, rate_limit=0.02)


@pytest.mark.parametrize("batch", [0, 20], ids=["sensor_data", "sensor_batch"])
def test_random_drops_and_duplicates_lose_nothing(tmp_path: Path, batch: int) -> None:
    ids = device_ids(5)
    chaos = CHAOS if batch == 0 else Chaos(drop_before_store=0.15, drop_after_store=0.15, duplicate_ack=0.3)

    async def scenario() -> None:
        async with FakeSensorServer(server_tokens(ids), chaos, seed=batch) as server:
            runner = CountingRunner(run_config(server.url, ids, tmp_path / "outbox.db", {"batch": batch}, count=200))
            result = await run_to_end(runner)
            assert result.exit_code == EXIT_OK
            assert result.generated == result.acked == 1000
            assert result.pending == result.rejected == 0
            # Acked exactly once from the simulator's view, even when the server repeats its acks.
            assert len(runner.ack_counts) == 1000
            assert set(runner.ack_counts.values()) == {1}
            # No sample lost: every device's seqs 1..200 are stored, once each (the store is keyed).
            assert server.stored_seqs() == {device_id: list(range(1, 201)) for device_id in ids}
            # The chaos really happened: connections dropped, resends answered as duplicates.
            assert server.drops > 0
            assert server.duplicates_received > 0
            assert result.resent > 0
            # A "duplicate" status only ever comes from a resend the server already had.
            assert 0 < result.duplicates <= server.duplicates_received

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == 0


def test_drops_on_both_sides_lose_nothing(tmp_path: Path) -> None:
    ids = device_ids(3)
    server_chaos = Chaos(drop_after_store=0.05, duplicate_ack=0.05)

    async def scenario() -> None:
        async with FakeSensorServer(server_tokens(ids), server_chaos, seed=4) as server:
            link = {"drop_probability": 0.1, "window": 4}
            runner = CountingRunner(run_config(server.url, ids, tmp_path / "o.db", link, count=100))
            result = await run_to_end(runner)
            assert result.exit_code == EXIT_OK
            assert result.connections_dropped > 0
            assert server.drops > 0
            assert set(runner.ack_counts.values()) == {1}
            assert len(runner.ack_counts) == 300
            assert server.stored_seqs() == {device_id: list(range(1, 101)) for device_id in ids}

    asyncio.run(scenario())


def test_rate_limited_frames_are_resent_after_retry_after(tmp_path: Path) -> None:
    ids = device_ids(2)

    async def scenario() -> None:
        async with FakeSensorServer(server_tokens(ids), Chaos(rate_limit=0.3), seed=3) as server:
            runner = CountingRunner(run_config(server.url, ids, tmp_path / "o.db", count=30))
            result = await run_to_end(runner)
            assert result.exit_code == EXIT_OK
            assert sum(link.stats.rate_limited for link in runner.links) > 0
            assert server.stored_seqs() == {device_id: list(range(1, 31)) for device_id in ids}

    asyncio.run(scenario())


def test_token_in_query_string_is_accepted(tmp_path: Path) -> None:
    ids = device_ids(1)

    async def scenario() -> None:
        async with FakeSensorServer(server_tokens(ids)) as server:
            config = run_config(server.url, ids, tmp_path / "o.db", {"token_in_query": True}, count=5)
            result = await run_to_end(Runner(config))
            assert result.exit_code == EXIT_OK
            assert len(server.stored) == 5

    asyncio.run(scenario())


@pytest.mark.parametrize("disabled", [False, True], ids=["unknown-token", "disabled-device"])
def test_refused_authentication_gives_up_and_keeps_the_samples(tmp_path: Path, disabled: bool) -> None:
    ids = device_ids(1)
    known = server_tokens(ids) if disabled else {"some-other-token": ids[0]}

    async def scenario() -> None:
        server_disabled = set(ids) if disabled else set()
        async with FakeSensorServer(known, disabled=server_disabled) as server:
            config = run_config(server.url, ids, tmp_path / "o.db", {"max_auth_failures": 2}, count=4)
            result = await run_to_end(Runner(config))
            assert result.exit_code == EXIT_INCOMPLETE
            assert "authentication refused" in result.failed_devices[ids[0]]
            assert result.pending == 4
            assert server.auth_refusals == 2
            assert server.stored == {}

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == 4


def test_samples_the_server_rejects_are_dead_lettered(tmp_path: Path) -> None:
    ids = device_ids(1)
    # The token belongs to another device: every frame's device_id mismatches -> validation_error.
    tokens = {f"token-{ids[0]}": "ESP32_LL_99"}

    async def scenario() -> None:
        async with FakeSensorServer(tokens) as server:
            for batch in (0, 3):
                config = run_config(server.url, ids, tmp_path / f"o{batch}.db", {"batch": batch}, count=3)
                result = await run_to_end(Runner(config))
                assert result.exit_code == EXIT_INCOMPLETE
                assert result.rejected == 3
                assert result.pending == 0
            assert all(problems == ["device_id"] for _, problems in server.invalid)

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / "o0.db") as db:
        reasons = [json.loads(row[0]) for row in db.execute("SELECT reason FROM rejected")]
    assert len(reasons) == 3
    assert {reason["code"] for reason in reasons} == {"validation_error"}


def test_heartbeat_pings_are_answered(tmp_path: Path) -> None:
    ids = device_ids(1)

    async def scenario() -> None:
        async with FakeSensorServer(server_tokens(ids)) as server:
            config = run_config(server.url, ids, tmp_path / "o.db", {"heartbeat_s": 0.05}, count=2, interval_s=0.4)
            runner = CountingRunner(config)
            result = await run_to_end(runner)
            assert result.exit_code == EXIT_OK
            # While idle between the two samples the link pings; each ping gets its pong (latency recorded).
            pings = server.frames_received - 2
            assert pings >= 2
            assert len(runner.links[0].stats.latencies_s) == pings + 2

    asyncio.run(scenario())


def test_status_line_reports_progress(tmp_path: Path) -> None:
    ids = device_ids(2)

    async def scenario() -> None:
        async with FakeSensorServer(server_tokens(ids)) as server:
            runner = CountingRunner(
                run_config(server.url, ids, tmp_path / "o.db", count=20, interval_s=0.01, status_interval_s=0.05)
            )
            await run_to_end(runner)
            lines = runner.status_text.splitlines()
            assert len(lines) >= 2
            assert "generated 40 sent 40 acked 40 (dup 0) pending 0 rejected 0" in lines[-1]
            assert all("acked/s" in line and "connected" in line for line in lines)

    asyncio.run(scenario())
