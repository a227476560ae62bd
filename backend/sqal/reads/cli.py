"""`flask sqal export`: the audit export of GET /api/sqal/samples/export, to a file or stdout."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import with_appcontext
from pydantic import ValidationError

from backend.core.cli import Progress
from backend.sqal.reads import export as sample_export
from backend.sqal.reads.schemas import ExportQuery


@click.command("export")
@click.option("--format", "export_format", type=click.Choice(["csv", "ndjson"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.File("wb"), default="-", help="File to write (default: stdout).")
@click.option("--device-id", default=None, help="Only this device.")
@click.option("--grade", default=None, help="Grade or comma-separated grades (A, B, C, REJECT).")
@click.option("--from", "start", default=None, help="Samples at or after (ISO 8601 with zone).")
@click.option("--to", "end", default=None, help="Samples strictly before (ISO 8601 with zone).")
@click.option("--min-score", default=None, help="Fused score at least (0-1).")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@with_appcontext
def export(export_format: str, output: Any, quiet: bool, **raw: str | None) -> None:
    """Export samples oldest first (the reference table's columns) with a progress bar on stderr."""
    given = {"device_id": raw["device_id"], "grade": raw["grade"], "from": raw["start"], "to": raw["end"]}
    given["min_score"] = raw["min_score"]
    try:
        query = ExportQuery.model_validate({key: value for key, value in given.items() if value is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'filters'}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from None
    filters = query.filters()
    progress = None if quiet else Progress(sample_export.count_samples(**filters), "samples")
    for index, chunk in enumerate(sample_export.export_chunks(export_format, **filters)):
        output.write(chunk)
        lines = chunk.count(b"\n")
        if index == 0 and export_format == "csv":
            lines -= 1  # the header line
        if progress is not None:
            progress.advance(lines)
    output.flush()
    if progress is not None:
        progress.finish()
