"""The sqlite outbox keeps every unacked sample across restarts; a new run resends them first."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from simulator.outbox import Outbox, StoredSample
from simulator.runner import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, Runner
from tests.simulator.fake_server import Chaos, FakeSensorServer
from tests.simulator.helpers import device_ids, run_config, run_to_end, server_tokens


def sample(device_id: str, seq: int) -> StoredSample:
    return StoredSample(device_id, seq, f"SAMPLE-20250114-093012-{seq:04d}", json.dumps({"seq": seq}))


def test_outbox_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "outbox.sqlite3"
    with Outbox(path) as outbox:
        outbox.add([sample("A", 1), sample("A", 2), sample("B", 1), sample("A", 3)])
        outbox.remove([("A", 2)])
        outbox.reject("A", 3, '{"code": "validation_error"}')
    with Outbox(path) as outbox:
        assert [s.seq for s in outbox.pending("A")] == [1]
        assert outbox.pending("B") == [sample("B", 1)]
        assert outbox.pending_count() == 2
        assert outbox.rejected_count() == 1
        # The sequence never goes back, even though seq 2 and 3 left the outbox.
        assert outbox.last_seq("A") == 3
        assert outbox.last_seq("C") == 0


def test_unacked_samples_are_kept_and_resent_by_the_next_run(tmp_path: Path) -> None:
    ids = device_ids(2)
    path = tmp_path / "outbox.sqlite3"

    async def scenario() -> None:
        # First run: the server takes frames but never answers -> nothing is acked.
        async with FakeSensorServer(server_tokens(ids), Chaos(silent=True)) as silent:
            config = run_config(silent.url, ids, path, count=5, drain_timeout_s=0.3)
            first = await run_to_end(Runner(config))
        assert first.exit_code == EXIT_INCOMPLETE
        assert first.pending == 10
        with Outbox(path) as outbox:
            assert outbox.pending_count() == 10

        # Second run against a healthy server: restores the 10, adds 3 per device, all acked.
        async with FakeSensorServer(server_tokens(ids)) as server:
            second = await run_to_end(Runner(run_config(server.url, ids, path, count=3)))
            assert second.exit_code == EXIT_OK
            assert second.restored == 10
            assert second.acked == 16
            # seq continues where the first run stopped, so sample ids never repeat.
            assert server.stored_seqs() == {device_id: list(range(1, 9)) for device_id in ids}
            assert len({sample_id for _, sample_id in server.stored}) == 8
        with Outbox(path) as outbox:
            assert outbox.pending_count() == 0

    asyncio.run(scenario())


def test_interrupted_run_keeps_its_outbox(tmp_path: Path) -> None:
    ids = device_ids(1)
    path = tmp_path / "outbox.sqlite3"

    async def scenario() -> None:
        async with FakeSensorServer(server_tokens(ids), Chaos(silent=True)) as silent:
            config = run_config(silent.url, ids, path, count=None, interval_s=0.02)
            result = await run_to_end(Runner(config), interrupt_after=0.4)
        assert result.exit_code == EXIT_INTERRUPTED
        assert result.generated > 3
        with Outbox(path) as outbox:
            assert outbox.pending_count() == result.generated == result.pending

    asyncio.run(scenario())


def test_full_outbox_makes_the_device_skip_measurements(tmp_path: Path) -> None:
    ids = device_ids(1)

    async def scenario() -> None:
        async with FakeSensorServer(server_tokens(ids), Chaos(silent=True)) as silent:
            config = run_config(
                silent.url,
                ids,
                tmp_path / "o.db",
                count=None,
                duration_s=0.4,
                interval_s=0.01,
                max_pending=3,
                drain_timeout_s=0.1,
            )
            result = await run_to_end(Runner(config))
        assert result.generated == result.pending == 3
        assert result.skipped > 10
        assert result.exit_code == EXIT_INCOMPLETE

    asyncio.run(scenario())
