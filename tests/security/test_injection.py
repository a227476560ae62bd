"""SQL injection sweep: every payload into every query parameter, path parameter and body field of every route.

The inputs come from the app's own OpenAPI document (`openapi_walk`), so a new route or field is covered without
editing this file. After the sweep: no 5xx, every error is a documented status with the JSON error shape, no
`pg_sleep` ever ran (watched in `pg_stat_activity` while the sweep runs), every table still exists with its rows,
and every stored string reads back byte-for-byte.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg2
import pytest
from apiflask import APIFlask
from flask import Flask, request, request_started
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from backend.base.config import Settings
from backend.core import auth
from backend.extensions import cache
from scripts.services import TestServices
from tests.security.openapi_walk import Input, Operation, base_body, operations
from tests.security.payloads import BODY_ONLY_PAYLOADS, SQL_PAYLOADS
from tests.sqal.rows import device_row, insert_devices, insert_samples, sample_row

WRITE_METHODS = frozenset({"post", "put", "patch"})
# Inputs the sweep must find in the document: a walker that silently finds nothing cannot pass.
KNOWN_TEXT_INPUTS = {
    ("GET /products", "category"),
    ("GET /api/bugs/", "q"),
    ("GET /api/bugs/", "deviceId"),
    ("GET /api/sqal/samples", "device_id"),
    ("GET /api/sqal/samples/{sample_id}", "sample_id"),
    ("GET /api/sqal/stats/timeseries", "device_id"),
    ("POST /products", "name"),
    ("PATCH /api/bugs/{bug_id}", "title"),
    ("POST /api/bugs/{bug_id}/comments", "comment"),
}


@dataclass(frozen=True)
class Received:
    """What the app parsed out of a request: decoded path, query arguments and JSON body."""

    path: str
    args: dict[str, list[str]]
    body: Any


@dataclass(frozen=True)
class Sent:
    operation: Operation
    target: Input
    payload_name: str
    response: TestResponse
    received: Received


class RequestRecorder:
    """Records each request as the app parsed it (Flask's `request_started` signal, before any hook)."""

    def __init__(self, app: APIFlask) -> None:
        self.app = app
        self.received: list[Received] = []

    def _record(self, sender: Flask, **extra: Any) -> None:
        body = request.get_json(silent=True) if request.is_json else None  # cached: the view parses it once
        self.received.append(Received(request.path, request.args.to_dict(flat=False), body))

    def __enter__(self) -> RequestRecorder:
        request_started.connect(self._record, self.app)
        return self

    def __exit__(self, *exc: object) -> None:
        request_started.disconnect(self._record, self.app)


class SleepWatcher:
    """Polls pg_stat_activity of the test database on its own connection while the sweep runs."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.sightings: list[tuple[Any, ...]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        connection = psycopg2.connect(self.dsn)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while not self._stop.is_set():
                    cursor.execute(
                        "SELECT pid, state, wait_event, left(query, 200) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        # Sleeping, not merely mentioning pg_sleep: the test's own read-back queries carry the
                        # payloads as (client-side interpolated) literals.
                        " AND wait_event = 'PgSleep'"
                    )
                    self.sightings.extend(cursor.fetchall())
                    self.polls += 1
                    self._stop.wait(0.02)
        finally:
            connection.close()

    def __enter__(self) -> SleepWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class TextColumns:
    """Every text column of the public schema, searched for an exact value (parameters bound by the driver)."""

    def __init__(self, dsn: str) -> None:
        self.connection = psycopg2.connect(dsn)
        self.connection.autocommit = True
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.table_name, c.column_name FROM information_schema.columns c"
                " JOIN information_schema.tables t USING (table_schema, table_name)"
                " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
                " AND c.data_type IN ('text', 'character varying')"
            )
            self.columns: list[tuple[str, str]] = cursor.fetchall()

    def holds(self, value: str) -> bool:
        with self.connection.cursor() as cursor:
            for table, column in self.columns:  # names come from the catalogue
                cursor.execute(f'SELECT 1 FROM "{table}" WHERE "{column}" = %s LIMIT 1', (value,))
                if cursor.fetchone():
                    return True
        return False

    def close(self) -> None:
        self.connection.close()


def database_state(dsn: str) -> tuple[set[str], dict[str, int]]:
    """Every relation of the public schema (tables and views) and the row count of each table."""
    connection = psycopg2.connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'public'")
            relations = cursor.fetchall()
            counts = {}
            for name, kind in relations:
                if kind == "BASE TABLE":
                    cursor.execute(f'SELECT count(*) FROM "{name}"')  # names come from the catalogue
                    counts[name] = cursor.fetchone()[0]
        return {name for name, _ in relations}, counts
    finally:
        connection.close()


@pytest.fixture
def seeded(client: FlaskClient, app: APIFlask) -> dict[str, str]:
    """Rows for every path parameter (a product, a bug with a comment, a device with a sample) plus canaries."""
    headers = auth_headers(app)
    ids: dict[str, str] = {}
    for name in ("Target product", "Canary product"):
        created = client.post("/products", json={"name": name, "price": 10.0, "category": "Canary"}, headers=headers)
        assert created.status_code == 201, created.get_data(as_text=True)
        ids.setdefault("product_id", str(created.get_json()["id"]))
    for title in ("Target bug", "Canary bug"):
        created = client.post("/api/bugs/", json={"title": title, "description": "canary row"}, headers=headers)
        assert created.status_code == 201, created.get_data(as_text=True)
        bug_id = created.get_json()["id"]
        ids.setdefault("bug_id", str(bug_id))
        comment = {"comment": "canary comment", "author": "canary"}
        assert client.post(f"/api/bugs/{bug_id}/comments", json=comment, headers=headers).status_code == 201
    insert_devices(app, device_row("ESP32_CANARY_01", datetime.now(UTC)))
    moment = datetime.now(UTC) - timedelta(minutes=5)
    insert_samples(app, [sample_row("ESP32_CANARY_01", moment, sample_id="CANARY-0001")])
    ids["sample_id"] = "CANARY-0001"
    ids["device_id"] = "ESP32_CANARY_01"
    return ids


def auth_headers(app: APIFlask) -> dict[str, str]:
    """A key with every scope when the app runs with AUTH_MODE=apikey; nothing when auth is off."""
    settings: Settings = app.config["SETTINGS"]
    if settings.auth_mode != "apikey":
        return {}
    with app.app_context():
        _, key = auth.create_key("injection-sweep", list(auth.scopes()))
    return {"X-API-Key": key}


def build_request(
    operation: Operation, target: Input, payload: str, spec: dict[str, Any], path_values: dict[str, str]
) -> tuple[str, dict[str, str], dict[str, Any] | None]:
    """URL, query string and JSON body with `payload` in `target` and valid values everywhere else."""
    url = operation.path
    for item in operation.of("path"):
        assert item.name in path_values, f"{operation.label}: seed a row for path parameter {item.name!r}"
        value = payload if item is target else path_values[item.name]
        url = url.replace("{" + item.name + "}", quote(value, safe=""))
    query = {target.name: payload} if target.location == "query" else {}
    body = None
    if operation.body_schema is not None:
        body = base_body(spec, operation.body_schema)
        if target.location == "body":
            body[target.name] = payload
    return url, query, body


def carried_payload(sent: Sent, payload: str) -> bool:
    """Whether the request as the app parsed it held the payload, intact, in the targeted input."""
    received, target = sent.received, sent.target
    if target.location == "query":
        return received.args.get(target.name) == [payload]
    if target.location == "body":
        return isinstance(received.body, dict) and received.body.get(target.name) == payload
    return payload in received.path


def find_by_id(document: Any, wanted: Any) -> dict[str, Any] | None:
    """The object with `"id": wanted` anywhere in a JSON document."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("id") == wanted:
                return node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def read_back(client: FlaskClient, app: APIFlask, url: str, response: TestResponse) -> dict[str, Any] | None:
    """The stored resource read again from the database (cache emptied): Location, the URL itself or its parent."""
    cache.clear(app)
    created = response.get_json()
    candidates = [response.headers.get("Location"), url, url.rsplit("/", 1)[0]]
    for candidate in filter(None, candidates):
        reread = client.get(candidate)
        if reread.status_code == 200:
            found = find_by_id(reread.get_json(), created.get("id"))
            if found is not None:
                return found
    return None


def assert_response_shape(sent: Sent) -> None:
    response, label = sent.response, f"{sent.operation.label} {sent.target.name}={sent.payload_name}"
    assert response.status_code < 500, f"{label}: {response.status_code} {response.get_data(as_text=True)[:300]}"
    if response.status_code == 204:
        return
    assert response.mimetype == "application/json", f"{label}: {response.mimetype}"
    body = response.get_json()
    if response.status_code >= 400:
        assert response.status_code in sent.operation.responses, f"{label}: undocumented {response.status_code}"
        assert isinstance(body, dict), f"{label}: {body}"
        assert set(body) == {"error"}, f"{label}: {body}"
        error = body["error"]
        assert set(error) == {"code", "message", "details"}, f"{label}: {error}"
        assert isinstance(error["code"], str), f"{label}: {error}"
        assert isinstance(error["message"], str), f"{label}: {error}"


def assert_no_rows_matched(sent: Sent) -> None:
    """No seeded row holds a payload: a read filter that returned rows interpreted the text instead of matching it."""
    body = sent.response.get_json()
    items = body.get("items") if isinstance(body, dict) else body
    if isinstance(items, list):
        label = f"{sent.operation.label} {sent.target.name}={sent.payload_name}"
        assert items == [], f"{label}: the filter matched {len(items)} rows"


def payloads_for(location: str) -> dict[str, str]:
    return {**SQL_PAYLOADS, **BODY_ONLY_PAYLOADS} if location == "body" else SQL_PAYLOADS


def assert_stored_literally(
    client: FlaskClient, app: APIFlask, store: TextColumns, sent: Sent, url: str, payload: str
) -> None:
    """An accepted string is in the database byte for byte, and reads back the same through the API."""
    label = f"{sent.operation.label} {sent.target.name}={sent.payload_name}"
    assert store.holds(payload), f"{label}: accepted but stored nowhere verbatim"
    written = sent.response.get_json()
    if isinstance(written, dict) and sent.target.name in written:
        assert written[sent.target.name] == payload, label
        stored = read_back(client, app, url, sent.response)
        assert stored is not None, f"{label}: cannot read back {written}"
        assert stored[sent.target.name] == payload, label


def sweep(
    client: FlaskClient,
    app: APIFlask,
    spec: dict[str, Any],
    path_values: dict[str, str],
    location: str,
    store: TextColumns,
    headers: dict[str, str],
) -> Iterator[Sent]:
    for operation in operations(spec):
        for target in operation.of(location):
            for payload_name, payload in payloads_for(location).items():
                url, query, body = build_request(operation, target, payload, spec, path_values)
                with RequestRecorder(app) as recorder:
                    response = client.open(
                        url, method=operation.method.upper(), query_string=query, json=body, headers=headers
                    )
                assert len(recorder.received) == 1, f"{operation.label}: {len(recorder.received)} requests"
                sent = Sent(operation, target, payload_name, response, recorder.received[0])
                yield sent
                if location == "body" and operation.method in WRITE_METHODS and response.status_code in (200, 201):
                    assert_stored_literally(client, app, store, sent, url, payload)


def test_sql_injection_sweep(
    client: FlaskClient, app: APIFlask, seeded: dict[str, str], services: TestServices
) -> None:
    spec = client.get("/openapi.json").get_json()
    text_inputs = {
        (operation.label, item.name) for operation in operations(spec) for item in operation.inputs if item.is_string
    }
    assert text_inputs >= KNOWN_TEXT_INPUTS, sorted(KNOWN_TEXT_INPUTS - text_inputs)
    headers = auth_headers(app)  # before the counts: the key's row is not the sweep's doing
    relations_before, counts_before = database_state(services.database_url)
    assert {"products", "bug_reports", "bug_comments", "sensor_samples", "api_keys"} <= relations_before

    results: list[Sent] = []
    store = TextColumns(services.database_url)
    try:
        with SleepWatcher(services.database_url) as watcher:
            # Reads first, while no stored row contains a payload; then the writes.
            for location in ("query", "path", "body"):
                results.extend(sweep(client, app, spec, seeded, location, store, headers))
    finally:
        store.close()

    failures = []
    for sent in results:
        try:
            assert_response_shape(sent)
            if sent.target.location != "body" and sent.response.status_code == 200:
                assert_no_rows_matched(sent)
        except AssertionError as failure:
            failures.append(str(failure).splitlines()[0])
    assert failures == [], f"{len(failures)} of {len(results)} responses are wrong:\n" + "\n".join(failures)
    covered = {
        (sent.operation.label, sent.target.name, sent.payload_name)
        for sent in results
        if carried_payload(sent, payloads_for(sent.target.location)[sent.payload_name])
    }
    expected = {
        (operation.label, item.name, payload)
        for operation in operations(spec)
        for item in operation.inputs
        if item.is_string
        for payload in payloads_for(item.location)
    }
    assert expected - covered == set(), sorted(expected - covered)[:20]

    assert watcher.polls > 0
    assert watcher.sightings == [], watcher.sightings
    relations_after, counts_after = database_state(services.database_url)
    assert relations_after == relations_before
    created = Counter(sent.response.status_code for sent in results)[201]
    assert all(counts_after[name] >= counts_before[name] for name in counts_before), (counts_before, counts_after)
    assert sum(counts_after.values()) - sum(counts_before.values()) == created, (counts_before, counts_after, created)
    stored = [sent for sent in results if sent.response.status_code in (200, 201) and sent.target.location == "body"]
    assert {sent.payload_name for sent in stored} >= {"or_true", "drop_products", "pg_sleep", "dollar_quoted"}
