"""Helpers for the simulator tests: device ids, tokens, fast-retry run configurations, a counting runner."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from pathlib import Path
from typing import Any

from simulator.outbox import StoredSample
from simulator.profile import load_profile
from simulator.runner import RunConfig, Runner, RunResult
from simulator.wire import LinkOptions


def device_ids(count: int) -> list[str]:
    return [f"ESP32_LL_{n:02d}" for n in range(1, count + 1)]


def server_tokens(ids: list[str]) -> dict[str, str]:
    """token -> device id, as a server would resolve them."""
    return {f"token-{device_id}": device_id for device_id in ids}


def run_config(url: str, ids: list[str], outbox: Path, link: dict[str, Any] | None = None, **run: Any) -> RunConfig:
    """A configuration with quick reconnects, for runs against the in-test server."""
    # A reply lost on a connection that stays open costs reply_timeout_s before the link reconnects and resends; with
    # the 30 s default it would use up the whole drain timeout (seen as a rare 30 s stall in CI).
    link_options: dict[str, Any] = {
        "url": url,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.1,
        "linger_s": 0.05,
        "reply_timeout_s": 3.0,
    }
    link_options |= link or {}
    values: dict[str, Any] = {
        "interval_s": 0.0,
        "count": 10,
        "seed": 7,
        "status_interval_s": 60.0,
        "drain_timeout_s": 30.0,
    } | run
    return RunConfig(
        device_ids=ids,
        tokens={device_id: f"token-{device_id}" for device_id in ids},
        profile=load_profile(),
        link=LinkOptions(**link_options),
        outbox_path=outbox,
        **values,
    )


class CountingRunner(Runner):
    """A Runner that records how many times each sample was reported acked."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config, status_stream=io.StringIO())
        self.ack_counts: Counter[tuple[str, int]] = Counter()

    def _acked(self, sample: StoredSample, status: str) -> None:
        self.ack_counts[(sample.device_id, sample.seq)] += 1
        super()._acked(sample, status)

    @property
    def status_text(self) -> str:
        stream = self._status_stream
        assert isinstance(stream, io.StringIO)
        return stream.getvalue()


async def run_to_end(runner: Runner, interrupt_after: float | None = None) -> RunResult:
    """Run, optionally interrupting (like Ctrl-C) after some seconds; the outbox is closed afterwards."""
    interrupted = asyncio.Event()
    if interrupt_after is not None:
        asyncio.get_running_loop().call_later(interrupt_after, interrupted.set)
    try:
        return await runner.run(interrupted)
    finally:
        runner.close()
