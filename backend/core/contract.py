"""The HTTP contract beyond bodies: the headers each operation sends and reads, declared in the OpenAPI document
where they are sent, and exposed to browsers (CORS) so that a web client can read them too.

Routes declare what is specific to them with `sends(status, *headers)` and `reads(*headers)`; headers every
response carries (X-Trace-Id, the RateLimit-* of limited routes, Retry-After on 429/503) are declared by the spec
processor `document_contract`, which also gives nested schemas the plain component names client generators expect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from apiflask import APIFlask

F = TypeVar("F", bound=Callable[..., Any])

_INTEGER = {"type": "integer", "minimum": 0}
_STRING = {"type": "string"}

# Every response header of the API a client may need, with its OpenAPI header object.
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "Location": {"description": "Path of the created resource", "schema": _STRING},
    "ETag": {
        "description": 'The resource\'s version as a strong entity tag ("3"): send it back in If-Match',
        "schema": _STRING,
    },
    "X-Total-Count": {"description": "Items matching the filters, on every page", "schema": _INTEGER},
    "Link": {"description": 'RFC 8288 page links (rel="first", "prev", "next", "last")', "schema": _STRING},
    "X-Trace-Id": {"description": "Trace id of this request, as in the logs and traces (32 hex)", "schema": _STRING},
    "RateLimit-Limit": {"description": "Requests allowed in the current window for this client", "schema": _INTEGER},
    "RateLimit-Remaining": {"description": "Requests left in the current window", "schema": _INTEGER},
    "RateLimit-Reset": {"description": "Seconds until the window frees a slot", "schema": _INTEGER},
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": _INTEGER},
    "Idempotency-Replayed": {
        "description": "`true` when this is the stored response of an earlier request with the same Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# Browsers hide response headers other than the CORS-safelisted ones unless they are listed here.
EXPOSED_HEADERS = tuple(RESPONSE_HEADERS)

# Request headers an operation may read, as OpenAPI parameters.
REQUEST_HEADERS: dict[str, dict[str, Any]] = {
    "If-Match": {
        "description": 'Update only if the resource still has this ETag ("3"); otherwise 412. `*` matches any '
        "version. Required (428 without it) when the server runs with REQUIRE_IF_MATCH=true.",
        "schema": _STRING,
    },
    "Idempotency-Key": {
        "description": "A unique key per intended create (a UUID): retrying with the same key and body returns the "
        "first response instead of creating again; the same key with another body is 422.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
    },
}

# Paths without per-client rate limit (see backend.core.ratelimit).
_UNLIMITED_PATH = re.compile(r"^/(health|metrics)(/|$)")
CONTRACT_ATTRIBUTE = "_http_contract"


def _contract(view: Any) -> dict[str, Any]:
    contract: dict[str, Any] | None = getattr(view, CONTRACT_ATTRIBUTE, None)
    if contract is None:
        contract = {"sends": {}, "reads": []}
        setattr(view, CONTRACT_ATTRIBUTE, contract)
    return contract


def sends(status: int, *headers: str) -> Callable[[F], F]:
    """Declare that the view's `status` response carries `headers` (names from RESPONSE_HEADERS)."""
    unknown = set(headers) - set(RESPONSE_HEADERS)
    if unknown:
        raise ValueError(f"undeclared response headers: {sorted(unknown)}")

    def decorator(view: F) -> F:
        _contract(view)["sends"].setdefault(status, []).extend(headers)
        return view

    return decorator


def reads(*headers: str) -> Callable[[F], F]:
    """Declare the request headers the view reads (names from REQUEST_HEADERS)."""
    unknown = set(headers) - set(REQUEST_HEADERS)
    if unknown:
        raise ValueError(f"undeclared request headers: {sorted(unknown)}")

    def decorator(view: F) -> F:
        _contract(view)["reads"].extend(headers)
        return view

    return decorator


def _contracts_by_operation(app: APIFlask) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for view in app.view_functions.values():
        operation_id = (getattr(view, "_spec", None) or {}).get("operation_id")
        contract = getattr(view, CONTRACT_ATTRIBUTE, None)
        if operation_id and contract:
            found[operation_id] = contract
    return found


def _add_headers(response: dict[str, Any], names: list[str] | tuple[str, ...]) -> None:
    headers = response.setdefault("headers", {})
    for name in names:
        headers[name] = {"$ref": f"#/components/headers/{name}"}


def _plain_component_names(spec: dict[str, Any]) -> None:
    """Rename nested pydantic models (`BugOut.Severity`) to their own name (`Severity`) when every schema of that
    name is identical, and give the others distinct titles: generators name classes by title, and two classes
    with one name break them."""
    schemas: dict[str, Any] = spec.get("components", {}).get("schemas", {})
    by_name: dict[str, list[str]] = {}
    for key in schemas:
        by_name.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    renames: dict[str, str] = {}
    for name, keys in by_name.items():
        dotted = [key for key in keys if key != name]
        if not dotted:
            continue
        if all(schemas[key] == schemas[keys[0]] for key in keys):
            renames.update(dict.fromkeys(dotted, name))
        else:
            for key in dotted:
                schemas[key]["title"] = key.replace(".", "")
    for old, new in renames.items():
        schemas[new] = schemas.pop(old)
    if renames:
        text = json.dumps(spec)
        for old, new in renames.items():
            text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
        spec.update(json.loads(text))


def document_contract(app: APIFlask, spec: dict[str, Any]) -> dict[str, Any]:
    """Spec processor: declare every response header where it is sent and every request header read."""
    rate_limited = app.config["SETTINGS"].rate_limit_enabled
    contracts = _contracts_by_operation(app)
    for path, path_item in spec.get("paths", {}).items():
        limited = rate_limited and not _UNLIMITED_PATH.match(path)
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            contract = contracts.get(operation.get("operationId", ""), {"sends": {}, "reads": []})
            for status, response in operation["responses"].items():
                _add_headers(response, ["X-Trace-Id"])
                if limited:
                    _add_headers(response, RATE_LIMIT_HEADERS)
                    if status in ("429", "503"):
                        _add_headers(response, ["Retry-After"])
                _add_headers(response, contract["sends"].get(int(status), []))
            for name in contract["reads"]:
                operation.setdefault("parameters", []).append(
                    {"name": name, "in": "header", "required": False, **REQUEST_HEADERS[name]}
                )
    spec.setdefault("components", {})["headers"] = dict(sorted(RESPONSE_HEADERS.items()))
    _plain_component_names(spec)
    return spec


def init_app(app: APIFlask) -> None:
    """Chain `document_contract` after the spec processor already set (APIFlask keeps a single one)."""
    previous = app.spec_callback

    def process(spec: Any) -> Any:
        spec = previous(spec) if previous is not None else spec
        return document_contract(app, spec) if isinstance(spec, dict) else spec

    app.spec_callback = process
