"""One device's WebSocket link: sends unacked samples, matches replies, reconnects with backoff + jitter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from simulator.outbox import StoredSample
from simulator.wire import Frame, LinkOptions, LinkStats, frame_text

log = logging.getLogger("simulator.link")

AUTH_ERRORS = frozenset({"unauthorized", "device_disabled"})
_BATCH_ENVELOPE_BYTES = 200


AckCallback = Callable[[StoredSample, str], None]
RejectCallback = Callable[[StoredSample, str], None]


class DeviceLink:
    """Keeps every unacked sample of one device and delivers it at least once."""

    def __init__(
        self,
        device_id: str,
        token: str,
        options: LinkOptions,
        on_acked: AckCallback,
        on_rejected: RejectCallback,
        rng: random.Random | None = None,
    ) -> None:
        self.device_id = device_id
        self.options = options
        self.stats = LinkStats()
        self.connected = False
        self.failed: str | None = None
        self.last_error: str | None = None
        self._token = token
        self._on_acked = on_acked
        self._on_rejected = on_rejected
        self._rng = rng or random.Random()
        # Devices of a line boot at different moments, so their batches do not all leave in the same instant: the
        # first batch waits a random part of the linger delay after the first connection (every device connects at
        # about the same time, with samples already waiting); that sets this device's linger clock.
        self._phase_s = options.linger_s * self._rng.random()
        self._hold_until: float | None = None
        self._unacked: dict[str, StoredSample] = {}
        self._enqueued_at: dict[str, float] = {}  # sample_id -> when the link first got it (generation)
        self._queue: deque[tuple[StoredSample, float]] = deque()
        self._inflight: deque[Frame] = deque()
        self._sent_once: set[str] = set()
        self._wake = asyncio.Event()
        self._paused_until = 0.0
        self._batch_limit = options.batch
        self._max_bytes = options.max_message_bytes
        self._frame_counter = 0
        self._auth_failures = 0
        self._healthy = False
        self._last_send = 0.0

    # -- state -----------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Samples not yet acked or rejected."""
        return len(self._unacked)

    def enqueue(self, samples: Iterable[StoredSample]) -> None:
        """Hand new (already stored) samples to the link, in seq order."""
        now = time.monotonic()
        was_empty = not self._queue
        for sample in samples:
            self._unacked[sample.sample_id] = sample
            self._enqueued_at.setdefault(sample.sample_id, now)
            self._queue.append((sample, now))
        # A partial batch waits for its linger deadline, which the sender already sleeps towards.
        if was_empty or self._batch_limit <= 1 or len(self._queue) >= self._batch_limit:
            self._wake.set()

    def _requeue(self, samples: Iterable[StoredSample]) -> None:
        back = [(s, 0.0) for s in samples if s.sample_id in self._unacked]
        if back:
            self._queue = deque(sorted([*back, *self._queue], key=lambda item: item[0].seq))
            self._wake.set()

    # -- connection loop -----------------------------------------------------------------------------
    def _connect_args(self) -> tuple[str, dict[str, str]]:
        if not self.options.token_in_query:
            return self.options.url, {"Authorization": f"Bearer {self._token}"}
        parts = urlsplit(self.options.url)
        query = "&".join(q for q in (parts.query, urlencode({"token": self._token})) if q)
        return urlunsplit(parts._replace(query=query)), {}

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, deliver, reconnect with exponential backoff and full jitter, until `stop` is set."""
        attempt = 0
        url, headers = self._connect_args()
        while not stop.is_set() and self.failed is None:
            self._healthy = False
            try:
                async with connect(
                    url,
                    additional_headers=headers,
                    open_timeout=self.options.open_timeout_s,
                    compression=None,
                    proxy=None,
                    close_timeout=2,
                ) as ws:
                    await self._session(ws, stop)
            except InvalidStatus as exc:
                status = exc.response.status_code
                self.last_error = f"handshake refused with HTTP {status}"
                log.warning("%s: handshake refused with HTTP %s", self.device_id, status)
                if status in (401, 403):
                    self._auth_failed(f"HTTP {status}")
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.last_error = repr(exc)
                log.debug("%s: connection lost: %r", self.device_id, exc)
            finally:
                if self.connected:
                    self.stats.disconnects += 1
                self.connected = False
            if stop.is_set() or self.failed is not None:
                break
            if self._healthy:
                attempt, self._auth_failures = 0, 0
            else:
                attempt += 1
            ceiling = min(self.options.backoff_max_s, self.options.backoff_base_s * 2 ** max(attempt - 1, 0))
            delay = self._rng.uniform(0.0, ceiling) if attempt else self._rng.uniform(0.0, 0.1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    def _auth_failed(self, reason: str) -> None:
        self._auth_failures += 1
        if self._auth_failures >= self.options.max_auth_failures:
            self.failed = f"authentication refused ({reason}) {self._auth_failures} times"
            log.error("%s: %s, giving up", self.device_id, self.failed)

    async def _session(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        self.connected = True
        self.stats.connects += 1
        self._last_send = time.monotonic()
        if self._hold_until is None:
            self._hold_until = self._last_send + self._phase_s
        # Anything unanswered on the previous connection may or may not be stored: resend it all, in order.
        self._inflight.clear()
        self._queue = deque((s, 0.0) for s in sorted(self._unacked.values(), key=lambda s: s.seq))
        tasks = {
            asyncio.create_task(self._send_loop(ws)),
            asyncio.create_task(self._receive_loop(ws)),
            asyncio.create_task(stop.wait()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()

    async def _receive_loop(self, ws: ClientConnection) -> None:
        async for message in ws:
            self._handle(message if isinstance(message, str) else message.decode("utf-8", "replace"))

    async def _send_loop(self, ws: ClientConnection) -> None:
        options = self.options
        while True:
            now = time.monotonic()
            if self._inflight and now - self._inflight[0].sent_at > options.reply_timeout_s:
                log.warning("%s: no reply for %.0f s, reconnecting", self.device_id, options.reply_timeout_s)
                return
            if self._paused_until > now:
                await asyncio.sleep(self._paused_until - now)
                continue
            wait = self._next_wait(now)
            if wait is None:
                frame = self._take_frame(now)
                if frame is None:
                    continue
                self._inflight.append(frame)
                self._last_send = now
                await ws.send(frame_text(self.device_id, frame))
                if options.drop_probability and self._rng.random() < options.drop_probability:
                    # Fault injection: vanish like a device losing Wi-Fi, before the reply arrives.
                    self.stats.dropped += 1
                    ws.transport.abort()
                    return
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def _next_wait(self, now: float) -> float | None:
        """None when a frame can be sent now, else how long to wait at most before looking again."""
        options = self.options
        idle_check = options.reply_timeout_s / 4
        if len(self._inflight) >= options.window:
            return idle_check
        while self._queue and self._queue[0][0].sample_id not in self._unacked:
            self._queue.popleft()
        if not self._queue:
            if options.heartbeat_s and not self._inflight and now - self._last_send >= options.heartbeat_s:
                return None
            return min(idle_check, options.heartbeat_s or idle_check)
        if self._batch_limit <= 1:
            return None
        if self._hold_until is not None and now < self._hold_until:
            return self._hold_until - now
        if len(self._queue) >= self._batch_limit:
            return None
        deadline = self._batch_deadline(self._queue[0][1])
        return None if now >= deadline else deadline - now

    def _batch_deadline(self, oldest: float) -> float:
        """When a partial batch whose oldest sample is from `oldest` leaves: at the first tick of this device's
        linger clock (ticks every linger_s from its first batch) at or after `oldest`, as a device's batching timer.

        Fixed ticks keep each device on its own phase: a deadline counted from the moment the last batch left would
        move every device held up by one stall (of the event loop, the network or the server) to the stall's end,
        and the line would drift into bursts of every device at once. The last partial batch of a run also waits
        for its tick, so a run does not end with every device sending at the same instant.
        """
        linger = self.options.linger_s
        start = self._hold_until
        if start is None or linger <= 0 or oldest <= start:
            return oldest + linger if start is None else start
        return start + math.ceil((oldest - start) / linger) * linger

    def _take_frame(self, now: float) -> Frame | None:
        self._frame_counter += 1
        if not self._queue:
            return Frame("ping", self._frame_counter, [], now)
        samples: list[StoredSample] = []
        size = _BATCH_ENVELOPE_BYTES
        limit = max(1, self._batch_limit)
        while self._queue and len(samples) < limit:
            sample = self._queue[0][0]
            if sample.sample_id not in self._unacked:
                self._queue.popleft()
                continue
            if samples and size + len(sample.payload) + 1 > self._max_bytes:
                break
            self._queue.popleft()
            samples.append(sample)
            size += len(sample.payload) + 1
        if not samples:
            return None
        for sample in samples:
            if sample.sample_id in self._sent_once:
                self.stats.resent += 1
            else:
                self._sent_once.add(sample.sample_id)
        self.stats.sent += len(samples)
        self.stats.frames += 1
        if self._batch_limit <= 1:
            return Frame("sample", samples[0].sample_id, samples, now)
        return Frame("batch", f"{self.device_id}-{self._frame_counter:06d}", samples, now)

    # -- replies ---------------------------------------------------------------------------------------
    def _pop_frame(self, kind: str | None, key: Any) -> Frame | None:
        for index, frame in enumerate(self._inflight):
            if (kind is None or frame.kind == kind) and (key is None or frame.key == key):
                del self._inflight[index]
                return frame
        return None

    def _handle(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            log.warning("%s: non-JSON reply ignored: %.80s", self.device_id, text)
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "ack":
            frame = self._pop_frame("sample", message.get("sample_id"))
            self._record_latency(frame)
            self._acknowledge(message.get("sample_id"), message.get("status"))
        elif kind == "batch_ack":
            self._on_batch_ack(message)
        elif kind == "pong":
            self._record_latency(self._pop_frame("ping", message.get("ts")))
            self._healthy = True
        elif kind == "error":
            self._on_error(message)
        else:
            log.warning("%s: unknown reply type %r ignored", self.device_id, kind)
        self._wake.set()

    def _record_latency(self, frame: Frame | None) -> None:
        if frame is not None:
            latency = time.monotonic() - frame.sent_at
            self.stats.latencies_s.append(latency)
            if frame.samples:
                self.stats.ack_latencies_s.append(latency)

    def _acknowledge(self, sample_id: Any, status: Any) -> None:
        sample = self._unacked.pop(sample_id, None) if isinstance(sample_id, str) else None
        if sample is None:
            self.stats.stray_acks += 1
            return
        self._healthy = True
        self._sent_once.discard(sample_id)
        self.stats.acked += 1
        enqueued_at = self._enqueued_at.pop(sample_id, None)
        if enqueued_at is not None:
            self.stats.delivery_latencies_s.append(time.monotonic() - enqueued_at)
        if status == "duplicate":
            self.stats.duplicates += 1
        self._on_acked(sample, str(status))

    def _reject(self, sample: StoredSample, reason: str) -> None:
        if self._unacked.pop(sample.sample_id, None) is None:
            return
        self._sent_once.discard(sample.sample_id)
        self._enqueued_at.pop(sample.sample_id, None)
        self.stats.rejected += 1
        log.warning("%s: sample %s rejected: %.300s", self.device_id, sample.sample_id, reason)
        self._on_rejected(sample, reason)

    def _on_batch_ack(self, message: dict[str, Any]) -> None:
        frame = self._pop_frame("batch", message.get("batch_id"))
        self._record_latency(frame)
        acks = message.get("acks") or []
        for ack in acks:
            if isinstance(ack, dict):
                self._acknowledge(ack.get("sample_id"), ack.get("status"))
        for error in message.get("errors") or []:
            if isinstance(error, dict):
                sample = self._error_sample(error, frame)
                if sample is not None:
                    self._reject(sample, json.dumps(error)[:2000])
        if frame is not None:
            # A sample the server left out of both lists was not handled: send it again.
            self._requeue(frame.samples)

    def _error_sample(self, error: dict[str, Any], frame: Frame | None) -> StoredSample | None:
        sample_id, index = error.get("sample_id"), error.get("index")
        if isinstance(sample_id, str):
            return self._unacked.get(sample_id)
        if frame is not None and isinstance(index, int) and 0 <= index < len(frame.samples):
            return frame.samples[index]
        return None

    def _on_error(self, message: dict[str, Any]) -> None:
        code = message.get("code")
        if message.get("batch_id") is not None:
            frame = self._pop_frame("batch", message.get("batch_id"))
        elif message.get("sample_id") is not None:
            frame = self._pop_frame("sample", message.get("sample_id"))
        else:
            # Replies come in order: an error naming no frame answers the oldest unanswered one.
            frame = self._pop_frame(None, None)
        samples = frame.samples if frame else []
        reason = json.dumps(message)[:2000]
        if code in AUTH_ERRORS:
            log.error("%s: %s: %s", self.device_id, code, message.get("message", ""))
            self._auth_failed(str(code))
        elif code == "validation_error" and frame is not None and frame.kind == "batch":
            # The envelope itself was refused (e.g. a smaller server batch limit): retry with smaller batches.
            self._batch_limit = max(1, self._batch_limit // 2)
            log.warning("%s: batch refused, batch size now %d: %s", self.device_id, self._batch_limit, reason)
            self._requeue(samples)
        elif code in ("validation_error", "invalid_json", "unknown_type", "conflict"):
            sample_id = message.get("sample_id")
            named = self._unacked.get(sample_id) if isinstance(sample_id, str) else None
            for sample in samples or ([named] if named is not None else []):
                self._reject(sample, reason)
        elif code == "rate_limited":
            self.stats.rate_limited += 1
            retry_after = message.get("retry_after")
            delay = float(retry_after) if isinstance(retry_after, int | float) and retry_after > 0 else 1.0
            self._paused_until = max(self._paused_until, time.monotonic() + min(delay, 300.0))
            self._requeue(samples)
        elif code == "message_too_large":
            self._max_bytes = max(16_384, self._max_bytes // 2)
            self._requeue(samples)
        else:
            log.warning("%s: server error %s, will resend: %.200s", self.device_id, code, reason)
            self._paused_until = max(self._paused_until, time.monotonic() + 1.0)
            self._requeue(samples)
