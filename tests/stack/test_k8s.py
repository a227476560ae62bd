"""Kubernetes manifests: schema-valid, probes matching the app's routes and port, safe shutdown and security."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from apiflask import APIFlask

from backend.base.config import Settings, documented_variables
from scripts import timescale
from tests.stack.stackfiles import REPO, compose_services, with_defaults

K8S = REPO / "deploy" / "k8s"
OVERLAY = K8S / "overlays" / "production"
SECRET_TEMPLATE = K8S / "base" / "secret.template.yaml"
# Oldest supported Kubernetes and the newest schemas the validator ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
MARGIN_SECONDS = 5


def load_kustomization(directory: Any) -> list[dict[str, Any]]:
    """Resources of a kustomization without kubectl: files and bases, in order (no transformers applied)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    documents: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = directory / resource
        if path.is_dir():
            documents += load_kustomization(path)
        else:
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


@cache
def rendered() -> tuple[dict[str, Any], ...]:
    """The production overlay as `kubectl kustomize` renders it (falls back to reading the files)."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        result = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
    return tuple(load_kustomization(OVERLAY))


def resource(kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in rendered() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def container() -> dict[str, Any]:
    return dict(resource("Deployment")["spec"]["template"]["spec"]["containers"][0])


def config_map() -> dict[str, str]:
    return dict(resource("ConfigMap")["data"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schema(version: str) -> None:
    documents = [*rendered(), yaml.safe_load(SECRET_TEMPLATE.read_text())]
    kinds = {doc["kind"] for doc in documents}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Job",
    } <= kinds
    for doc in documents:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    broken = yaml.safe_load(yaml.safe_dump(resource("Deployment")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = {"not": "a port"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def app_routes() -> set[str]:
    """Routes of the app's health blueprint (imported here: a broken backend fails this test, not collection)."""
    from backend.core.health import bp as health_blueprint

    app = APIFlask("probe-routes")
    app.register_blueprint(health_blueprint)
    return {rule.rule for rule in app.url_map.iter_rules()}


def test_probes_hit_the_apps_health_routes_on_its_port() -> None:
    spec = container()
    port = next(p for p in spec["ports"] if p["name"] == "http")
    assert port["containerPort"] == Settings.__dataclass_fields__["port"].default == int(config_map()["PORT"])
    expected = {
        "startupProbe": ("/health/startup", 5, 30),
        "livenessProbe": ("/health/live", 30, 3),
        "readinessProbe": ("/health/ready", 10, 3),
    }
    routes = app_routes()
    for probe, (path, period, failures) in expected.items():
        settings = spec[probe]
        assert settings["httpGet"] == {"path": path, "port": "http"}, probe
        assert path in routes, f"{probe}: the app has no {path}"
        assert (settings["periodSeconds"], settings["failureThreshold"]) == (period, failures), probe


