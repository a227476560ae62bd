"""Names shared by migration 0010, the reads and the lifecycle: the continuous aggregates of `sensor_samples`.

On TimescaleDB two real-time continuous aggregates (`materialized_only = false`: buckets newer than the last
refresh are computed from the raw rows at query time, so fresh samples count) hold, per bucket, device, fused grade
and defect list: the number of samples and the sum of their fused scores. Every figure the reads compute from
`sensor_samples` (counts, averages, grade distributions, defect counts) is a sum of those cells. Plain PostgreSQL
has no aggregates: the reads run their SQL on the raw rows there.
"""

from __future__ import annotations

from datetime import timedelta

MINUTE_VIEW = "sensor_samples_1m"
HOUR_VIEW = "sensor_samples_1h"
# (view, bucket width, refresh schedule, end offset: the newest span left to the real-time part)
VIEWS: tuple[tuple[str, timedelta, timedelta, timedelta], ...] = (
    (MINUTE_VIEW, timedelta(minutes=1), timedelta(minutes=1), timedelta(minutes=2)),
    (HOUR_VIEW, timedelta(hours=1), timedelta(minutes=30), timedelta(hours=1)),
)
# The TimescaleDB job procedure that prunes the dedup ledger (created by migration 0010 on TimescaleDB).
PRUNE_LEDGER_PROCEDURE = "sqal_prune_sample_keys"
