"""Secrets never leak: API keys and device tokens stay out of logs, spans, responses and /metrics.

The real gunicorn (AUTH_MODE=apikey) exports its traces to an OTLP receiver in the test. Keys and a device token
are used on good and bad requests (valid writes, wrong scope, revoked, in the query string, in body fields, in
odd Authorization schemes, over the WebSocket handshake, on failing routes); then every captured artefact is
searched for each plaintext secret, a 16-character piece of it (truncated copies) and its SHA-256 digest.
The repository itself is scanned for committed credentials.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from apiflask import APIFlask
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from backend.core import auth
from backend.core.security import generate_token, hash_token
from backend.sqal.devices.service import TOKEN_PREFIX
from scripts.devservices import REPO_ROOT
from scripts.services import TestServices
from tests.conftest import truncate_all
from tests.observability.receiver import OtlpReceiver, ReceivedSpan
from tests.sqal.helpers import WS_PATH, make_device, sample_frame
from tests.support.server import GunicornServer, session_server

pytestmark = [pytest.mark.gunicorn]


@dataclass
class Capture:
    """Everything the server let out while the secrets were in use."""

    secrets: dict[str, str]
    responses: list[tuple[str, int, str]] = field(default_factory=list)  # (what, status, headers + body)
    trace_ids: set[str] = field(default_factory=set)
    metrics: str = ""
    stdout: str = ""
    stderr: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)

    def record(self, what: str, response: requests.Response, expected: int) -> None:
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.responses.append((what, response.status_code, f"{headers}\n\n{response.text}"))
        self.trace_ids.add(response.headers.get("X-Trace-Id", ""))
        assert response.status_code == expected, f"{what}: {response.status_code} {response.text[:300]}"


def needles(secrets: dict[str, str]) -> dict[str, str]:
    """What must never appear: each secret, a 16-character piece of its random part, and its SHA-256 digest."""
    found = {}
    for name, secret in secrets.items():
        random_part = secret.removeprefix(TOKEN_PREFIX).removeprefix(auth.KEY_PREFIX)
        found[name] = secret
        found[f"{name} (piece)"] = random_part[4:20]
        found[f"{name} (sha256)"] = hash_token(secret)
    return found


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, needle in needles(secrets).items() if needle in text]


def span_text(span: ReceivedSpan) -> str:
    """Everything a span carries, as text: name, status, attributes, events, resource."""
    return json.dumps(
        [span.name, span.status_message, span.attributes, span.events, span.resource], default=str, ensure_ascii=False
    )


def make_secrets(app: APIFlask) -> dict[str, str]:
    with app.app_context():
        _, writer = auth.create_key("hygiene-writer", ["products:write", "bugs:write"])
        _, reader = auth.create_key("hygiene-reader", ["read"])
        revoked_row, revoked = auth.create_key("hygiene-revoked", list(auth.scopes()))
        assert auth.revoke_key(revoked_row.id)
    device_id, device_token = make_device(app)
    return {
        "writer_key": writer,
        "reader_key": reader,
        "revoked_key": revoked,
        "unknown_key": generate_token(auth.KEY_PREFIX),
        "device_token": device_token,
        "unknown_device_token": generate_token(TOKEN_PREFIX),
        "device_id": device_id,  # not a secret: used to build frames, removed before the search
    }


def http_traffic(server: GunicornServer, capture: Capture) -> None:
    """Good and bad HTTP requests carrying the keys every way a client might send them."""
    s = capture.secrets
    writer, reader, revoked, unknown = s["writer_key"], s["reader_key"], s["revoked_key"], s["unknown_key"]
    product = {"name": "Lobe", "price": 10.0, "category": "Cru"}
    basic = base64.b64encode(f"client:{writer}".encode()).decode()

    def call(what: str, method: str, path: str, expected: int, **kwargs: Any) -> requests.Response:
        response = requests.request(method, server.url(path), timeout=10, **kwargs)
        capture.record(what, response, expected)
        return response

    created = call("valid write", "POST", "/products", 201, json=product, headers={"Authorization": f"Bearer {writer}"})
    product_url = f"/products/{created.json()['id']}"
    call("valid bug write", "POST", "/api/bugs/", 201, json={"title": "Leak check"}, headers={"X-API-Key": writer})
    call("wrong scope", "PATCH", product_url, 403, json={"price": 1}, headers={"Authorization": f"Bearer {reader}"})
    call("revoked key", "POST", "/products", 401, json=product, headers={"X-API-Key": revoked})
    call("unknown key", "DELETE", product_url, 401, headers={"Authorization": f"Bearer {unknown}"})
    call("key in query (write)", "POST", f"/products?api_key={writer}", 401, json=product)
    call("key in query (refused)", "GET", f"/products?api_key={writer}&token={s['device_token']}&limit=5", 422)
    call("key in query (ignored)", "GET", f"/api/sqal/devices?api_key={writer}&access_token={reader}", 200)
    call("key in body, no header", "POST", "/api/bugs/", 401, json={"title": "x", "apiKey": writer})
    call("key in unknown body field", "POST", "/api/bugs/", 422, json={"title": "x", "api_key": writer},
         headers={"X-API-Key": writer})  # fmt: skip
    call("key as a wrong-typed field", "PATCH", product_url, 422, json={"price": writer}, headers={"X-API-Key": writer})
    call("token scheme", "POST", "/products", 401, json=product, headers={"Authorization": f"Token {writer}"})
    call("basic scheme", "POST", "/products", 401, json=product, headers={"Authorization": f"Basic {basic}"})
    call("key in cookie", "GET", "/products", 200, headers={"Cookie": f"api_key={writer}; session={reader}"})
    call("malformed json", "POST", "/products", 400, data='{"name": "' + writer, headers={
        "X-API-Key": writer, "Content-Type": "application/json"})  # fmt: skip
    call("bad query", "GET", f"/api/bugs/?limit=0&password={writer}", 422, headers={"X-API-Key": reader})
    call("unknown route", "GET", f"/nowhere?secret={writer}", 404, headers={"Authorization": f"Bearer {writer}"})
    call(
        "unhandled exception",
        "GET",
        "/error?kind=exception",
        500,
        headers={"X-API-Key": writer, "Cookie": f"t={writer}"},
    )
    call("failing sql", "GET", "/error?kind=sql", 500, headers={"Authorization": f"Bearer {writer}"})


def websocket_traffic(server: GunicornServer, capture: Capture) -> None:
    """The device token over the handshake (header and query), a wrong token and an API key used as a token."""
    s = capture.secrets
    url = server.url(WS_PATH).replace("http://", "ws://")
    attempts = [
        ("token in header", url, {"Authorization": f"Bearer {s['device_token']}"}, True),
        ("token in query", f"{url}?token={s['device_token']}", {}, True),
        ("unknown token", url, {"Authorization": f"Bearer {s['unknown_device_token']}"}, False),
        ("api key as device token", f"{url}?token={s['writer_key']}", {}, False),
    ]
    for seq, (what, target, headers, accepted) in enumerate(attempts):
        with connect(target, additional_headers=headers, open_timeout=10, close_timeout=2) as ws:
            ws.send(json.dumps(sample_frame(s["device_id"], seq)))
            try:
                reply = json.loads(ws.recv(timeout=15))
            except ConnectionClosed:
                reply = {"type": "closed"}
        capture.responses.append((f"ws {what}", 101, json.dumps(reply)))
        assert (reply.get("type") == "ack") is accepted, f"{what}: {reply}"


@pytest.fixture(scope="module")
def capture(app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory) -> Capture:
    """Run the traffic against gunicorn (apikey auth, traces exported), stop it, collect every output."""
    truncate_all(app)
    secrets = make_secrets(app)
    receiver = OtlpReceiver().start()
    env = {
        "AUTH_MODE": "apikey",
        "CHAOS_ENABLED": "true",
        "GUNICORN_THREADS": "8",
        "LOG_LEVEL": "DEBUG",  # the most a deployment could log
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "WS_DEVICE_RATE_LIMIT": "100000/minute",
    }
    server = session_server(services, tmp_path_factory.mktemp("hygiene"), **env).start()
    result = Capture(secrets)
    try:
        http_traffic(server, result)
        websocket_traffic(server, result)
        metrics = requests.get(server.url("/metrics"), timeout=10)
        assert metrics.status_code == 200
        result.metrics = metrics.text
    finally:
        server.stop()  # workers flush their spans on exit
        receiver.stop()
    result.stdout, result.stderr, result.spans = server.stdout(), server.stderr(), list(receiver.spans)
    del result.secrets["device_id"]
    return result


def test_logs_hold_no_secret(capture: Capture) -> None:
    access = [line for line in capture.stdout.splitlines() if '"event": "http_request"' in line]
    assert len(access) >= len(capture.responses), "the access log is missing requests: the search would be vacuous"
    assert '"status": 500' in capture.stdout
    assert '"exc_info"' in capture.stdout
    for number, line in enumerate(capture.stdout.splitlines(), 1):
        assert leaks(line, capture.secrets) == [], f"stdout line {number}: {line[:400]}"
    assert leaks(capture.stderr, capture.secrets) == [], capture.stderr[-2000:]


def test_spans_hold_no_secret(capture: Capture) -> None:
    traced = {span.trace_id for span in capture.spans}
    missing = {trace_id for trace_id in capture.trace_ids if trace_id} - traced
    assert not missing, f"{len(missing)} requests have no exported span: the search would be vacuous"
    assert any(name == "exception" for span in capture.spans for name, _ in span.events)
    for span in capture.spans:
        assert leaks(span_text(span), capture.secrets) == [], span_text(span)[:600]


def test_responses_hold_no_secret(capture: Capture) -> None:
    assert len(capture.responses) >= 20
    for what, status, text in capture.responses:
        assert leaks(text, capture.secrets) == [], f"{what} ({status}): {text[:400]}"


def test_metrics_hold_no_secret(capture: Capture) -> None:
    assert "http_requests_total" in capture.metrics or "flask_http_request" in capture.metrics
    assert leaks(capture.metrics, capture.secrets) == []


# Committed credentials: generated keys/tokens (random, so mixed case and digits), private keys, well-known token
# formats, and passwords written into URLs or config values outside templates and examples.
TOKEN_LIKE = re.compile(r"\bsqal_[A-Za-z0-9_-]{40,}")
PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
KNOWN_FORMATS = re.compile(r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}|xox[abprs]-[A-Za-z0-9-]{10,})\b")
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:([^\s/@'\"]+)@")
CONFIG_SECRET = re.compile(
    # `secretName:` names a Kubernetes Secret (a reference, not a value).
    r"(?i)^\s*(?!secretName\s*:)[\w.-]*(?:password|passwd|secret|api_?key|token)[\w.-]*\s*[:=]\s*[\"']?([^\s\"'#]{6,})"
)
CONFIG_FILES = re.compile(r"(?:\.ya?ml|\.env|\.ini|\.toml|\.cfg|\.conf|\.json|Dockerfile)$")
TEMPLATES = re.compile(r"\.example$|\.template\.|(?:^|/)tests/")  # placeholders, and the tests' fake credentials


PLACEHOLDER_WORDS = frozenset({"true", "false", "null", "none", "password", "passwd", "pass", "secret", "redacted"})


def is_placeholder(value: str) -> bool:
    """`${VAR}`, `<value>`, `PASSWORD`, a file path, a boolean or the word "password" itself."""
    word = value.strip("[]*").lower()
    return value.startswith(("$", "{", "<", "%", "/", "./")) or value.isupper() or word in PLACEHOLDER_WORDS


def secret_findings(path: str, text: str) -> list[str]:
    findings = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{number}"
        for match in TOKEN_LIKE.finditer(line):
            token = match.group()
            if re.search(r"[A-Z]", token) and re.search(r"[0-9]", token):
                findings.append(f"{where}: generated token {token[:12]}...")
        if PRIVATE_KEY.search(line) or KNOWN_FORMATS.search(line):
            findings.append(f"{where}: private key or provider token")
        if TEMPLATES.search(path):
            continue
        for match in URL_PASSWORD.finditer(line):
            if not is_placeholder(match.group(1)):
                findings.append(f"{where}: password in a URL")
        config = CONFIG_SECRET.match(line) if CONFIG_FILES.search(path) else None
        if config and not is_placeholder(config.group(1)):
            findings.append(f"{where}: secret-looking config value")
    return findings


def test_repository_holds_no_secret() -> None:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("git and the repository's .git are needed to list the tracked files")
        pytest.skip("git or .git unavailable: cannot list the repository's files")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    findings = []
    for path in filter(None, listed.split("\0")):
        file = REPO_ROOT / path
        if not file.is_file():
            continue
        data = file.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        findings.extend(secret_findings(path, data.decode("utf-8", errors="replace")))
    assert findings == []


def test_the_secret_scan_finds_what_it_looks_for() -> None:
    """The scanner itself: each rule fires on a real-looking secret, and placeholders stay quiet."""
    token = generate_token(auth.KEY_PREFIX)
    while not (re.search(r"[A-Z]", token) and re.search(r"[0-9]", token)):
        token = generate_token(auth.KEY_PREFIX)
    assert secret_findings("backend/x.py", f"KEY = '{token}'")
    assert secret_findings("docs/x.md", "-----BEGIN " + "RSA PRIVATE KEY-----")
    assert secret_findings("deploy/x.yaml", "url: postgresql://sqal:s3cr3tpw@db/sqal")
    assert secret_findings("deploy/x.yaml", "  POSTGRES_PASSWORD: s3cr3tpw")
    assert not secret_findings("deploy/x.yaml", "  POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set it}")
    assert not secret_findings("deploy/x.yaml", "automountServiceAccountToken: false")
    assert not secret_findings("deploy/x.yaml", "    secretName: sqal-backend-secrets")
    assert secret_findings("deploy/x.yaml", "    secret: sqal-backend-s3cr3t")
    assert not secret_findings("docs/x.md", "postgresql://USER:PASSWORD@HOST:5432/sqal")
    assert not secret_findings("backend/x.py", "# scheme://user:password@host")
    assert not secret_findings("deploy/x.yaml", "DEVICE_TOKEN_FILE: /var/lib/sqal/tokens.json")
    assert not secret_findings("backend/x.py", "sqal_sample_fanout_dropped_total_and_some_more_words_here")
