"""The app's own OpenAPI document turned into the list of inputs a security sweep must cover.

Every operation with its query and path parameters and the top-level fields of its JSON body, each flagged
string-typed or not (`$ref`, `anyOf` and enums resolved), so a new route or field is swept without editing tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Input:
    """One parameter or body field of an operation."""

    name: str
    location: str  # "query", "path" or "body"
    schema: dict[str, Any]
    is_string: bool


@dataclass
class Operation:
    """One method on one path, with everything a client can put text into."""

    method: str
    path: str
    responses: frozenset[int]
    inputs: list[Input] = field(default_factory=list)
    body_schema: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"

    def of(self, location: str) -> list[Input]:
        return [item for item in self.inputs if item.location == location]


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with `$ref` followed (local references only)."""
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def alternatives(spec: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null branches of a schema (`anyOf`/`oneOf` flattened), references resolved."""
    schema = resolve(spec, schema)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if not branches:
        return [schema]
    found: list[dict[str, Any]] = []
    for branch in branches:
        found.extend(alternatives(spec, branch))
    return [branch for branch in found if branch.get("type") != "null"]


def is_string_schema(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    """True when a client may send free text there (a string, an enum of strings, a string format)."""
    return any(branch.get("type") == "string" for branch in alternatives(spec, schema))


def valid_value(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A value the schema accepts, for the fields a sweep is not attacking."""
    branch = alternatives(spec, schema)[0]
    if "example" in branch:
        return branch["example"]
    if "enum" in branch:
        return branch["enum"][0]
    kind = str(branch.get("type"))
    if kind == "object":
        return base_body(spec, branch)
    return {"integer": 1, "number": 1.0, "boolean": True, "array": []}.get(kind, "x")


def base_body(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A valid body: the schema's example when it has one, else every required field with a valid value."""
    schema = resolve(spec, schema)
    if isinstance(schema.get("example"), dict):
        return dict(schema["example"])
    properties = schema.get("properties", {})
    return {name: valid_value(spec, properties[name]) for name in schema.get("required", [])}


def _json_body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    for mimetype, entry in content.items():
        if mimetype == "application/json" or mimetype.endswith("+json"):
            schema: dict[str, Any] = entry.get("schema", {})
            return schema
    return None


def operations(spec: dict[str, Any]) -> list[Operation]:
    """Every operation of the document, in document order."""
    found = []
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method in HTTP_METHODS:
            if method not in item:
                continue
            raw = item[method]
            responses = frozenset(int(code) for code in raw.get("responses", {}) if code.isdigit())
            operation = Operation(method, path, responses)
            for parameter in [*shared, *raw.get("parameters", [])]:
                parameter = resolve(spec, parameter)
                if parameter["in"] in ("query", "path"):
                    schema = parameter.get("schema", {})
                    operation.inputs.append(
                        Input(parameter["name"], parameter["in"], schema, is_string_schema(spec, schema))
                    )
            body = _json_body_schema(raw)
            if body is not None:
                operation.body_schema = resolve(spec, body)
                for name, schema in operation.body_schema.get("properties", {}).items():
                    operation.inputs.append(Input(name, "body", schema, is_string_schema(spec, schema)))
            found.append(operation)
    return found
