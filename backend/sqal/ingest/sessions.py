"""Device sessions across workers and instances: the per-device socket cap and revocation that reaches open sockets.

Each open `/ws/sensors/` socket is a `DeviceSession`, bound at the handshake to its device and to the digest of the
token it authenticated with. `SessionRegistry` (one per worker process):

- **Cap** (`WS_DEVICE_MAX_SOCKETS`, docs/protocol.md §1): a Redis sorted set per device holds a lease per open socket
  (member `<connect time ms>-<random>`, score = lease expiry). Admission is one Lua script: drop expired leases, add
  the newcomer, and when the device has more than the cap, evict its OLDEST sessions (the newcomer takes over): their
  members are removed, a tombstone is set and an `evict` notice is published on the control channel, in the same
  atomic step. Every socket renews its lease every HEARTBEAT_SECONDS; a crashed worker's leases expire after
  LEASE_SECONDS (and take-over never waits for them anyway). A renewal that finds its tombstone means the notice
  was missed: the socket closes as replaced all the same.
- **Revocation**: the control channel's `recheck` notice (`backend.sqal.sessions`, sent by device administration
  after its commit) makes every local socket of the device re-check its credential against the database; every
  socket also re-checks every RECHECK_SECONDS, for notices lost while Redis was away.

Only the socket's own thread sends on its socket (simple-websocket is not safe for two senders): the listener and
other sockets only set a flag and wake that thread (`DeviceSession.wake`), which closes with 1008 itself.

Redis down: the cap is enforced per process only (a thief holds at most one socket per worker), revocation
still ends sessions within RECHECK_SECONDS, and every stored frame is checked against the credential anyway.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask
from simple_websocket import Server
from sqlalchemy.exc import SQLAlchemyError

from backend.base.errors import ServiceUnavailable
from backend.core.resilience import RedisUnavailable, ThrottledWarning, key_prefix
from backend.extensions import breakers
from backend.sqal import metrics
from backend.sqal.ingest.service import DeviceRejected
from backend.sqal.protocol import ErrorCode
from backend.sqal.pubsub import subscribe_loop
from backend.sqal.sessions import EVICT, RECHECK, control_channel

logger = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
HEARTBEAT_SECONDS = 10.0
RECHECK_SECONDS = 30.0
LISTENER_WAIT_SECONDS = 2.0
WAKE = object()  # queued into a socket's input buffer to wake its thread (see DeviceSession.wake)

# KEYS[1] the device's session set; ARGV: lease ms, newcomer, cap, channel, device_id, tombstone key prefix.
# Returns the evicted members: the oldest by connection time, which is the newcomer itself when its upgrade request
# arrived before a socket admitted meanwhile (its authentication was slower). Server TIME: one clock for leases.
_ADMIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease)
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(members)
local excess = #members - tonumber(ARGV[3])
local evicted = {}
for _, member in ipairs(members) do
    if excess <= 0 then break end
    redis.call('ZREM', KEYS[1], member)
    redis.call('SET', ARGV[6] .. member, '1', 'PX', lease)
    redis.call('PUBLISH', ARGV[4], cjson.encode({kind = 'evict', device_id = ARGV[5], session = member}))
    table.insert(evicted, member)
    excess = excess - 1
end
return evicted
"""
# KEYS[1] the device's session set, KEYS[2] the session's tombstone; ARGV: lease ms, member. 0 = evicted.
# A missing member without a tombstone (Redis restarted empty) is added back.
_RENEW = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

CredentialCheck = Callable[[str, str], DeviceRejected | None]


