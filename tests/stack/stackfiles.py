"""Readers for the observability stack files: the metric contract, rules, dashboards and their PromQL.

Shared by the tests in tests/stack (and usable by an app-side test that checks /metrics against the contract).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "observability"
PROMETHEUS_DIR = OBSERVABILITY / "prometheus"
GRAFANA_DIR = OBSERVABILITY / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
DATASOURCES_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml"
CONTRACT_FILE = OBSERVABILITY / "metric-names.txt"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

METRIC_TYPES = ("counter", "gauge", "histogram")
# An image reference pinned to an exact x.y.z version (optionally with a digest): never `latest`, never `7`.
PINNED_IMAGE = re.compile(r"[a-z0-9][a-z0-9./_-]*:v?\d+\.\d+\.\d+[A-Za-z0-9._-]*(@sha256:[0-9a-f]{64})?")
# Series Prometheus itself creates: never exported by the app, always allowed in queries.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"})
# Labels Prometheus attaches to every backend series (scrape config), on top of the app's own.
TARGET_LABELS = frozenset({"job", "instance", "service", "pid"})


def require_tool(name: str) -> str:
    """Path of a command-line tool; skip the test without it, but fail under CI=true (CI must install it)."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (Debian: apt-get install {DEBIAN_PACKAGES.get(name, name)})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " - CI=true requires it")
    pytest.skip(message)


DEBIAN_PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "amtool": "prometheus-alertmanager",
    "docker-compose": "docker-compose",
    "nginx": "nginx",
    "openssl": "openssl",
}


# --- docker-compose.yml ------------------------------------------------------------------------------------------


def raw_compose() -> dict[str, Any]:
    """docker-compose.yml as written (variables not interpolated)."""
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def compose_services() -> dict[str, dict[str, Any]]:
    """The compose services by name."""
    return dict(raw_compose()["services"])


def with_defaults(value: str) -> str:
    """Interpolate `${VAR:-default}` with its default (what compose does when VAR is unset)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


# --- Dockerfile ----------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    """One FROM ... AS name block: its base and instructions (keyword, arguments)."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        """Arguments of every `keyword` instruction of the stage, in order."""
        return [arguments for kw, arguments in self.instructions if kw == keyword]


def parse_dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", arguments.strip(), flags=re.IGNORECASE)
            assert match, line
            stages.append(Stage(match.group(2) or "", match.group(1)))
        elif stages:
            stages[-1].instructions.append((keyword, arguments.strip()))
        elif keyword == "ARG":
            name, _, default = arguments.partition("=")
            global_args[name] = default
    return global_args, stages


def stage(name: str) -> Stage:
    """The Dockerfile stage called `name`."""
    return next(s for s in parse_dockerfile()[1] if s.name == name)


def image_environment(*stages: str) -> dict[str, str]:
    """ENV variables the named stages set (PATH left out: it refers to the image's own layout)."""
    env: dict[str, str] = {}
    for name in stages:
        for arguments in stage(name).args("ENV"):
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    env.pop("PATH", None)
    return env


# --- metric contract ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContractMetric:
    """One line of observability/metric-names.txt."""

    name: str
    type: str
    labels: frozenset[str]

    def sample_names(self) -> set[str]:
        """Names of the samples this metric produces on /metrics."""
        if self.type == "histogram":
            return {f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count"}
        return {self.name}

    def labels_of(self, sample_name: str) -> frozenset[str]:
        """Labels a query may match on for one of this metric's samples."""
        extra = {"le"} if sample_name.endswith("_bucket") else set()
        return self.labels | extra | TARGET_LABELS


def load_contract(path: Path = CONTRACT_FILE) -> dict[str, ContractMetric]:
    """Parse the contract; raise ValueError on a malformed or duplicated line."""
    metrics: dict[str, ContractMetric] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3 or fields[1] not in METRIC_TYPES or not re.fullmatch(r"[a-z_][a-z0-9_]*", fields[0]):
            raise ValueError(f"{path.name}:{number}: expected '<name> <{'|'.join(METRIC_TYPES)}> <labels|->'")
        name, kind, labels = fields
        if name in metrics:
            raise ValueError(f"{path.name}:{number}: {name} listed twice")
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"{path.name}:{number}: counter {name} must end in _total")
        metrics[name] = ContractMetric(name, kind, frozenset() if labels == "-" else frozenset(labels.split(",")))
    return metrics


def sample_index(contract: dict[str, ContractMetric]) -> dict[str, ContractMetric]:
    """Exported sample name → its contract metric."""
    return {sample: metric for metric in contract.values() for sample in metric.sample_names()}


# --- rules ------------------------------------------------------------------------------------------------------


def rule_files() -> list[Path]:
    """Prometheus rule files loaded by prometheus.yml."""
    return sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))


def rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, rule) for every recording and alerting rule."""
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path, rule


def recorded_names() -> set[str]:
    """Series names produced by recording rules."""
    return {rule["record"] for _, rule in rules() if "record" in rule}


def alert_names() -> list[str]:
    """Every alert defined in the rule files."""
    return [rule["alert"] for _, rule in rules() if "alert" in rule]


# --- PromQL in dashboards, rules and provisioning ----------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A PromQL expression and where it comes from (for error messages)."""

    source: str
    expr: str


def dashboards() -> dict[str, dict[str, Any]]:
    """File name → parsed dashboard JSON."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _is_prometheus(datasource: Any) -> bool:
    return isinstance(datasource, dict) and datasource.get("type") == "prometheus"


def dashboard_queries() -> list[Query]:
    """PromQL of every Prometheus target and query variable of every dashboard."""
    found: list[Query] = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                if _is_prometheus(target.get("datasource", panel.get("datasource"))):
                    found.append(Query(f"{name} / {panel['title']} / {target['refId']}", target["expr"]))
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query" and _is_prometheus(variable.get("datasource")):
                query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
                inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
                found.append(Query(f"{name} / ${variable['name']}", inner.group(1) if inner else query))
    return found


def rule_queries() -> list[Query]:
    """The expression of every rule."""
    return [Query(f"{path.name} / {rule.get('alert') or rule['record']}", rule["expr"]) for path, rule in rules()]


def provisioning_queries() -> list[Query]:
    """PromQL the Jaeger datasource runs for trace → metrics links (after Grafana's $$ unescaping)."""
    found: list[Query] = []
    for source in yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"]:
        for query in source.get("jsonData", {}).get("tracesToMetrics", {}).get("queries", []):
            found.append(Query(f"datasource {source['uid']} / {query['name']}", query["query"].replace("$$", "$")))
    return found


_DURATION_VARIABLES = re.compile(
    r"\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}"
)
_TEMPLATE_VARIABLE = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+")


def expand_grafana_variables(expr: str) -> str:
    """What Prometheus receives once Grafana has filled in its variables (durations → 5m, others → .*)."""
    expr = _DURATION_VARIABLES.sub("5m", expr)
    expr = expr.replace("$__tags", 'path="/products"')
    return _TEMPLATE_VARIABLE.sub(".*", expr)


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    """Every vector selector of an expression (raises ValueError when it does not parse)."""
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def selector_name(selector: promql_parser.VectorSelector) -> str | None:
    """Metric name of a selector, whether written `name{...}` or `{__name__="name"}`."""
    if selector.name:
        return str(selector.name)
    for matcher in selector.matchers.matchers:
        if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
            return str(matcher.value)
    return None


# --- queries written in README.md ----------------------------------------------------------------------------------

README = REPO / "README.md"


def readme_queries(language: str) -> list[Query]:
    """Every query of the README's ```<language> blocks: one per line, `# comments` dropped, an indented line
    continuing the previous query."""
    found: list[Query] = []
    for number, block in enumerate(re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL), 1):
        lines: list[str] = []
        for raw in block.splitlines():
            line = re.sub(r"\s+#.*$", "", raw).rstrip()
            if not line.strip():
                continue
            if raw[:1].isspace() and lines:
                lines[-1] += " " + line.strip()
            else:
                lines.append(line)
        found += [Query(f"README.md {language} block {number} / {expr[:60]}", expr) for expr in lines]
    return found


def dashboard_logql() -> list[Query]:
    """LogQL of every Loki target of the dashboards and of the datasource links (after Grafana's $$ unescaping)."""
    found = [
        Query(f"{name} / {panel['title']}", target["expr"])
        for name, dashboard in dashboards().items()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("datasource", {}).get("type") == "loki"
    ]
    for source in yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"]:
        link = source.get("jsonData", {}).get("tracesToLogsV2", {})
        if link.get("query"):
            found.append(Query(f"datasource {source['uid']} / traces to logs", link["query"].replace("$$", "$")))
    return found
