"""Alloy, Loki and Jaeger configuration, checked structurally (their binaries are not packaged for Debian)."""

from __future__ import annotations

import re

import yaml

from tests.stack.stackfiles import OBSERVABILITY, compose_services

ALLOY = (OBSERVABILITY / "alloy" / "config.alloy").read_text()
LOKI = yaml.safe_load((OBSERVABILITY / "loki" / "loki.yml").read_text())
JAEGER = yaml.safe_load((OBSERVABILITY / "jaeger" / "config.yml").read_text())


def alloy_block(header: str) -> str:
    """The body of the top-level Alloy block starting with `header` (e.g. 'loki.process "json_lines"')."""
    start = ALLOY.index(header + " {")
    depth = 0
    for end in range(ALLOY.index("{", start), len(ALLOY)):
        depth += {"{": 1, "}": -1}.get(ALLOY[end], 0)
        if depth == 0:
            return ALLOY[start:end]
    raise AssertionError(f"{header}: unbalanced braces")


def test_alloy_components_reference_only_defined_components() -> None:
    code = re.sub(r"//.*", "", ALLOY)
    assert code.count("{") == code.count("}")
    defined = set(re.findall(r"^([a-z_.]+) \"(\w+)\" \{", code, flags=re.MULTILINE))
    assert {("discovery.docker", "containers"), ("loki.source.docker", "containers"), ("loki.write", "loki")} <= defined
    references = re.findall(r"\b((?:discovery|loki)\.[a-z_.]+?)\.(\w+)\.(receiver|targets|rules|output)\b", code)
    assert references
    for component, label, _ in references:
        assert (component, label) in defined, f"{component}.{label} is used but not defined"


def test_alloy_labels_service_and_level_and_keeps_trace_ids_as_structured_metadata() -> None:
    relabel = alloy_block('discovery.relabel "containers"')
    assert '"__meta_docker_container_label_com_docker_compose_service"' in relabel
    assert 'target_label  = "service"' in relabel
    process = alloy_block('loki.process "json_lines"')
    assert re.search(r"stage\.json \{.*level\s*=\s*\"level\".*trace_id\s*=\s*\"trace_id\"", process, flags=re.DOTALL)
    labels = re.search(r"stage\.labels \{(.*?)\n  \}", process, flags=re.DOTALL)
    assert labels
    assert "level" in labels.group(1)
    assert "trace_id" not in labels.group(1), "a trace id as a label makes one Loki stream per request"
    metadata = re.search(r"stage\.structured_metadata \{(.*?)\n  \}", process, flags=re.DOTALL)
    assert metadata
    assert "trace_id" in metadata.group(1)
    assert "http://loki:3100/loki/api/v1/push" in alloy_block('loki.write "loki"')


def test_alloy_reads_the_docker_socket_read_only() -> None:
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in compose_services()["alloy"]["volumes"]


def test_loki_accepts_structured_metadata() -> None:
    schema = LOKI["schema_config"]["configs"][-1]
    assert schema["schema"] == "v13"
    assert schema["store"] == "tsdb"
    assert LOKI["limits_config"]["allow_structured_metadata"] is True
    assert LOKI["server"]["http_listen_port"] == 3100
    assert LOKI["common"]["path_prefix"] == "/loki"
    assert "loki-data:/loki" in compose_services()["loki"]["volumes"]


def test_jaeger_pipeline_uses_defined_components_and_the_expected_ports() -> None:
    service = JAEGER["service"]
    assert set(service["extensions"]) <= set(JAEGER["extensions"])
    for pipeline in service["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(JAEGER["receivers"])
        assert set(pipeline.get("processors", [])) <= set(JAEGER["processors"])
        assert set(pipeline["exporters"]) <= set(JAEGER["exporters"])
    otlp = JAEGER["receivers"]["otlp"]["protocols"]
    assert otlp["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert otlp["http"]["endpoint"] == "0.0.0.0:4318"
    assert JAEGER["extensions"]["jaeger_query"]["http"]["endpoint"] == "0.0.0.0:16686"
    storage = JAEGER["extensions"]["jaeger_query"]["storage"]["traces"]
    assert storage in JAEGER["extensions"]["jaeger_storage"]["backends"]
    assert JAEGER["exporters"]["jaeger_storage_exporter"]["trace_storage"] == storage
    health = JAEGER["extensions"]["healthcheckv2"]["http"]["endpoint"].rsplit(":", 1)[1]
    assert f"127.0.0.1:{health}/status" in " ".join(compose_services()["jaeger"]["healthcheck"]["test"])