class DeviceSession:
    """One open device socket: its device, credential, lease member and the flags other threads set on it.

    Also what the shutdown coordinator tracks: its `close()` runs on the coordinator's thread, so it only flags the
    session and wakes the socket's thread, which then closes with 1001.
    """

    def __init__(self, ws: Server, device_id: str, token_hash: str, opened_ns: int | None = None) -> None:
        self.ws = ws
        self.device_id = device_id
        self.token_hash = token_hash
        # Ordered by when the upgrade request arrived (`opened_ns`), not by when authentication ended: a socket the
        # device already gave up on must not take over from the one it opened next.
        # Nanoseconds: a device that reconnects at once opens its next socket within the millisecond of the last one,
        # and a tie would leave the order to the random suffix (the newer socket was replaced half the time).
        opened = opened_ns if opened_ns is not None else time.time_ns()
        self.member = f"{opened:019d}-{uuid.uuid4().hex[:16]}"
        self.going_away = threading.Event()
        self.replaced = threading.Event()
        self.recheck = threading.Event()
        now = time.monotonic()
        self.next_renewal = now + HEARTBEAT_SECONDS
        self.next_recheck = now + RECHECK_SECONDS

    def until_next_check(self) -> float:
        """Seconds until the lease renewal or the credential re-check is due (how long a receive may wait)."""
        return max(0.0, min(self.next_renewal, self.next_recheck) - time.monotonic())

    def close(self, reason: Any = None, message: Any = None) -> None:
        self.going_away.set()
        self.wake()

    def wake(self) -> None:
        """Make the thread blocked in `receive()` return now."""
        try:  # simple-websocket 1.1 internals: a queued item plus the event make receive() return now
            self.ws.input_buffer.append(WAKE)
            self.ws.event.set()
        except AttributeError:  # other versions: the receive timeout notices the flags
            logger.debug("cannot wake the websocket thread", exc_info=True)


