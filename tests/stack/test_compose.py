"""docker-compose.yml: valid for Compose, pinned images, healthchecks, volumes, no inline secrets, wired together."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.base.config import Settings, documented_variables
from backend.observability.sampling import build_sampler
from tests.stack.stackfiles import (
    COMPOSE_FILE,
    PINNED_IMAGE,
    REPO,
    compose_services,
    raw_compose,
    require_tool,
    with_defaults,
)

REQUIRED_SECRETS = ("GRAFANA_ADMIN_PASSWORD",)
# Services that legitimately have no healthcheck, and why.
NO_HEALTHCHECK = {
    "backend-init": "one-shot: migrations and seed, then exits",
    "simulator": "a client with no port; it reconnects by itself",
}
STATEFUL = {"timescaledb", "redis", "prometheus", "loki", "grafana", "alertmanager"}


def compose_command() -> list[str]:
    """`docker compose` when the plugin works, else the standalone `docker-compose`."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    return [require_tool("docker-compose")]


def run_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    """`compose config` with only `env_file` as the source of variables."""
    env = {key: value for key, value in os.environ.items() if key not in REQUIRED_SECRETS}
    command = [*compose_command(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO, env=env)


def test_compose_config_is_valid(tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    env_file.write_text("GRAFANA_ADMIN_PASSWORD=test-only\n")
    result = run_config(env_file)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert set(resolved) == set(compose_services())
    assert resolved["backend"]["environment"]["DATABASE_URL_FILE"] == "/run/secrets/database_url"
    assert int(resolved["backend"]["deploy"]["replicas"]) == 2


@pytest.mark.parametrize("missing", REQUIRED_SECRETS)
def test_compose_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    env_file = tmp_path / "stack.env"
    env_file.write_text("".join(f"{name}=test-only\n" for name in REQUIRED_SECRETS if name != missing))
    result = run_config(env_file)
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stdout + result.stderr


def test_every_image_is_pinned_to_an_exact_version() -> None:
    for name, service in compose_services().items():
        image = with_defaults(service["image"])
        assert PINNED_IMAGE.fullmatch(image), f"{name}: image {image!r} is not pinned to an exact version"


def test_stack_components_are_the_required_generations() -> None:
    images = {name: with_defaults(service["image"]) for name, service in compose_services().items()}
    assert re.fullmatch(r"timescale/timescaledb:[\d.]+-pg16", images["timescaledb"])
    assert re.fullmatch(r"jaegertracing/jaeger:2\.\d+\.\d+", images["jaeger"])
    assert re.fullmatch(r"grafana/loki:3\.\d+\.\d+", images["loki"])
    assert images["alloy"].startswith("grafana/alloy:")
    assert not any("promtail" in image for image in images.values()), "Promtail is end-of-life: use Alloy"


def test_long_running_services_have_healthchecks() -> None:
    for name, service in compose_services().items():
        if name in NO_HEALTHCHECK:
            continue
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} disables its healthcheck"


def test_stateful_services_keep_data_in_named_volumes() -> None:
    declared = set(raw_compose()["volumes"])
    for name in STATEFUL:
        sources = {str(volume).split(":")[0] for volume in compose_services()[name].get("volumes", [])}
        named = {source for source in sources if not source.startswith((".", "/"))}
        assert named, f"{name} keeps its data in no named volume"
        assert named <= declared


def test_bind_mounted_config_files_exist() -> None:
    for name, service in compose_services().items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def secret_like(key: str) -> bool:
    """A variable holding a secret value (a *_FILE variable holds a path to one, which is fine)."""
    return bool(re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", key)) and not key.endswith("_FILE")


def test_no_secret_is_written_inline() -> None:
    for name, service in compose_services().items():
        for key, value in (service.get("environment") or {}).items():
            if secret_like(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), f"{name}: {key} must be ${{VAR:?message}}"


def test_database_credentials_are_docker_secrets(tmp_path: Path) -> None:
    services = compose_services()
    app_secrets = {f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata["secret"]}
    for name in ("backend", "backend-init"):
        environment = services[name]["environment"]
        # REDIS_URL may stay: the stack's Redis has no password (it is reachable only inside the network).
        assert app_secrets & set(environment) <= {"REDIS_URL"}, f"{name}: a secret setting in the environment"
        assert "@" not in environment["REDIS_URL"]
        assert environment["DATABASE_URL_FILE"] == "/run/secrets/database_url"
        assert services[name]["secrets"] == ["database_url"]
    assert services["timescaledb"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert services["timescaledb"]["secrets"] == ["postgres_password"]
    declared = raw_compose()["secrets"]
    assert {name: with_defaults(spec["file"]) for name, spec in declared.items()} == {
        "postgres_password": "./secrets/postgres_password",
        "database_url": "./secrets/database_url",
    }
    # `make secrets` writes both, consistent with each other, and never replaces one that exists.
    from scripts.compose_secrets import write

    assert write(tmp_path / "secrets", {"POSTGRES_USER": "line", "POSTGRES_DB": "plant"}) == [
        "postgres_password",
        "database_url",
    ]
    password = (tmp_path / "secrets" / "postgres_password").read_text().strip()
    url_file = tmp_path / "secrets" / "database_url"
    assert url_file.read_text() == f"postgresql://line:{password}@timescaledb:5432/plant\n"
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert write(tmp_path / "secrets", {}) == []
    settings = Settings.from_env({"DATABASE_URL_FILE": str(url_file)})
    assert settings.database_url == f"postgresql+psycopg2://line:{password}@timescaledb:5432/plant"


def test_backend_scales_and_drains() -> None:
    backend = compose_services()["backend"]
    assert "container_name" not in backend, "a fixed container name forbids replicas"
    assert int(with_defaults(str(backend["deploy"]["replicas"]))) >= 2
    assert with_defaults(backend["ports"][0]) == "8000-8001:8000"
    assert backend["depends_on"]["backend-init"]["condition"] == "service_completed_successfully"
    grace = int(backend["stop_grace_period"].rstrip("s"))
    shutdown = float(with_defaults(backend["environment"]["SHUTDOWN_TIMEOUT"]))
    assert grace >= shutdown + 10
    assert "/health/live" in " ".join(backend["healthcheck"]["test"])


def test_backend_environment_only_sets_known_settings() -> None:
    known = {name for name, _, _ in documented_variables()}
    for name in ("backend", "backend-init"):
        assert set(compose_services()[name]["environment"]) - known == set(), name
    assert compose_services()["backend"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"


# Standard OpenTelemetry variables a user may set in .env (only those the app reads; the endpoint is the stack's).
OTEL_PASSTHROUGH = (
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


def backend_settings(**overrides: str) -> Settings:
    """The backend's settings as compose resolves them with .env holding `overrides`."""
    environment = compose_services()["backend"]["environment"]
    resolved = {key: with_defaults(str(value)) for key, value in environment.items()}
    for key, value in environment.items():
        passed = re.fullmatch(r"\$\{(\w+):-[^}]*\}", str(value))
        if passed and passed.group(1) in overrides:
            resolved[key] = overrides[passed.group(1)]
    resolved.pop("DATABASE_URL_FILE")
    resolved["DATABASE_URL"] = "postgresql://u@db/x"
    return Settings.from_env(resolved)


def test_backend_passes_the_standard_otel_variables_through() -> None:
    environment = compose_services()["backend"]["environment"]
    for name in OTEL_PASSTHROUGH:
        assert re.fullmatch(rf"\$\{{{name}:-[^}}]*\}}", str(environment.get(name))), f"{name} is not passed through"
    # Unset: one service name for traces, logs and metrics.
    default = backend_settings()
    assert default.trace_service_name == default.service_name == "backend"
    named = backend_settings(OTEL_SERVICE_NAME="line-1", JAEGER_SERVICE_NAME="legacy")
    assert named.trace_service_name == named.service_name == "line-1"
    # OTEL_TRACES_SAMPLER from .env wins over the stack's JAEGER_SAMPLER_TYPE default (const 1).
    sampled = backend_settings(OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="0.2")
    assert "TraceIdRatioBased{0.2}" in build_sampler(sampled).get_description()


def test_prometheus_runs_with_exemplar_storage_and_the_rules() -> None:
    prometheus = compose_services()["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    assert "./observability/prometheus/rules:/etc/prometheus/rules:ro" in prometheus["volumes"]


def test_jaeger_exposes_otlp_and_the_ui() -> None:
    ports = {str(port).split(":")[-1] for port in compose_services()["jaeger"]["ports"]}
    assert {"4317", "4318", "16686"} <= ports


def test_every_container_is_tailed_by_alloy() -> None:
    alloy_config = (REPO / "observability" / "alloy" / "config.alloy").read_text()
    label = re.search(r'values = \["([\w.]+)=true"\]', alloy_config)
    assert label
    for name, service in compose_services().items():
        assert service["labels"].get(label.group(1)) == "true", f"{name} logs would not reach Loki"


def test_every_variable_compose_reads_is_documented_in_env_example() -> None:
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE_FILE.read_text()))
    example = (REPO / ".env.example").read_text() if (REPO / ".env.example").exists() else ""
    documented = set(re.findall(r"^#?\s*(\w+)=", example, flags=re.MULTILINE))
    assert used - documented == set(), "add these to .env.example"


OPERATIONS = ("prometheus", "alertmanager", "loki", "jaeger", "alloy", "grafana")


def host_ip(port: str | dict[str, Any]) -> str | None:
    """The host address of a resolved port (docker-compose 1 prints "IP:HOST:CONTAINER", the plugin a mapping)."""
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).split(":")
    return parts[0] if len(parts) == 3 else None


def test_operations_ports_listen_on_loopback_unless_opened(tmp_path: Path) -> None:
    for name in OPERATIONS:
        for port in compose_services()[name]["ports"]:
            assert str(port).startswith("${OPS_BIND:-127.0.0.1}:"), f"{name} publishes {port} on every interface"
    env_file = tmp_path / "stack.env"
    env_file.write_text("GRAFANA_ADMIN_PASSWORD=test-only\n")
    resolved = yaml.safe_load(run_config(env_file).stdout)["services"]
    for name in OPERATIONS:
        assert {host_ip(port) for port in resolved[name]["ports"]} == {"127.0.0.1"}, name
    env_file.write_text(env_file.read_text() + "OPS_BIND=0.0.0.0\n")
    opened = yaml.safe_load(run_config(env_file).stdout)["services"]
    assert {host_ip(port) for port in opened["prometheus"]["ports"]} == {"0.0.0.0"}


def test_metrics_leave_the_backend_on_its_operations_port_only() -> None:
    backend = compose_services()["backend"]
    ops_port = backend["environment"]["OPS_PORT"]
    settings = backend_settings()
    assert settings.ops_port == int(ops_port) != settings.port
    assert all(not str(port).endswith(f":{ops_port}") for port in backend["ports"]), "the ops port is published"


def test_the_edge_is_an_optional_nginx_the_backend_trusts() -> None:
    nginx = compose_services()["nginx"]
    assert nginx["profiles"] == ["edge"]
    assert "./deploy/nginx/sqal.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    address = with_defaults(nginx["networks"]["default"]["ipv4_address"])
    subnet = with_defaults(raw_compose()["networks"]["default"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    assert backend_settings().forwarded_allow_ips == (f"{address}/32",), "the backend must trust the edge, only it"
    assert {with_defaults(str(port)).split(":")[-1] for port in nginx["ports"]} == {"443", "80"}
