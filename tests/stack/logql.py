"""What a LogQL query may select on, given the Alloy pipeline (observability/alloy/config.alloy) and the app's JSON
log lines. There is no Loki here: a query naming a label Alloy never sets, a JSON field the app never writes, or a
level in the case Alloy does not keep (it lower-cases `level`) would find nothing, and these checks say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from backend.base.config import LOG_LEVELS
from tests.stack.stackfiles import OBSERVABILITY, compose_services

ALLOY_CONFIG = OBSERVABILITY / "alloy" / "config.alloy"
_SELECTOR = re.compile(r"(?<!\{)\{(?!\{)([^{}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_FILTER = re.compile(r'\|\s*(\w+)\s*(=~|!~|!=|==|>=|<=|=|>|<)\s*("(?:[^"\\]|\\.)*"|[\w.]+)')
_PARSER = re.compile(r"\|\s*json\b")


@dataclass(frozen=True)
class Pipeline:
    """Labels Alloy attaches to each line, structured metadata, the labels whose values it lower-cases, and the
    values each label can take (None: not checked)."""

    stream_labels: frozenset[str]
    metadata: frozenset[str]
    fields: frozenset[str]
    values: dict[str, frozenset[str]]


def _block_keys(text: str, block: str) -> set[str]:
    match = re.search(rf"{re.escape(block)}\s*\{{\s*values\s*=\s*\{{(.*?)\}}", text, flags=re.DOTALL)
    assert match, f"{block} not found in {ALLOY_CONFIG.name}"
    return set(re.findall(r"(\w+)\s*=", match.group(1)))


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A JSON line as Loki's `| json` sees it: nested keys joined with `_`."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "_"))
        else:
            flat[name] = value
    return flat


def pipeline(records: list[dict[str, Any]]) -> Pipeline:
    """The pipeline of config.alloy fed with `records` (the app's log lines) from the compose services."""
    text = ALLOY_CONFIG.read_text()
    stream = set(re.findall(r'target_label\s*=\s*"(\w+)"', text)) | _block_keys(text, "stage.labels")
    lowered = set(re.findall(r'stage\.template\s*\{\s*source\s*=\s*"(\w+)"\s*template\s*=\s*"[^"]*ToLower', text))
    flat = [flatten(record) for record in records]
    # Every level the app can write (a quiet workload logs no CRITICAL line), and those it did write.
    levels = set(LOG_LEVELS) | {str(record["level"]) for record in flat if "level" in record}
    return Pipeline(
        stream_labels=frozenset(stream),
        metadata=frozenset(_block_keys(text, "stage.structured_metadata")),
        fields=frozenset(key for record in flat for key in record),
        values={
            "level": frozenset(level.lower() if "level" in lowered else level for level in levels),
            "service": frozenset(compose_services()),
        },
    )


def _value_problem(name: str, op: str, value: str, known: dict[str, frozenset[str]]) -> str | None:
    if name not in known:
        return None
    produced = known[name]
    if op in ("=", "==", "!="):
        return None if value in produced else f'{name}{op}"{value}": the pipeline only produces {sorted(produced)}'
    alternatives = value.split("|")
    dead = [alt for alt in alternatives if not any(re.fullmatch(alt, v) for v in produced)]
    return f'{name}{op}"{value}": {dead} match none of {sorted(produced)}' if dead else None


def problems(expr: str, line_pipeline: Pipeline) -> list[str]:
    """Why `expr` would select nothing on this pipeline (empty: nothing found)."""
    found: list[str] = []
    known = line_pipeline.values
    for selector in _SELECTOR.finditer(expr):
        for name, op, value in _MATCHER.findall(selector.group(1)):
            if name not in line_pipeline.stream_labels:
                found.append(f"stream label {name!r} is never set (Alloy sets {sorted(line_pipeline.stream_labels)})")
            elif problem := _value_problem(name, op, value, known):
                found.append(problem)
    parser = _PARSER.search(expr)
    for match in _FILTER.finditer(expr):
        name, op, value = match.group(1), match.group(2), match.group(3).strip('"')
        allowed = line_pipeline.stream_labels | line_pipeline.metadata
        if parser and parser.start() < match.start():
            allowed |= line_pipeline.fields
        if name not in allowed:
            found.append(f"{name!r} is neither a label, structured metadata nor (after | json) a log field")
        elif problem := _value_problem(name, op, value, known):
            found.append(problem)
    return found