class SessionRegistry:
    """This process's device sessions, their Redis leases and the control-channel listener."""

    def __init__(self, app: Flask, check_credential: CredentialCheck) -> None:
        settings = app.config["SETTINGS"]
        self._redis_call = breakers.of(app).redis_call
        self.cap: int = settings.ws_device_max_sockets
        self.channel = control_channel(settings)
        self._prefix = key_prefix(settings) + "sqal:"
        self._redis_url: str = settings.redis_url
        self._check_credential = check_credential
        self._lock = threading.Lock()
        self._local: dict[str, dict[str, DeviceSession]] = {}
        self._pid: int | None = None
        self._stop = threading.Event()
        self._live = threading.Event()  # subscribed to the control channel
        self._degraded = ThrottledWarning(logger, "device_sessions_degraded")

    # -- lifecycle of one session --------------------------------------------------------------------
    def admit(self, session: DeviceSession) -> None:
        """Register the session; the device's oldest sessions beyond the cap are replaced (take-over)."""
        if self._ensure_listener():  # the process's first socket: a notice published before it listens is lost
            self._live.wait(LISTENER_WAIT_SECONDS)
        with self._lock:
            self._local.setdefault(session.device_id, {})[session.member] = session
        args = (LEASE_SECONDS * 1000, session.member, self.cap, self.channel, session.device_id, self._tombstone(""))
        try:
            evicted = self._redis_call(
                lambda client: client.register_script(_ADMIT)(keys=[self._set_key(session.device_id)], args=args)
            )
        except (RedisUnavailable, redis.RedisError) as exc:
            self._degraded.warn("device socket cap enforced per process only: Redis unavailable", exc)
            with self._lock:
                members = sorted(self._local.get(session.device_id, {}))
            evicted = members[: max(0, len(members) - self.cap)]
        for member in evicted:
            self._replace(session.device_id, _text(member))

    def release(self, session: DeviceSession) -> None:
        """Forget the session and give its lease back."""
        with self._lock:
            sessions = self._local.get(session.device_id, {})
            sessions.pop(session.member, None)
            if not sessions:
                self._local.pop(session.device_id, None)
        try:
            self._redis_call(lambda client: client.zrem(self._set_key(session.device_id), session.member))
        except (RedisUnavailable, redis.RedisError) as exc:  # the lease expires by itself
            self._degraded.warn("device socket lease not released: Redis unavailable", exc)

    def refusal(self, session: DeviceSession) -> DeviceRejected | None:
        """Why the session must close now (replaced, credential revoked), else None. Renews the lease and re-checks
        the credential when due; called by the socket's own thread before each receive."""
        now = time.monotonic()
        if now >= session.next_renewal:
            session.next_renewal = now + HEARTBEAT_SECONDS
            if not self._renew(session) and not session.replaced.is_set():
                session.replaced.set()
                metrics.device_sockets_replaced.inc()
        if session.replaced.is_set():
            return DeviceRejected(ErrorCode.SESSION_REPLACED, "a newer connection of this device took over")
        if session.recheck.is_set() or now >= session.next_recheck:
            session.recheck.clear()
            session.next_recheck = now + RECHECK_SECONDS
            try:
                return self._check_credential(session.device_id, session.token_hash)
            except (SQLAlchemyError, ServiceUnavailable):  # the database is away: storing frames fails anyway
                logger.warning("device credential re-check failed", exc_info=True, extra={"event": "ws_recheck_error"})
        return None

    def _renew(self, session: DeviceSession) -> bool:
        keys = [self._set_key(session.device_id), self._tombstone(session.member)]
        try:
            renewed = self._redis_call(
                lambda client: client.register_script(_RENEW)(keys=keys, args=[LEASE_SECONDS * 1000, session.member])
            )
        except (RedisUnavailable, redis.RedisError) as exc:
            self._degraded.warn("device socket lease not renewed: Redis unavailable", exc)
            return True
        return bool(renewed)

    # -- notices from other sessions and from device administration ---------------------------------
    def _replace(self, device_id: str, member: str) -> None:
        with self._lock:
            session = self._local.get(device_id, {}).get(member)
        if session is not None and not session.replaced.is_set():
            session.replaced.set()
            metrics.device_sockets_replaced.inc()
            session.wake()

    def _recheck(self, device_id: str) -> None:
        with self._lock:
            sessions = list(self._local.get(device_id, {}).values())
        for session in sessions:
            session.recheck.set()
            session.wake()

    def on_notice(self, data: bytes | str) -> None:
        """Handle one control-channel message (ignore what is not ours)."""
        try:
            notice = json.loads(data)
        except ValueError:
            return
        if not isinstance(notice, dict) or not isinstance(notice.get("device_id"), str):
            return
        if notice.get("kind") == EVICT and isinstance(notice.get("session"), str):
            self._replace(notice["device_id"], notice["session"])
        elif notice.get("kind") == RECHECK:
            self._recheck(notice["device_id"])

    def _ensure_listener(self) -> bool:
        """Start the control-channel listener in this process if not yet (threads do not survive a fork); True when
        this call started it."""
        if self._pid == os.getpid() or not self._redis_url:
            return False
        with self._lock:
            if self._pid == os.getpid():
                return False
            self._pid = os.getpid()
            self._local = {}
            self._stop = threading.Event()
            threading.Thread(
                target=subscribe_loop,
                args=(self._redis_url, [self.channel], self.on_notice, self._stop),
                kwargs={"on_live": self._set_live, "event": "device_sessions_subscriber_error"},
                name="sqal-device-sessions",
                daemon=True,
            ).start()
        return True

    def stop(self) -> None:
        self._stop.set()

    def _set_live(self, live: bool) -> None:
        (self._live.set if live else self._live.clear)()

    def wait_live(self, timeout: float) -> bool:
        """Wait until this process listens to the control channel (started by the first admission)."""
        return self._live.wait(timeout)

    def local_count(self, device_id: str) -> int:
        with self._lock:
            return len(self._local.get(device_id, {}))

    def _set_key(self, device_id: str) -> str:
        return f"{self._prefix}device-sockets:{device_id}"

    def _tombstone(self, member: str) -> str:
        return f"{self._prefix}device-socket-replaced:{member}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
