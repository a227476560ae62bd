"""GET /api/sqal/samples/export and `flask sqal export`: every column, the listing's filters, streamed in batches."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from backend.core.cli import Progress
from backend.sqal.reads import export
from tests.sqal.rows import devices, insert_devices, insert_samples, sample_data

FILTERS = [
    {},
    {"device_id": "LINE_B"},
    {"grade": "C,REJECT", "min_score": "0.3"},
    {"from": "2026-03-12T10:00:00Z", "to": "2026-03-12T14:30:00+02:00"},
]


@pytest.fixture
def loaded(reads_client: FlaskClient, reads_app: APIFlask, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    monkeypatch.setattr(export, "BATCH_SIZE", 37)  # many batches: keyset continuation is exercised
    rows = sample_data(400, days=1)
    insert_devices(reads_app, *devices())
    insert_samples(reads_app, rows)
    return rows


def _listed(client: FlaskClient, filters: dict[str, str]) -> list[str]:
    """sample_ids that /api/sqal/samples lists for the filters, every page."""
    found: list[str] = []
    query: dict[str, str] = {**filters, "limit": "500"}
    while True:
        page = client.get("/api/sqal/samples", query_string=query).get_json()
        found += [item["sample_id"] for item in page["items"]]
        if not page["next_cursor"]:
            return found
        query["cursor"] = page["next_cursor"]


def test_csv_has_the_reference_columns_every_row_and_the_listing_filters(
    reads_client: FlaskClient, loaded: list[dict[str, Any]]
) -> None:
    by_id = {row["sample_id"]: row for row in loaded}
    for filters in FILTERS:
        response = reads_client.get("/api/sqal/samples/export", query_string={**filters, "format": "csv"})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.is_streamed
        assert response.mimetype == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        lines = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
        assert tuple(lines[0]) == export.COLUMNS
        assert lines[0][:25] == list(export.REFERENCE_COLUMNS)
        records = [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
        assert sorted(r["sample_id"] for r in records) == sorted(_listed(reads_client, filters)), filters
        assert [r["timestamp"] for r in records] == sorted(r["timestamp"] for r in records)  # oldest first
    assert len(records) > 0
    record = records[0]
    source = by_id[record["sample_id"]]
    assert record["timestamp"] == source["timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert json.loads(record["vl53l8ch_distance_matrix"]) == source["vl53l8ch_distance_matrix"]
    assert json.loads(record["fusion_defects"]) == source["fusion_defects"]
    assert float(record["fusion_final_score"]) == source["fusion_final_score"]
    assert record["fusion_final_grade"] == source["fusion_final_grade"]
    assert int(record["seq"]) == source["seq"]


def test_ndjson_objects(reads_client: FlaskClient, loaded: list[dict[str, Any]]) -> None:
    response = reads_client.get("/api/sqal/samples/export", query_string={"format": "ndjson", "device_id": "LINE_A"})
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    objects = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert len(objects) == len([row for row in loaded if row["device_id"] == "LINE_A"])
    assert all(tuple(item) == export.COLUMNS for item in objects)
    first = objects[0]
    assert isinstance(first["vl53l8ch_distance_matrix"], list)
    assert isinstance(first["as7341_channels"], dict)
    assert isinstance(first["fusion_final_score"], float)
    assert isinstance(first["seq"], int)


@pytest.mark.parametrize(
    "query",
    [
        {"format": "xml"},
        {"from": "2026-03-12T10:00:00Z", "to": "2026-03-12T09:00:00Z"},
        {"limit": "5"},
        {"grade": "Z"},
    ],
)
def test_bad_queries_are_422(reads_client: FlaskClient, query: dict[str, str]) -> None:
    response = reads_client.get("/api/sqal/samples/export", query_string=query)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"]


def test_cli_writes_the_same_export_with_progress(
    reads_app: APIFlask, reads_client: FlaskClient, loaded: list[dict[str, Any]], tmp_path: Path
) -> None:
    target = tmp_path / "export.csv"
    result = reads_app.test_cli_runner().invoke(
        args=["sqal", "export", "--format", "csv", "--device-id", "LINE_C", "--output", str(target)]
    )
    assert result.exit_code == 0, result.output
    expected = reads_client.get("/api/sqal/samples/export", query_string={"device_id": "LINE_C"}).get_data()
    assert target.read_bytes() == expected
    count = len([row for row in loaded if row["device_id"] == "LINE_C"])
    assert f"{count:,}/{count:,} samples" in result.stderr  # not a terminal: plain lines, no carriage return
    assert "\r" not in result.stderr
    bad = reads_app.test_cli_runner().invoke(args=["sqal", "export", "--from", "yesterday"])
    assert bad.exit_code == 2
    assert "from" in bad.output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_when_piped() -> None:
    terminal, piped = _Terminal(), io.StringIO()
    for stream in (terminal, piped):
        progress = Progress(100, "samples", stream)
        for _ in range(10):
            progress.advance(10)
        progress.finish()
    assert terminal.getvalue().startswith("\r[")
    assert "100/100 samples" in terminal.getvalue()
    assert "\r" not in piped.getvalue()
    assert piped.getvalue().count("\n") == 2
