"""Fail-closed defaults: the shipped image, the Kubernetes manifests and compose never start with authentication
off or the chaos routes on by default, and AUTH_MODE=off in production stops startup unless explicitly allowed."""

from __future__ import annotations

import pytest

from backend.base.config import ConfigError, Settings
from tests.stack.stackfiles import compose_services, image_environment, with_defaults
from tests.stack.test_k8s import config_map, rendered
from tests.support.server import check_config

URL = "postgresql://u@127.0.0.1:5432/db"
REFUSAL = "config error: AUTH_MODE=off is refused with APP_ENV=production"


def test_the_image_defaults_to_production_with_auth_and_without_chaos() -> None:
    env = image_environment("runtime", "backend")
    settings = Settings.from_env({**env, "DATABASE_URL": URL})
    assert (settings.app_env, settings.auth_mode, settings.chaos_enabled) == ("production", "apikey", False)


def test_every_kubernetes_container_runs_in_production_with_auth() -> None:
    for document in rendered():
        if document["kind"] not in ("Deployment", "Job"):
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            sources = [
                source["configMapRef"]["name"] for source in container.get("envFrom", []) if "configMapRef" in source
            ]
            assert sources, f"{document['metadata']['name']}: no ConfigMap, so no APP_ENV"
            names = {item["name"] for item in container.get("env", [])}
            assert not names & {"APP_ENV", "AUTH_MODE", "ALLOW_INSECURE_AUTH_OFF", "CHAOS_ENABLED"}
    settings = Settings.from_env({**config_map(), "DATABASE_URL": URL})
    assert (settings.app_env, settings.auth_mode, settings.chaos_enabled) == ("production", "apikey", False)


def test_compose_backends_default_to_api_keys() -> None:
    backends = [s for s in compose_services().values() if "AUTH_MODE" in (s.get("environment") or {})]
    assert backends, "no compose service sets AUTH_MODE: the search would be vacuous"
    for service in backends:
        env = {key: with_defaults(str(value)) for key, value in service["environment"].items()}
        assert (env["APP_ENV"], env["AUTH_MODE"], env["ALLOW_INSECURE_AUTH_OFF"]) == ("production", "apikey", "false")


def test_auth_off_in_production_is_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DATABASE_URL": URL, "APP_ENV": "production", "AUTH_MODE": "off"})
    assert "\n" not in str(info.value)
    assert "ALLOW_INSECURE_AUTH_OFF=true" in str(info.value)
    allowed = Settings.from_env(
        {"DATABASE_URL": URL, "APP_ENV": "production", "AUTH_MODE": "off", "ALLOW_INSECURE_AUTH_OFF": "true"}
    )
    assert allowed.auth_mode == "off"
    assert Settings.from_env({"DATABASE_URL": URL, "AUTH_MODE": "off"}).auth_mode == "off"  # development


@pytest.mark.parametrize("allow", [None, "false"])
def test_gunicorn_refuses_auth_off_in_production_with_one_line(allow: str | None) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": URL, "APP_ENV": "production", "AUTH_MODE": "off"}
    if allow is not None:
        env["ALLOW_INSECURE_AUTH_OFF"] = allow
    result = check_config(env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(REFUSAL)