def test_grace_period_covers_prestop_and_shutdown_timeout() -> None:
    pod = resource("Deployment")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    shutdown_timeout = float(config_map()["SHUTDOWN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + shutdown_timeout + MARGIN_SECONDS


def test_pods_run_unprivileged_on_a_read_only_root() -> None:
    for kind in ("Deployment", "Job"):
        pod = resource(kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 1000
        for spec in pod["containers"]:
            security = spec["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, kind
            assert security["allowPrivilegeEscalation"] is False, kind
            assert security["capabilities"]["drop"] == ["ALL"], kind
            assert spec["resources"]["requests"]["memory"], kind
            assert spec["resources"]["limits"]["memory"], kind
            mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], kind


def test_prometheus_multiproc_dir_is_a_writable_empty_dir() -> None:
    pod = resource("Deployment")["spec"]["template"]["spec"]
    env = {item["name"]: item["value"] for item in container()["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[env["PROMETHEUS_MULTIPROC_DIR"]])
    assert volume["emptyDir"]["medium"] == "Memory"
    # The migration Job has no such volume: the app would try to create the directory on a read-only root.
    assert "PROMETHEUS_MULTIPROC_DIR" not in config_map()
    job = resource("Job")["spec"]["template"]["spec"]["containers"][0]
    assert all(item["name"] != "PROMETHEUS_MULTIPROC_DIR" for item in job.get("env", []))


def test_service_pdb_and_hpa_select_the_deployment() -> None:
    deployment = resource("Deployment")
    assert deployment["spec"]["replicas"] == 3
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = resource("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pdb = resource("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    hpa = resource("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sqal-backend"}
    assert hpa["spec"]["minReplicas"] >= 3


def test_migration_job_runs_alembic_with_the_release_image() -> None:
    job = resource("Job")["spec"]["template"]["spec"]
    assert job["restartPolicy"] == "Never"
    assert job["containers"][0]["command"] == ["flask", "--app", "backend", "db", "upgrade"]
    assert job["containers"][0]["image"] == container()["image"]
    assert container()["image"].endswith(":1.0.0")


def test_the_database_is_the_timescaledb_the_tests_run() -> None:
    image = f"timescale/timescaledb:{timescale.NEWEST_VERSION}-pg16"
    assert with_defaults(compose_services()["timescaledb"]["image"]) == image
    assert resource("Job")["metadata"]["annotations"]["sqal/database"] == image


def test_config_map_sets_only_known_settings() -> None:
    known = {name for name, _, _ in documented_variables()}
    assert set(config_map()) - known == set()
    assert {item["name"] for item in container()["env"]} - known == set()


def secret_settings() -> set[str]:
    return {f.metadata["env"] for f in dataclasses.fields(Settings) if f.metadata["secret"]}


def test_secret_template_has_every_secret_setting_and_no_value() -> None:
    template = yaml.safe_load(SECRET_TEMPLATE.read_text())
    assert set(template["stringData"]) == secret_settings()
    assert set(template["stringData"].values()) == {""}
    assert not any(doc["kind"] == "Secret" for doc in rendered()), "applying the kustomization must not blank it"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_secrets_reach_the_pods_as_files_never_as_environment(kind: str, tmp_path: Path) -> None:
    template = yaml.safe_load(SECRET_TEMPLATE.read_text())
    pod = resource(kind)["spec"]["template"]["spec"]
    [spec] = pod["containers"]
    assert all("secretRef" not in ref for ref in spec.get("envFrom", [])), "a secret in the environment"
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == template["metadata"]["name"]
    [mount] = [m for m in spec["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    # Readable by the app's group (fsGroup), nobody else.
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    files = {item["name"]: item["value"] for item in spec["env"] if item["name"].endswith("_FILE")}
    needed = secret_settings() - ({"METRICS_TOKEN"} if kind == "Job" else set())
    assert files == {f"{name}_FILE": f"{mount['mountPath']}/{name}" for name in needed}
    # What the app makes of the mounted Secret: an empty key is unset, the others are read.
    directory = tmp_path
    values = {"DATABASE_URL": "postgresql://app:pw@db:5432/sqal\n", "REDIS_PASSWORD": "pw"}
    for name in needed:
        (directory / name).write_text(values.get(name, ""))
    environ = {**config_map(), **{key: str(directory / Path(path).name) for key, path in files.items()}}
    settings = Settings.from_env(environ)
    assert settings.database_url == "postgresql+psycopg2://app:pw@db:5432/sqal"
    assert settings.redis_url == f"redis://:pw@{config_map()['REDIS_HOST']}:6379/0"


def test_the_operations_port_is_scraped_and_the_api_port_is_not() -> None:
    ops_port = int(config_map()["OPS_PORT"])
    assert ops_port != int(config_map()["PORT"])
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports["ops"] == ops_port
    annotations = resource("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ops_port)
    service_ports = {p["name"]: p["targetPort"] for p in resource("Service")["spec"]["ports"]}
    assert service_ports == {"http": "http", "ops": "ops"}


OPERATOR_OVERLAY = K8S / "overlays" / "prometheus-operator"


def base_labels() -> dict[str, str]:
    """The labels the base kustomization puts on every resource (applied by kustomize, not in the files)."""
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    return {key: value for entry in kustomization["labels"] for key, value in entry["pairs"].items()}


def test_config_map_names_every_signal_alike_over_http_protobuf() -> None:
    settings = Settings.from_env({**config_map(), "DATABASE_URL": "postgresql://u@db/x"})
    assert settings.trace_service_name == settings.service_name == config_map()["OTEL_SERVICE_NAME"]
    assert config_map()["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"


def test_service_monitor_scrapes_the_service_like_the_annotations_do() -> None:
    documents = load_kustomization(OPERATOR_OVERLAY)
    [monitor] = [doc for doc in documents if doc["kind"] == "ServiceMonitor"]
    # The overlay is the production overlay plus the ServiceMonitor, nothing else.
    assert [doc for doc in documents if doc is not monitor] == list(load_kustomization(OVERLAY))
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    operator = yaml.safe_load((OPERATOR_OVERLAY / "kustomization.yaml").read_text())
    production = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert operator["namespace"] == production["namespace"]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [production["namespace"]]
    service = resource("Service")
    service_labels = {**base_labels(), **service["metadata"].get("labels", {})}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    [endpoint] = monitor["spec"]["endpoints"]
    annotations = resource("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    [port] = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    container_port = next(p for p in container()["ports"] if p["name"] == port["targetPort"])
    assert str(container_port["containerPort"]) == annotations["prometheus.io/port"]
    assert endpoint["port"] == "ops", "the API port answers /metrics with 404"
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"
    # Queries select job="backend": the Operator's default job (the Service name) is replaced.
    prometheus = yaml.safe_load((REPO / "observability" / "prometheus" / "prometheus.yml").read_text())
    assert "backend" in {job["job_name"] for job in prometheus["scrape_configs"]}
    assert {"action": "replace", "targetLabel": "job", "replacement": "backend"} in endpoint["relabelings"]


def test_service_monitor_is_not_in_the_default_overlay() -> None:
    """The CRD may be missing: the production overlay must apply without it."""
    assert all(doc["kind"] != "ServiceMonitor" for doc in rendered())
    assert all(doc["apiVersion"].split("/")[0] != "monitoring.coreos.com" for doc in rendered())
