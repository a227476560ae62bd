"""Committed artefacts generated from the code must not drift: docs/openapi.json and .env.example."""

from __future__ import annotations

import json

from scripts import env_example, openapi
from scripts.devservices import REPO_ROOT


def test_openapi_document_is_up_to_date() -> None:
    committed = json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(openapi.render(openapi.build_spec())), "run `make openapi` and commit"


def test_openapi_is_3_1_with_every_route() -> None:
    spec = openapi.build_spec()
    assert spec["openapi"].startswith("3.1")
    assert {"/products", "/products/{product_id}", "/health", "/slow", "/error"} <= set(spec["paths"])


def test_env_example_lists_every_variable() -> None:
    assert (REPO_ROOT / ".env.example").read_text() == env_example.render(), "run `make env-example` and commit"


def test_readme_configuration_table_is_up_to_date() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert readme == env_example.sync_readme(readme), "run `make env-example` and commit"
