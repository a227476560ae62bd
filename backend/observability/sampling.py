"""Trace samplers from the OTel OTEL_TRACES_SAMPLER* variables or the legacy JAEGER_SAMPLER_* ones.

OTEL_TRACES_SAMPLER wins when set (the standard variable over the compatibility one); every Jaeger choice is
parent-based (a request carrying a sampling decision in `traceparent` / `uber-trace-id` keeps it; the sampler
decides for new traces only). Default: parent-based always-on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from backend.base.config import ConfigError, Settings


class RateLimitingSampler(Sampler):
    """At most `per_second` new traces per second per process: a token bucket, like Jaeger's `ratelimiting`."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_second
        self._capacity = max(per_second, 1.0)
        self._balance = self._capacity
        self._clock = clock
        self._last = clock()
        self._lock = threading.Lock()

    def _take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._balance = min(self._capacity, self._balance + (now - self._last) * self._rate)
            self._last = now
            if self._balance >= 1.0:
                self._balance -= 1.0
                return True
            return False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Sample while tokens remain."""
        parent = trace.get_current_span(parent_context).get_span_context()
        state = parent.trace_state if parent.is_valid else None
        if self._take():
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)
        return SamplingResult(Decision.DROP, None, state)

    def get_description(self) -> str:
        return f"RateLimitingSampler{{{self._rate}}}"


def _number(variable: str, raw: str, minimum: float, maximum: float | None = None) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"Invalid value for {variable}: {raw!r} (expected a number)") from None
    if not minimum <= value <= (maximum if maximum is not None else float("inf")):
        bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
        raise ConfigError(f"Invalid value for {variable}: {raw!r} (expected a number {bound})")
    return value


def _jaeger_sampler(kind: str, raw: str) -> Sampler:
    param = raw.strip()
    if kind == "const":
        if param not in ("", "0", "1"):
            raise ConfigError(f"Invalid value for JAEGER_SAMPLER_PARAM: {raw!r} (const expects 0 or 1)")
        return ParentBased(ALWAYS_OFF if param == "0" else ALWAYS_ON)
    if not param:
        raise ConfigError(f"Missing JAEGER_SAMPLER_PARAM: required with JAEGER_SAMPLER_TYPE={kind}")
    if kind == "probabilistic":
        return ParentBased(TraceIdRatioBased(_number("JAEGER_SAMPLER_PARAM", param, 0.0, 1.0)))
    return ParentBased(RateLimitingSampler(_number("JAEGER_SAMPLER_PARAM", param, 0.0)))


def _otel_sampler(name: str, raw: str) -> Sampler:
    key = name.strip().lower()

    def ratio() -> float:
        return _number("OTEL_TRACES_SAMPLER_ARG", raw, 0.0, 1.0) if raw.strip() else 1.0

    builders: dict[str, Callable[[], Sampler]] = {
        "always_on": lambda: ALWAYS_ON,
        "always_off": lambda: ALWAYS_OFF,
        "traceidratio": lambda: TraceIdRatioBased(ratio()),
        "parentbased_always_on": lambda: ParentBased(ALWAYS_ON),
        "parentbased_always_off": lambda: ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": lambda: ParentBased(TraceIdRatioBased(ratio())),
    }
    if key not in builders:
        raise ConfigError(f"Invalid value for OTEL_TRACES_SAMPLER: {name!r} (expected one of {', '.join(builders)})")
    return builders[key]()


def build_sampler(settings: Settings) -> Sampler:
    """The sampler the settings ask for; ConfigError (naming the variable) on a bad value."""
    if settings.otel_traces_sampler:
        return _otel_sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)
    if settings.jaeger_sampler_type:
        return _jaeger_sampler(settings.jaeger_sampler_type, settings.jaeger_sampler_param)
    return ParentBased(ALWAYS_ON)
