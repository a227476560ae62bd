"""The per-second cached timestamp of log lines equals datetime's ISO 8601 rendering."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from backend.observability.logging import _timestamp


def test_timestamps_match_datetime_isoformat() -> None:
    rng = random.Random(7)
    moments = [0.0, 0.9995, 0.999_999_6, 1_795_000_000.0, 1_795_000_000.999_999, 1_795_000_000.999_999_7]
    moments += [rng.uniform(0, 4e9) for _ in range(2000)]
    for created in moments:
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert _timestamp(created) == expected, created
