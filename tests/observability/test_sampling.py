"""JAEGER_SAMPLER_* / OTEL_TRACES_SAMPLER* to OpenTelemetry samplers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from backend.base.config import ConfigError, Settings
from backend.observability.sampling import RateLimitingSampler, build_sampler
from tests.support.server import GunicornServer

DB = "postgresql://u@127.0.0.1/x"


def sampler(**env: str) -> Sampler:
    return build_sampler(Settings.from_env({"DATABASE_URL": DB, **env}))


def root_decisions(chosen: Sampler, count: int = 2000) -> int:
    rng = random.Random(4)
    return sum(chosen.should_sample(None, rng.getrandbits(128), "GET /").decision.is_sampled() for _ in range(count))


def remote_parent(sampled: bool) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    context = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(context))


def test_default_samples_every_new_trace_and_follows_the_parent() -> None:
    chosen = sampler()
    assert root_decisions(chosen, 50) == 50
    assert chosen.should_sample(remote_parent(False), 0x1234, "GET /").decision is Decision.DROP


@pytest.mark.parametrize(("param", "expected"), [("1", 300), ("0", 0), ("", 300)])
def test_const(param: str, expected: int) -> None:
    assert root_decisions(sampler(JAEGER_SAMPLER_TYPE="const", JAEGER_SAMPLER_PARAM=param), 300) == expected


def test_const_zero_still_keeps_a_sampled_callers_trace() -> None:
    chosen = sampler(JAEGER_SAMPLER_TYPE="const", JAEGER_SAMPLER_PARAM="0")
    assert chosen.should_sample(remote_parent(True), 0x1234, "GET /").decision.is_sampled()


def test_probabilistic_samples_about_the_given_share() -> None:
    sampled = root_decisions(sampler(JAEGER_SAMPLER_TYPE="probabilistic", JAEGER_SAMPLER_PARAM="0.25"))
    assert 400 < sampled < 600


def test_ratelimiting_is_a_token_bucket() -> None:
    now = [100.0]
    limiter = RateLimitingSampler(2, clock=lambda: now[0])
    decisions = [limiter.should_sample(None, 1, "x").decision.is_sampled() for _ in range(5)]
    assert decisions == [True, True, False, False, False]
    now[0] += 0.5  # one token refilled
    assert [limiter.should_sample(None, 1, "x").decision.is_sampled() for _ in range(2)] == [True, False]
    now[0] += 60  # never more than the bucket's capacity
    assert sum(limiter.should_sample(None, 1, "x").decision.is_sampled() for _ in range(10)) == 2


def test_ratelimiting_from_the_environment_is_parent_based() -> None:
    chosen = sampler(JAEGER_SAMPLER_TYPE="ratelimiting", JAEGER_SAMPLER_PARAM="3")
    assert root_decisions(chosen, 100) in (3, 4)  # 3 tokens, plus whatever refilled during the loop
    assert chosen.should_sample(remote_parent(True), 0x1234, "GET /").decision.is_sampled()
    assert "RateLimitingSampler{3.0}" in chosen.get_description()


@pytest.mark.parametrize(
    ("name", "arg", "expected"),
    [("always_off", "", 0), ("always_on", "", 200), ("traceidratio", "0", 0), ("parentbased_traceidratio", "1", 200)],
)
def test_otel_variables(name: str, arg: str, expected: int) -> None:
    assert root_decisions(sampler(OTEL_TRACES_SAMPLER=name, OTEL_TRACES_SAMPLER_ARG=arg), 200) == expected


def test_otel_variables_win_over_jaeger_ones() -> None:
    chosen = sampler(JAEGER_SAMPLER_TYPE="const", JAEGER_SAMPLER_PARAM="1", OTEL_TRACES_SAMPLER="always_off")
    assert root_decisions(chosen, 10) == 0
    ratio = sampler(JAEGER_SAMPLER_TYPE="const", JAEGER_SAMPLER_PARAM="0", OTEL_TRACES_SAMPLER="traceidratio")
    assert root_decisions(ratio, 10) == 10  # OTEL_TRACES_SAMPLER_ARG unset: ratio 1
    # Without OTEL_TRACES_SAMPLER the compatibility variables still apply (an ARG alone chooses nothing).
    legacy = sampler(JAEGER_SAMPLER_TYPE="const", JAEGER_SAMPLER_PARAM="0", OTEL_TRACES_SAMPLER_ARG="1")
    assert root_decisions(legacy, 10) == 0


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"JAEGER_SAMPLER_TYPE": "const", "JAEGER_SAMPLER_PARAM": "2"}, "JAEGER_SAMPLER_PARAM"),
        ({"JAEGER_SAMPLER_TYPE": "probabilistic", "JAEGER_SAMPLER_PARAM": "1.5"}, "JAEGER_SAMPLER_PARAM"),
        ({"JAEGER_SAMPLER_TYPE": "probabilistic"}, "JAEGER_SAMPLER_PARAM"),
        ({"JAEGER_SAMPLER_TYPE": "ratelimiting", "JAEGER_SAMPLER_PARAM": "lots"}, "JAEGER_SAMPLER_PARAM"),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "-1"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"JAEGER_SAMPLER_TYPE": "remote"}, "JAEGER_SAMPLER_TYPE"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name"}, "OTEL_RESOURCE_ATTRIBUTES"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        sampler(**env)


def test_http_protobuf_is_accepted_in_any_case() -> None:
    settings = Settings.from_env({"DATABASE_URL": DB, "OTEL_EXPORTER_OTLP_PROTOCOL": "HTTP/protobuf"})
    assert settings.otel_exporter_otlp_protocol == "http/protobuf"
    assert Settings.from_env({"DATABASE_URL": DB, "OTEL_EXPORTER_OTLP_PROTOCOL": ""}).otel_exporter_otlp_protocol


@pytest.mark.gunicorn
def test_gunicorn_refuses_grpc_with_one_line(tmp_path: Path) -> None:
    server = GunicornServer({"DATABASE_URL": DB, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, tmp_path, workers=1)
    with pytest.raises(RuntimeError, match="exited with 2"):
        server.start(timeout=20)
    assert server.stderr().strip() == (
        "config error: Invalid value for OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' (only http/protobuf is supported: "
        "point the endpoint at the collector's OTLP/HTTP port 4318)"
    )


@pytest.mark.gunicorn
def test_gunicorn_refuses_to_start_with_a_bad_sampler(tmp_path: Path) -> None:
    env = {"DATABASE_URL": DB, "JAEGER_SAMPLER_TYPE": "probabilistic", "JAEGER_SAMPLER_PARAM": "often"}
    server = GunicornServer(env, tmp_path, workers=1)
    with pytest.raises(RuntimeError, match="exited with 2"):
        server.start(timeout=20)
    assert server.stderr().strip() == (
        "config error: Invalid value for JAEGER_SAMPLER_PARAM: 'often' (expected a number)"
    )
    assert server.stdout() == ""
