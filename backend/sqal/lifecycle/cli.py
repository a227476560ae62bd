"""`flask sqal lifecycle apply` and `flask sqal retention run` (README "Data lifecycle")."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import AppGroup

from backend.sqal.lifecycle import service

lifecycle_cli = AppGroup("lifecycle", help="TimescaleDB policies of the samples (retention, compression, aggregates).")
retention_cli = AppGroup("retention", help="Delete samples and ledger keys older than their retention windows.")


@lifecycle_cli.command("apply")
def apply() -> None:
    """Set or update the policies from SENSOR_RETENTION_DAYS & co. (init_db does it on every start)."""
    report = service.apply_policies(current_app.config["SETTINGS"])
    if not report.timescaledb:
        click.echo("sensor_samples is a plain table: no TimescaleDB policy to set")
    for action in report.actions:
        click.echo(action)


@retention_cli.command("run")
@click.option(
    "--batch-size",
    type=click.IntRange(100, 1_000_000),
    default=service.DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows deleted per transaction.",
)
def run(batch_size: int) -> None:
    """Delete what is older than the windows now (cron / Kubernetes CronJob on plain PostgreSQL)."""
    settings = current_app.config["SETTINGS"]
    if not settings.sensor_retention_days and not settings.ledger_retention_days:
        click.echo("SENSOR_RETENTION_DAYS is 0: samples and ledger are kept forever, nothing to delete")
        return
    report = service.run_retention(settings, datetime.now(UTC), batch_size)
    click.echo(
        f"samples deleted: {report.samples_deleted}, chunks dropped: {report.chunks_dropped}, "
        f"ledger keys deleted: {report.keys_deleted} ({report.batches} batch(es))"
    )
