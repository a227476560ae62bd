"""Who may open `/ws/dashboard/`: browsers on the service's own pages (or `CORS_ORIGINS`); what they may send: little.

Browsers do not apply CORS to WebSockets: any page an operator opens could otherwise follow the live feed from the
operator's browser. Browsers always send `Origin` on a WebSocket handshake, so the handshake is refused (403) unless
it names this service's own host or an origin of `CORS_ORIGINS` (`*` there admits any). Without `Origin` the client
is not a browser (a script, a monitoring probe): it reaches the service directly and could send any header anyway,
so it is let in.

A dashboard only ever sends `ping` frames: each message is capped at DASHBOARD_MAX_MESSAGE_BYTES (1009 above) and
the messages of one socket at a token bucket of DASHBOARD_FRAMES_PER_SECOND with bursts of DASHBOARD_FRAME_BURST
(1008 beyond).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from urllib.parse import SplitResult, urlsplit

from backend.base.errors import ApiError

DASHBOARD_MAX_MESSAGE_BYTES = 4096
DASHBOARD_FRAMES_PER_SECOND = 2.0
DASHBOARD_FRAME_BURST = 20
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class ForeignOrigin(ApiError):
    """The handshake came from a page of another site."""

    status, code = 403, "forbidden_origin"


def _normalized(origin: str) -> str:
    return origin.strip().lower().rstrip("/")


def _authority(parts: SplitResult, scheme: str) -> tuple[str, int] | None:
    """(host, port) with the scheme's default port filled in; None when unreadable."""
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port if port is not None else _DEFAULT_PORTS.get(scheme, 0)


def origin_allowed(origin: str | None, host: str, allowed: Iterable[str]) -> bool:
    """Whether a handshake with this `Origin` header may open a dashboard socket on `host` (the Host header)."""
    if origin is None:
        return True  # not a browser
    listed = {_normalized(entry) for entry in allowed}
    if "*" in listed or _normalized(origin) in listed:
        return True
    parts = urlsplit(_normalized(origin))
    if parts.scheme not in ("http", "https"):
        return False  # "null" (sandboxed frames, file: pages) and anything else a browser would not send
    own = _authority(urlsplit(f"{parts.scheme}://{host.strip().lower()}"), parts.scheme)
    return own is not None and _authority(parts, parts.scheme) == own


class InboundLimit:
    """Size and rate limits on the messages one dashboard socket sends: `check` returns None or (close code, why)."""

    def __init__(
        self,
        max_bytes: int = DASHBOARD_MAX_MESSAGE_BYTES,
        per_second: float = DASHBOARD_FRAMES_PER_SECOND,
        burst: int = DASHBOARD_FRAME_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def check(self, message: str | bytes) -> tuple[int, str] | None:
        """Count one received message."""
        size = len(message) if isinstance(message, bytes) else len(message.encode("utf-8", "surrogatepass"))
        if size > self.max_bytes:
            return CLOSE_MESSAGE_TOO_BIG, f"message exceeds {self.max_bytes} bytes"
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens < 1:
            return CLOSE_POLICY_VIOLATION, "too many messages"
        self._tokens -= 1
        return None
