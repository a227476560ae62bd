"""Generate the five provisioned SQAL dashboards into observability/grafana/dashboards/*.json.

Run `python observability/grafana/generate.py` after editing panels.py, ops_dashboards.py or line_dashboards.py:
tests/stack fails when the committed JSON drifts from what this produces. Metric names must come from
observability/metric-names.txt.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from line_dashboards import bugs, business, devices
from ops_dashboards import infrastructure, slo
from panels import Json

OUT_DIR = Path(__file__).resolve().parent / "dashboards"

DASHBOARDS: dict[str, Callable[[], Json]] = {
    "infrastructure": infrastructure,
    "business": business,
    "devices": devices,
    "bugs": bugs,
    "slo": slo,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{name}.json": json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards; with --check only report (exit 1) the files that differ from the generator."""
    args = sys.argv[1:] if argv is None else argv
    rendered = render()
    stale = [
        name
        for name, body in rendered.items()
        if not (OUT_DIR / name).is_file() or (OUT_DIR / name).read_text() != body
    ]
    if "--check" in args:
        for name in stale:
            print(f"stale: {OUT_DIR / name} (run python observability/grafana/generate.py)", file=sys.stderr)
        return 1 if stale else 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (OUT_DIR / name).write_text(rendered[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
