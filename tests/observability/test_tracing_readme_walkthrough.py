"""The README walkthrough (from a slow request to its trace) names the spans a product read makes today."""

from __future__ import annotations

import re

from apiflask import APIFlask
from flask.testing import FlaskClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from scripts.devservices import REPO_ROOT


def _walkthrough_step_3() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Walkthrough: from a slow request to its trace and back", 1)[1]
    return section.split("\n3. ", 1)[1].split("\n4. ", 1)[0]


def _children(exporter: InMemorySpanExporter) -> list[tuple[str, str]]:
    """(name, db.statement) of the spans under the request's server span, in start order."""
    spans = sorted(exporter.get_finished_spans(), key=lambda span: span.start_time or 0)
    return [(s.name, str((s.attributes or {}).get("db.statement", ""))) for s in spans if s.parent is not None]


def test_walkthrough_names_the_spans_of_a_product_read(
    app: APIFlask, client: FlaskClient, captured_spans: InMemorySpanExporter
) -> None:
    product_id = client.post("/products", json={"name": "Bloc", "price": 19.9, "category": "Foie gras"}).json["id"]
    captured_spans.clear()
    assert client.get(f"/products/{product_id}").status_code == 200  # a miss: the write bumped the version
    miss = _children(captured_spans)
    captured_spans.clear()
    assert client.get(f"/products/{product_id}").status_code == 200
    hit = _children(captured_spans)
    text = _walkthrough_step_3()
    named = re.findall(r"`([A-Z][A-Z ]+[a-z_]*)`", text)  # span names in back-quotes: `EVALSHA`, `SELECT products`
    assert named, text
    assert named == [name for name, _ in miss] + [name for name, _ in hit], text
    statements = re.findall(r"`db\.statement = ([^`]+)`", text)
    assert statements == [miss[0][1], miss[2][1].rsplit("\n", 1)[1]], text
