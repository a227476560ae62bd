"""A simulator run: schedules generation for N devices, stores samples in the outbox, drives the links."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from simulator.generator import SampleGenerator, device_rng
from simulator.link import DeviceLink
from simulator.noise import shared_table
from simulator.outbox import Outbox, StoredSample
from simulator.profile import Profile
from simulator.wire import LinkOptions

log = logging.getLogger("simulator.runner")

EXIT_OK, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 130
MAX_SAMPLES_PER_TICK = 25
MIN_TICK_S = 0.02
MAX_LAG_S = 1.0


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, already validated by the CLI."""

    device_ids: list[str]
    tokens: dict[str, str]
    profile: Profile
    link: LinkOptions
    interval_s: float = 5.0
    count: int | None = None
    duration_s: float | None = None
    seed: int | None = None
    outbox_path: Path | str = Path(".local/simulator/outbox.sqlite3")
    status_interval_s: float = 5.0
    drain_timeout_s: float = 60.0
    max_pending: int = 5000
    pool: int = 0


@dataclass
class RunResult:
    """Totals of a run; `exit_code` is what `python -m simulator` returns."""

    exit_code: int
    generated: int
    acked: int
    duplicates: int
    rejected: int
    pending: int
    sent: int
    resent: int
    restored: int
    skipped: int
    connections_dropped: int
    elapsed_s: float
    failed_devices: dict[str, str] = field(default_factory=dict)
    last_errors: dict[str, str] = field(default_factory=dict)
    ack_latency_ms: dict[str, float] = field(default_factory=dict)
    delivery_latency_ms: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    grades: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return dict(vars(self))


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def _latency_summary(seconds: Iterable[float]) -> dict[str, float]:
    values = [value * 1000.0 for value in seconds]
    return {
        "p50": round(_percentile(values, 0.5), 2),
        "p99": round(_percentile(values, 0.99), 2),
        "max": round(max(values, default=0.0), 2),
    }


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("outbox write failed", exc_info=future.exception())


