"""The schemathesis hooks drop only what gunicorn refuses before the app (over-long request lines) and make positive
cases' preconditions satisfiable (If-Match, Idempotency-Key)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from gunicorn.config import LimitRequestLine

from scripts.devservices import REPO_ROOT
from tests.fuzz import hooks


def _case(**query: Any) -> Any:
    return SimpleNamespace(method="GET", formatted_path="/api/sqal/samples", query=query)


def test_the_limit_is_the_one_gunicorn_applies() -> None:
    assert LimitRequestLine.default == hooks.GUNICORN_REQUEST_LINE_LIMIT
    assert "limit_request_line" not in (REPO_ROOT / "gunicorn.conf.py").read_text()  # the default is in force


def test_an_ordinary_case_is_kept_and_an_over_long_request_line_is_dropped() -> None:
    context = cast(Any, None)
    assert hooks.filter_case(context, _case(min_score=0.5, limit=10))
    long_values = ["é" * 20] * 60  # 60 repeats of a parameter, percent-encoded: ~7 KB
    assert hooks._request_line_length(_case(min_score=long_values)) > hooks.GUNICORN_REQUEST_LINE_LIMIT
    assert not hooks.filter_case(context, _case(min_score=long_values))


def test_positive_cases_go_without_if_match_and_with_a_fresh_idempotency_key() -> None:
    headers = {"If-Match": 'W/"x"', "Idempotency-Key": "reused", "X-Other": "kept"}
    case = SimpleNamespace(headers=dict(headers))
    hooks._fresh_preconditions(cast(Any, case))
    assert "If-Match" not in case.headers
    assert case.headers["X-Other"] == "kept"
    first = case.headers["Idempotency-Key"]
    hooks._fresh_preconditions(cast(Any, case))
    assert first != "reused"
    assert case.headers["Idempotency-Key"] != first
