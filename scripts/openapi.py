"""Print the OpenAPI document of the app (committed as docs/openapi.json; a test detects drift)."""

from __future__ import annotations

import json
import sys
from typing import Any

from backend import create_app

# Building the spec needs no database connection; the URL only has to be well-formed.
PLACEHOLDER_DATABASE_URL = "postgresql://openapi@127.0.0.1:1/openapi"


def build_spec() -> dict[str, Any]:
    """The spec of an app configured like production, with chaos routes included."""
    app = create_app({"database_url": PLACEHOLDER_DATABASE_URL, "app_env": "production", "chaos_enabled": True})
    with app.app_context():
        spec: dict[str, Any] = app.spec  # type: ignore[assignment]
    return spec


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    # Write the file ourselves: the app logs JSON on stdout while it is built.
    target = sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json"
    with open(target, "w", encoding="utf-8") as output:
        output.write(render(build_spec()))
