"""Retention, compression and continuous-aggregate policies of `sensor_samples` (README "Data lifecycle").

TimescaleDB schedules everything in the database: `apply_policies` sets (or updates) the retention and compression
policies of the hypertable, the refresh policies of the aggregates (`backend/sqal/aggregates.py`) and the job
pruning the dedup ledger, from the settings. Plain PostgreSQL has no scheduler: `run_retention` (`flask sqal
retention run`, from cron or the Kubernetes CronJob) deletes old samples and ledger keys in batches, one short
transaction per batch, so ingestion never waits long behind it. `run_retention` works on TimescaleDB too (it drops
the old chunks and prunes the ledger at once).

Why the ledger outlives the samples: a key is what makes a resend a `duplicate`. A sample timestamped t arrives
at r ≥ t and its key is stored then; the sample is dropped after t + SENSOR_RETENTION_DAYS, its key after
r + SAMPLE_LEDGER_RETENTION_DAYS, never earlier when the ledger's window is at least the samples' one. So a resend
can never make a second copy while the first is stored. A resend after both windows is stored again (the ledger
forgot it) with its old timestamp, and the next retention run drops it again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from backend.base.config import Settings
from backend.extensions import db
from backend.sqal.aggregates import PRUNE_LEDGER_PROCEDURE, VIEWS

logger = logging.getLogger(__name__)

HYPERTABLE = "sensor_samples"
DEFAULT_BATCH_SIZE = 10_000
LEDGER_JOB_SCHEDULE = timedelta(hours=1)


@dataclass
class RetentionReport:
    """What one `run_retention` removed."""

    samples_deleted: int = 0
    chunks_dropped: int = 0
    keys_deleted: int = 0
    batches: int = 0


@dataclass
class PolicyReport:
    """What `apply_policies` found and did, one line per policy."""

    timescaledb: bool
    actions: list[str] = field(default_factory=list)


def is_hypertable() -> bool:
    """True when `sensor_samples` is a TimescaleDB hypertable."""
    if db.session.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).scalar() is None:
        return False
    query = text("SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = :name")
    return db.session.execute(query, {"name": HYPERTABLE}).scalar() is not None


def _days(days: int) -> timedelta:
    return timedelta(days=days)


def _jobs(proc_name: str, relation: str | None = None) -> list[Any]:
    """(job_id, config, schedule_interval) of the jobs running `proc_name` (on `relation` when given)."""
    query = "SELECT job_id, config, schedule_interval FROM timescaledb_information.jobs WHERE proc_name = :proc"
    params: dict[str, Any] = {"proc": proc_name}
    if relation is not None:
        query += " AND hypertable_name = :relation"
        params["relation"] = relation
    return list(db.session.execute(text(query), params))


def _same_interval(stored: Any, wanted: timedelta | None) -> bool:
    """True when a job config's interval (PostgreSQL text, or null) equals `wanted`."""
    if stored is None or wanted is None:
        return stored is None and wanted is None
    found = db.session.execute(text("SELECT CAST(:value AS interval)"), {"value": stored}).scalar()
    return bool(found == wanted)


def _hypertable_policy(report: PolicyReport, kind: str, key: str, wanted: timedelta | None) -> None:
    """Make the `kind` (retention / compression) policy of the hypertable drop/compress after `wanted` (None: off)."""
    jobs = _jobs(f"policy_{kind}", HYPERTABLE)
    if len(jobs) == 1 and _same_interval(jobs[0].config.get(key), wanted):
        report.actions.append(f"{kind} policy unchanged ({wanted.days if wanted else 'off'} days)")
        return
    if jobs or wanted is None:
        db.session.execute(text(f"SELECT remove_{kind}_policy(:table, if_exists => TRUE)"), {"table": HYPERTABLE})
    if wanted is None:
        report.actions.append(f"{kind} policy off")
        return
    db.session.execute(text(f"SELECT add_{kind}_policy(:table, :after)"), {"table": HYPERTABLE, "after": wanted})
    report.actions.append(f"{kind} policy set: {wanted.days} days")


