"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.fuzz.hooks): rules of the SQAL reads that OpenAPI cannot express.

They touch only cases generated as schema-valid (positive), which positive_data_acceptance expects to be answered
2xx; negative cases reach the server unchanged and must still be refused. Each rule is in the operation's
description and README, and the server's 422 for breaking it is tested in tests/sqal/reads.

- `cursor` (GET /api/sqal/samples) is opaque: only a `next_cursor` this endpoint issued for the same filters is
  valid, so a generated string is rightly refused. Positive cases go without one; the stateful phase of the deep
  profile follows real `next_cursor` values.
- `from` must be before `to` (samples, their export and timeseries), and a timeseries range may span at most the
  bucket's widest range (`1m`: 1 day ... `1d`: 366 days). A positive case breaking that loses its `from`, which the
  server then derives from `to` (timeseries) or leaves open (samples, export).
- `If-Match` is valid only with an ETag the server issued for the resource's current version (else 412), and an
  `Idempotency-Key` only when it was never used with another body (else 422): positive cases go without If-Match
  and with a fresh key (tests/contract tests both refusals).

One rule holds for every case, positive or negative: a request line longer than gunicorn's
`limit_request_line` (4094 bytes) never reaches the app. gunicorn answers it with its own 414 page, which no
operation can document, so such cases (a negative case repeating a query parameter a hundred times) are dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode
from uuid import uuid4

import schemathesis
from schemathesis import Case, HookContext

from backend.sqal.reads.schemas import BUCKETS

GUNICORN_REQUEST_LINE_LIMIT = 4094  # gunicorn's default limit_request_line (bytes); gunicorn.conf.py keeps it
REQUEST_LINE_MARGIN = 256  # the client's encoding of the same values may differ a little from urlencode's
SAMPLES = "/api/sqal/samples"
EXPORT = "/api/sqal/samples/export"  # the filters of SAMPLES, so its `from`/`to` rule
TIMESERIES = "/api/sqal/stats/timeseries"


def _parse(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("z", "Z").replace("t", "T"))
    except ValueError:
        return None


def _range_is_valid(path: str, query: dict[str, Any]) -> bool:
    start = _parse(query["from"])
    end = _parse(query["to"]) if "to" in query else datetime.now(UTC)
    if start is None or end is None:
        return True  # not a date-time the server understands: its own answer is what is under test
    if start >= end:
        return False
    if path == TIMESERIES:
        widest = BUCKETS[str(query.get("bucket", "1h"))][2]
        return end - start <= widest
    return True


def _request_line_length(case: Case) -> int:
    query = urlencode(case.query or {}, doseq=True, quote_via=quote)
    return len(f"{case.method} {case.formatted_path}?{query} HTTP/1.1".encode())


@schemathesis.hook
def filter_case(context: HookContext, case: Case) -> bool:
    """Drop a case whose request line gunicorn would refuse before the app sees it (see the module docstring)."""
    del context
    return _request_line_length(case) <= GUNICORN_REQUEST_LINE_LIMIT - REQUEST_LINE_MARGIN


@schemathesis.hook
def map_case(context: HookContext, case: Case) -> Case:
    """Bring a positive case of the SQAL reads inside the rules above; leave every other case alone."""
    del context
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    _fresh_preconditions(case)
    if case.method != "GET" or not case.query:
        return case
    if case.path == SAMPLES:
        case.query.pop("cursor", None)
    ranged = case.path in (SAMPLES, EXPORT, TIMESERIES)
    if ranged and "from" in case.query and not _range_is_valid(case.path, case.query):
        del case.query["from"]
    return case


def _fresh_preconditions(case: Case) -> None:
    """No If-Match (the server's ETag is unknown here) and a never-used Idempotency-Key (see the docstring)."""
    if not case.headers:
        return
    for name in list(case.headers):
        if name.lower() == "if-match":
            del case.headers[name]
        elif name.lower() == "idempotency-key":
            case.headers[name] = str(uuid4())