class Runner:
    """Owns the outbox, one generator and one link per device, and the status line.

    Outbox writes run on one dedicated thread, in submission order: a commit (and now and then a WAL
    checkpoint) would otherwise stall the event loop, and with it the reading of every device's acks.
    """

    def __init__(self, config: RunConfig, status_stream: TextIO | None = None) -> None:
        self.config = config
        self.outbox = Outbox(config.outbox_path)
        self._outbox_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._status_stream = status_stream if status_stream is not None else sys.stderr
        self._acked_keys: list[tuple[str, int]] = []
        self.generated = 0
        self.skipped = 0
        self.restored = 0
        self.grades: dict[str, int] = {}
        self.generators = [
            SampleGenerator(
                device_id, config.profile, device_rng(config.seed, device_id), config.pool, shared_table(config.seed)
            )
            for device_id in config.device_ids
        ]
        self.links = [
            DeviceLink(device_id, config.tokens[device_id], config.link, self._acked, self._rejected)
            for device_id in config.device_ids
        ]
        self._next_seq = [self.outbox.last_seq(device_id) + 1 for device_id in config.device_ids]
        for link in self.links:
            waiting = self.outbox.pending(link.device_id)
            self.restored += len(waiting)
            link.enqueue(waiting)

    # -- callbacks from the links ----------------------------------------------------------------------
    def _acked(self, sample: StoredSample, status: str) -> None:
        self._acked_keys.append((sample.device_id, sample.seq))

    def _rejected(self, sample: StoredSample, reason: str) -> None:
        self._outbox_io.submit(self.outbox.reject, sample.device_id, sample.seq, reason).add_done_callback(_log_failure)

    async def _flush_acks(self) -> None:
        keys, self._acked_keys = self._acked_keys, []
        if keys:
            # Shielded: once taken from the list, the keys are removed even if this task is being cancelled.
            await asyncio.shield(asyncio.wrap_future(self._outbox_io.submit(self.outbox.remove, keys)))

    # -- tasks -------------------------------------------------------------------------------------------
    async def _generate(self, stop: asyncio.Event) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        count = len(self.links)
        start = loop.time()
        end = start + config.duration_s if config.duration_s is not None else math.inf
        due = [start + config.interval_s * i / count for i in range(count)]
        made = [0] * count
        limit = config.count if config.count is not None else math.inf
        turn = 0
        while not stop.is_set():
            now = loop.time()
            if now >= end or all(n >= limit for n in made):
                break
            new: list[StoredSample] = []
            by_device: list[list[StoredSample]] = [[] for _ in range(count)]
            for offset in range(count):
                i = (turn + offset) % count
                if due[i] < now - MAX_LAG_S:
                    # Generation cannot keep up (CPU): skip the backlog rather than burst, and say so.
                    self.skipped += int((now - due[i]) / config.interval_s) if config.interval_s > 0 else 0
                    due[i] = now
                link = self.links[i]
                while due[i] <= now and made[i] < limit and len(new) < MAX_SAMPLES_PER_TICK:
                    due[i] += config.interval_s
                    if link.pending + len(by_device[i]) >= config.max_pending:
                        # Back-pressure: the device skips measurements while its outbox is full.
                        self.skipped += 1 if config.interval_s > 0 else 0
                        break
                    sample = self.generators[i].next_sample(self._next_seq[i])
                    self._next_seq[i] += 1
                    made[i] += 1
                    self.grades[sample.grade] = self.grades.get(sample.grade, 0) + 1
                    stored = StoredSample(sample.device_id, sample.seq, sample.sample_id, sample.payload)
                    new.append(stored)
                    by_device[i].append(stored)
            turn += 1
            if new:
                await loop.run_in_executor(self._outbox_io, self.outbox.add, new)  # durable before it can be sent
                self.generated += len(new)
                for link, samples in zip(self.links, by_device, strict=True):
                    if samples:
                        link.enqueue(samples)
            pending_due = [d for d, n in zip(due, made, strict=True) if n < limit]
            wake = min(min(pending_due, default=now), end)
            delay = wake - loop.time()
            # Behind schedule: only yield to the links; ahead: sleep at least a tick so samples group per write.
            await asyncio.sleep(max(delay, MIN_TICK_S) if delay > 0 else 0)

    async def _flush_acks_periodically(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            await self._flush_acks()

    async def _status(self) -> None:
        previous = (time.monotonic(), self._total("acked"), self.generated)
        while True:
            await asyncio.sleep(self.config.status_interval_s)
            previous = self._print_status(previous)

    def _total(self, name: str) -> int:
        return sum(int(getattr(link.stats, name)) for link in self.links)

    def _print_status(self, previous: tuple[float, int, int]) -> tuple[float, int, int]:
        now, acked = time.monotonic(), self._total("acked")
        elapsed = max(now - previous[0], 1e-9)
        connected = sum(link.connected for link in self.links)
        pending = sum(link.pending for link in self.links)
        line = (
            f"[simulator] {connected}/{len(self.links)} connected | generated {self.generated} "
            f"sent {self._total('sent')} acked {acked} (dup {self._total('duplicates')}) pending {pending} "
            f"rejected {self._total('rejected')} | {(acked - previous[1]) / elapsed:.1f} acked/s "
            f"{(self.generated - previous[2]) / elapsed:.1f} generated/s"
            + (f" | skipped {self.skipped} (behind schedule)" if self.skipped else "")
        )
        print(line, file=self._status_stream, flush=True)
        return now, acked, self.generated

    async def _wait_drained(self, stop: asyncio.Event) -> bool:
        deadline = time.monotonic() + self.config.drain_timeout_s
        while not stop.is_set() and time.monotonic() < deadline:
            if all(link.pending == 0 or link.failed for link in self.links):
                return True
            await asyncio.sleep(0.05)
        return False

    async def run(self, interrupted: asyncio.Event) -> RunResult:
        """Generate, deliver and drain; `interrupted` (Ctrl-C) stops everything, keeping the outbox."""
        started = time.monotonic()
        links_stop = asyncio.Event()
        link_tasks = [asyncio.create_task(link.run(links_stop)) for link in self.links]
        helpers = [asyncio.create_task(self._flush_acks_periodically()), asyncio.create_task(self._status())]
        finite = self.config.count is not None or self.config.duration_s is not None
        try:
            generator = asyncio.create_task(self._generate(interrupted))
            stopper = asyncio.create_task(interrupted.wait())
            await asyncio.wait({generator, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if generator.done():
                generator.result()
            else:
                generator.cancel()
            if finite and not interrupted.is_set():
                await self._wait_drained(interrupted)
        finally:
            links_stop.set()
            await asyncio.gather(*link_tasks, return_exceptions=True)
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._flush_acks()
        self._print_status((started, 0, 0))
        return self._result(started, interrupted.is_set())

    def _result(self, started: float, interrupted: bool) -> RunResult:
        pending = sum(link.pending for link in self.links)
        rejected = self._total("rejected")
        failed = {link.device_id: link.failed for link in self.links if link.failed}
        if interrupted:
            code = EXIT_INTERRUPTED
        elif pending or rejected or failed:
            code = EXIT_INCOMPLETE
        else:
            code = EXIT_OK
        return RunResult(
            exit_code=code,
            generated=self.generated,
            acked=self._total("acked"),
            duplicates=self._total("duplicates"),
            rejected=rejected,
            pending=pending,
            sent=self._total("sent"),
            resent=self._total("resent"),
            restored=self.restored,
            skipped=self.skipped,
            connections_dropped=self._total("dropped"),
            elapsed_s=round(time.monotonic() - started, 3),
            failed_devices=failed,
            last_errors={link.device_id: link.last_error for link in self.links if link.pending and link.last_error},
            ack_latency_ms=_latency_summary(v for link in self.links for v in link.stats.ack_latencies_s),
            delivery_latency_ms=_latency_summary(v for link in self.links for v in link.stats.delivery_latencies_s),
            frames=self._total("frames"),
            grades=dict(sorted(self.grades.items())),
        )

    def close(self) -> None:
        """Finish pending outbox writes and close it (its unacked samples stay on disk for the next run)."""
        self._outbox_io.shutdown(wait=True)
        self.outbox.close()