def _refresh_policies(report: PolicyReport, retention: timedelta | None) -> None:
    """Refresh policies of the aggregates; their window never reaches past the samples' retention (a refresh over
    dropped chunks would empty the aggregate there)."""
    for view, _width, schedule, end_offset in VIEWS:
        jobs = _jobs("policy_refresh_continuous_aggregate", view)
        if (
            len(jobs) == 1
            and jobs[0].schedule_interval == schedule
            and _same_interval(jobs[0].config.get("start_offset"), retention)
            and _same_interval(jobs[0].config.get("end_offset"), end_offset)
        ):
            report.actions.append(f"{view} refresh policy unchanged")
            continue
        db.session.execute(text("SELECT remove_continuous_aggregate_policy(:view, if_exists => TRUE)"), {"view": view})
        db.session.execute(
            text(
                "SELECT add_continuous_aggregate_policy(:view, start_offset => CAST(:start AS interval), "
                "end_offset => :end, schedule_interval => :schedule)"
            ),
            {"view": view, "start": retention, "end": end_offset, "schedule": schedule},
        )
        report.actions.append(f"{view} refresh policy set (every {int(schedule.total_seconds())} s)")


def _ledger_job(report: PolicyReport, days: int) -> None:
    """The job pruning the dedup ledger every hour (none while the ledger is kept forever)."""
    jobs = _jobs(PRUNE_LEDGER_PROCEDURE)
    config = {"days": days, "batch_size": DEFAULT_BATCH_SIZE}
    if len(jobs) == 1 and days and jobs[0].config == config:
        report.actions.append(f"ledger job unchanged ({days} days)")
        return
    for job in jobs:
        db.session.execute(text("SELECT delete_job(:id)"), {"id": job.job_id})
    if not days:
        report.actions.append("ledger kept forever")
        return
    db.session.execute(
        text(f"SELECT add_job('{PRUNE_LEDGER_PROCEDURE}', :schedule, config => CAST(:config AS jsonb))"),
        {"schedule": LEDGER_JOB_SCHEDULE, "config": json.dumps(config)},
    )
    report.actions.append(f"ledger job set: {days} days")


def apply_policies(settings: Settings) -> PolicyReport:
    """Set the TimescaleDB policies from the settings (idempotent; a no-op on plain PostgreSQL). Commits."""
    report = PolicyReport(timescaledb=is_hypertable())
    if not report.timescaledb:
        db.session.rollback()
        if settings.sensor_retention_days or settings.ledger_retention_days:
            report.actions.append("plain PostgreSQL: run `flask sqal retention run` from cron to apply retention")
        return report
    retention = _days(settings.sensor_retention_days) if settings.sensor_retention_days else None
    compress = _days(settings.sensor_compress_after_days) if settings.sensor_compress_after_days else None
    _hypertable_policy(report, "retention", "drop_after", retention)
    _hypertable_policy(report, "compression", "compress_after", compress)
    _refresh_policies(report, retention)
    _ledger_job(report, settings.ledger_retention_days)
    db.session.commit()
    return report


def _delete_in_batches(table: str, column: str, cutoff: datetime, batch_size: int, report: RetentionReport) -> int:
    """Delete rows of `table` whose `column` < cutoff, `batch_size` at a time, committing after each batch."""
    statement = text(
        f"DELETE FROM {table} WHERE ctid = ANY (ARRAY("
        f'SELECT ctid FROM {table} WHERE "{column}" < :cutoff LIMIT :batch))'
    )
    total = 0
    while True:
        deleted = int(db.session.execute(statement, {"cutoff": cutoff, "batch": batch_size}).rowcount)  # type: ignore[attr-defined]
        db.session.commit()
        report.batches += 1
        total += deleted
        if deleted < batch_size:
            return total


def run_retention(settings: Settings, now: datetime, batch_size: int = DEFAULT_BATCH_SIZE) -> RetentionReport:
    """Remove the samples and ledger keys older than their windows at `now`; each batch is its own transaction."""
    report = RetentionReport()
    if settings.sensor_retention_days:
        cutoff = now - _days(settings.sensor_retention_days)
        if is_hypertable():
            dropped = db.session.execute(
                text("SELECT count(*) FROM drop_chunks(:table, older_than => CAST(:cutoff AS timestamptz))"),
                {"table": HYPERTABLE, "cutoff": cutoff},
            ).scalar()
            db.session.commit()
            report.chunks_dropped = int(dropped or 0)
        else:
            report.samples_deleted = _delete_in_batches(HYPERTABLE, "timestamp", cutoff, batch_size, report)
    if settings.ledger_retention_days:
        cutoff = now - _days(settings.ledger_retention_days)
        report.keys_deleted = _delete_in_batches("sensor_sample_keys", "stored_at", cutoff, batch_size, report)
    db.session.rollback()
    logger.info("retention run", extra={"event": "retention", **report.__dict__})
    return report
