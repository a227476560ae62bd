"""Guards around another library's private internals (docs/private-internals.md).

Each fast path that reaches into a library's internals probes them once at startup; when they are not as
expected the caller takes the library's public path instead and `report_fallback` logs it, once per process.
"""

from __future__ import annotations

import logging
import threading
from importlib import metadata

logger = logging.getLogger(__name__)

EVENT = "private_internals_fallback"

_reported: set[tuple[str, str]] = set()
_lock = threading.Lock()


def library_version(distribution: str) -> str:
    """The installed version of `distribution` ("unknown" when it has no metadata)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def report_fallback(distribution: str, fast_path: str, fallback: str, reason: str) -> bool:
    """Log one warning that `fast_path` is off for this version of `distribution`; False when already logged."""
    with _lock:
        if (distribution, fast_path) in _reported:
            return False
        _reported.add((distribution, fast_path))
    version = library_version(distribution)
    logger.warning(
        "%s %s: %s unavailable (%s), using %s",
        distribution,
        version,
        fast_path,
        reason,
        fallback,
        extra={
            "event": EVENT,
            "library": distribution,
            "library_version": version,
            "fast_path": fast_path,
            "fallback": fallback,
            "reason": reason,
        },
    )
    return True
