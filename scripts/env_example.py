"""Print `.env.example` from the settings declarations (a test keeps the committed file in sync)."""

from __future__ import annotations

import sys

from backend import __version__
from backend.base.config import documented_variables

HEADER = """\
# Every variable the service reads, with its default. Copy to .env (never commit .env) and adjust.
# Secrets (DATABASE_URL, REDIS_URL, REDIS_PASSWORD, METRICS_TOKEN) come from the environment or from the file that
# NAME_FILE names (Docker/Kubernetes secrets), never from this file in production.
# `make run` / `make test` start embedded PostgreSQL and Redis when DATABASE_URL / REDIS_URL (and REDIS_HOST) are unset.
"""


# Variables only docker-compose reads (the app never sees them); the stack tests keep this list complete.
COMPOSE_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("SECRETS_DIR", "./secrets", "docker compose: postgres_password and database_url files (`make secrets`)"),
    ("GRAFANA_ADMIN_PASSWORD", "", "docker compose: Grafana admin password (required, no default)"),
    ("POSTGRES_USER", "sqal", "docker compose: TimescaleDB user"),
    ("POSTGRES_DB", "sqal", "docker compose: TimescaleDB database"),
    ("GRAFANA_ADMIN_USER", "admin", "docker compose: Grafana admin user"),
    ("SQAL_VERSION", __version__, "docker compose: image tag of backend and simulator"),
    ("BACKEND_REPLICAS", "2", "docker compose: backend replicas (Prometheus scrapes each)"),
    ("BACKEND_PORTS", "8000-8001", "docker compose: host port range of the backend replicas"),
    ("SIMULATOR_DEVICES", "3", "docker compose: simulated ESP32 devices"),
    ("GENERATION_INTERVAL", "5", "docker compose: seconds between samples per simulated device"),
    ("SIMULATOR_PROFILE", "foiegras_standard_barquette", "docker compose: simulator lot profile"),
    ("OPS_BIND", "127.0.0.1", "docker compose: host address of the operations ports (0.0.0.0 opens them)"),
    ("EDGE_ADDRESS", "172.28.0.250", "docker compose: nginx's address in STACK_SUBNET (the backend trusts it)"),
    ("STACK_SUBNET", "172.28.0.0/24", "docker compose: the stack's network"),
    ("EDGE_HTTPS_PORT", "443", "docker compose --profile edge: host port of nginx's TLS listener"),
    ("EDGE_HTTP_PORT", "80", "docker compose --profile edge: host port of the redirect to https"),
)


def _render_default(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def render_markdown_table() -> str:
    """The README configuration table (between the config-table markers)."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, default, doc in documented_variables():
        shown = _render_default(default)
        rows.append(f"| `{name}` | {f'`{shown}`' if shown else '—'} | {doc.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def render() -> str:
    lines = [HEADER]
    for name, default, doc in documented_variables():
        lines.append(f"# {doc}\n{name}={_render_default(default)}\n")
    lines.append("# ---- docker compose only ----\n")
    for name, default, doc in COMPOSE_VARIABLES:
        lines.append(f"# {doc}\n{name}={default}\n")
    return "\n".join(lines)


README_START = "<!-- config-table:start -->\n"
README_END = "<!-- config-table:end -->"


def sync_readme(text: str) -> str:
    """README text with the configuration table between the markers replaced by the current one."""
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return head + README_START + render_markdown_table() + README_END + tail


if __name__ == "__main__":
    if "--readme" in sys.argv:
        from pathlib import Path

        readme = Path(__file__).resolve().parent.parent / "README.md"
        readme.write_text(sync_readme(readme.read_text()))
        sys.exit(0)
    sys.stdout.write(render_markdown_table() if "--markdown" in sys.argv else render())
