"""The shipped nginx configuration (deploy/nginx/sqal.conf), run by Debian's nginx in front of two gunicorn instances
sharing the session's PostgreSQL and Redis, with a throwaway certificate: per-client rate limits through the proxy,
a forged X-Forwarded-For that changes nothing, wss:// device and dashboard sockets, and a sample stored by one
instance reaching a dashboard held by the other.

Clients bind distinct loopback source addresses (127.x.y.z) so nginx sees distinct peers. Skipped without nginx or
openssl, except under CI=true where that fails.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from websockets.sync.client import ClientConnection, connect

from backend.sqal import SERVER_PING_INTERVAL
from scripts.devservices import REPO_ROOT, free_port
from scripts.services import TestServices
from tests.sqal.helpers import SERVER_MAX_MESSAGE_BYTES, make_device, receive, sample_frame
from tests.stack.stackfiles import require_tool
from tests.support.server import GunicornServer

pytestmark = pytest.mark.gunicorn

SHIPPED = REPO_ROOT / "deploy" / "nginx" / "sqal.conf"
READ_LIMIT = 3
DEVICE_HEARTBEAT_SECONDS = 30.0  # the simulator's default `--heartbeat`


def loopback_address() -> str:
    """A loopback source address of its own (rate-limit buckets in Redis outlive a run by a minute)."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def edge_config(directory: Path, backends: list[int], http_port: int, https_port: int) -> str:
    """The shipped file with the test's upstreams, ports and certificate paths; every substitution must apply."""
    text = SHIPPED.read_text()
    server = re.compile(r"^(\s*)server backend:8000( [^;]*);$", re.MULTILINE)
    [match] = server.finditer(text)
    upstreams = "\n".join(f"{match[1]}server 127.0.0.1:{port}{match[2]};" for port in backends)
    text = server.sub(upstreams, text)
    for pattern, replacement in (
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        (r"/etc/nginx/certs/", f"{directory}/certs/"),
    ):
        text, count = re.subn(re.escape(pattern), replacement, text)
        assert count >= 1, f"the shipped configuration lost {pattern!r}"
    return text


def main_config(directory: Path, include: Path) -> str:
    """What the official image's /etc/nginx/nginx.conf provides around conf.d, in a private directory."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers as root only where the master is (CI, containers)
    temp = "\n".join(
        f"    {name}_temp_path {directory}/{name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {directory}/nginx.pid;\nerror_log {directory}/error.log info;\n"
        f"events {{ worker_connections 512; }}\n"
        f"http {{\n    access_log {directory}/access.log;\n{temp}\n    include {include};\n}}\n"
    )


def throwaway_certificate(directory: Path) -> Path:
    openssl = require_tool("openssl")
    certs = directory / "certs"
    certs.mkdir()
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sqal-test",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(certs / "tls.key"), "-out", str(certs / "tls.crt")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return certs / "tls.crt"


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}: {log.read_text(errors='replace')[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen within {timeout}s")


@dataclass
class Edge:
    http_port: int
    https_port: int
    tls: ssl.SSLContext
    instances: list[GunicornServer]

    def https(self, source: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.https_port, source_address=(source, 0), context=self.tls, timeout=10
        )
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        connection.close()
        return response

    def wss(self, path: str, source: str, **headers: str) -> ClientConnection:
        return connect(
            f"wss://127.0.0.1:{self.https_port}{path}",
            ssl=self.tls,
            additional_headers=headers,
            source_address=(source, 0),
            proxy=None,
            open_timeout=10,
            max_size=None,
        )


@pytest.fixture(scope="module")
def edge(app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    nginx = require_tool("nginx")
    directory = tmp_path_factory.mktemp("edge")
    certificate = throwaway_certificate(directory)
    env = {
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_url,
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_READ": f"{READ_LIMIT}/minute",
        "WS_MAX_MESSAGE_BYTES": str(SERVER_MAX_MESSAGE_BYTES),
        "WS_DEVICE_RATE_LIMIT": "100000/minute",
        "SHUTDOWN_TIMEOUT": "5",
        "SHUTDOWN_DRAIN_DELAY": "0",
    }
    with ExitStack() as stack:
        instances = []
        for _ in range(2):
            server = GunicornServer({**env, "OPS_PORT": str(free_port())}, directory, workers=1)
            stack.callback(server.stop)
            instances.append(server.start())
        http_port, https_port = free_port(), free_port()
        include = directory / "sqal.conf"
        include.write_text(edge_config(directory, [s.port for s in instances], http_port, https_port))
        (directory / "nginx.conf").write_text(main_config(directory, include))
        error_log = directory / "nginx.stderr"
        with error_log.open("wb") as err:
            process = subprocess.Popen(
                [nginx, "-p", str(directory), "-c", str(directory / "nginx.conf")],
                stdout=err,
                stderr=err,
                start_new_session=True,
            )
        stack.callback(lambda: (process.send_signal(signal.SIGQUIT), process.wait(15)))
        wait_for_port(https_port, process, error_log)
        tls = ssl.create_default_context(cafile=str(certificate))
        yield Edge(http_port, https_port, tls, instances)


def test_socket_timeouts_outlast_the_heartbeats() -> None:
    text = SHIPPED.read_text()
    [sockets] = re.findall(r"location /ws/ \{(.*?)\n    \}", text, re.S)
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        [seconds] = re.findall(rf"{directive} (\d+)s;", sockets)
        assert int(seconds) > max(SERVER_PING_INTERVAL, DEVICE_HEARTBEAT_SECONDS) * 2, directive
    assert "proxy_set_header Upgrade $http_upgrade;" in sockets
    assert "proxy_set_header Connection $connection_upgrade;" in sockets


def test_plain_http_is_redirected_to_https(edge: Edge) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", edge.http_port, timeout=10)
    connection.request("GET", "/products")
    response = connection.getresponse()
    connection.close()
    assert response.status == 301
    assert response.getheader("Location", "").startswith("https://127.0.0.1")


def access_lines(server: GunicornServer, path: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in server.stdout().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "http_request" and line.get("path") == path]


def test_each_client_behind_the_proxy_has_its_own_rate_limit(edge: Edge) -> None:
    first, second = loopback_address(), loopback_address()
    statuses = [edge.https(first, "/products").status for _ in range(READ_LIMIT + 1)]
    assert statuses == [200] * READ_LIMIT + [429], "one client's budget, counted across both instances in Redis"
    assert edge.https(second, "/products").status == 200, "another client behind the same proxy is not limited"
    # A forged X-Forwarded-For is kept in front of the address nginx appends: still the first client's bucket.
    assert edge.https(first, "/products", {"X-Forwarded-For": second}).status == 429
    assert edge.https(first, "/products", {"X-Forwarded-For": loopback_address()}).status == 429
    # The instances saw and logged the clients, not nginx.
    logged = {line["remote_addr"] for server in edge.instances for line in access_lines(server, "/products")}
    assert {first, second} <= logged
    assert "127.0.0.1" not in logged


def test_a_forged_x_forwarded_for_from_an_untrusted_peer_changes_nothing(edge: Edge) -> None:
    """A client reaching an instance directly (bypassing nginx) is not a trusted proxy: its header is ignored."""
    limited, direct = loopback_address(), loopback_address()
    for _ in range(READ_LIMIT + 1):
        edge.https(limited, "/products")
    instance = edge.instances[0]
    statuses = []
    for _ in range(READ_LIMIT + 1):
        connection = http.client.HTTPConnection("127.0.0.1", instance.port, source_address=(direct, 0), timeout=10)
        connection.request("GET", "/products", headers={"X-Forwarded-For": limited, "X-Forwarded-Proto": "https"})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        connection.close()
    assert statuses == [200] * READ_LIMIT + [429], "counted on its own address, not on the one it claimed"
    logged = [line["remote_addr"] for line in access_lines(instance, "/products")]
    assert logged.count(direct) == READ_LIMIT + 1


def sample_reaches(ws: ClientConnection, sample_id: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame["type"] == "sample" and frame["sample"]["sample_id"] == sample_id:
            return True
    return False


def test_device_and_dashboard_sockets_over_wss_and_across_instances(edge: Edge, app: APIFlask) -> None:
    device_id, token = make_device(app)
    with ExitStack() as stack:
        # Dashboards through nginx until one is held by each instance (told apart by the hub id in `hello`).
        dashboards: dict[str, ClientConnection] = {}
        for _ in range(12):
            ws = stack.enter_context(edge.wss("/ws/dashboard/", loopback_address()))
            hello = receive(ws, "hello")
            assert hello["live"] is True
            dashboards.setdefault(hello["instance"], ws)
            if len(dashboards) == len(edge.instances):
                break
        assert len(dashboards) == 2, "nginx spread the dashboard sockets over both instances"

        # A device through nginx: whichever instance stores the sample, a dashboard on the other one gets it.
        device = stack.enter_context(edge.wss("/ws/sensors/", loopback_address(), Authorization=f"Bearer {token}"))
        frame = sample_frame(device_id, seq=1)
        device.send(json.dumps(frame))
        ack = json.loads(device.recv(timeout=15))
        assert (ack["type"], ack["status"]) == ("ack", "stored")
        for ws in dashboards.values():
            assert sample_reaches(ws, frame["sample_id"])

        # The same device straight to the first instance: both dashboards again, one of them on the other instance.
        direct = stack.enter_context(
            connect(f"ws://127.0.0.1:{edge.instances[0].port}/ws/sensors/",
                    additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)
        )  # fmt: skip
        second = sample_frame(device_id, seq=2)
        direct.send(json.dumps(second))
        assert json.loads(direct.recv(timeout=15))["status"] == "stored"
        for ws in dashboards.values():
            assert sample_reaches(ws, second["sample_id"])


def test_operations_endpoints_stay_inside(edge: Edge) -> None:
    source = loopback_address()
    assert edge.https(source, "/metrics").status == 404
    public = edge.https(source, "/health/ready")
    assert public.status == 200
    for server in edge.instances:
        ops_port = int(server.env["OPS_PORT"])
        connection = http.client.HTTPConnection("127.0.0.1", ops_port, timeout=10)
        connection.request("GET", "/metrics")
        scraped = connection.getresponse()
        body = scraped.read()
        connection.close()
        assert scraped.status == 200
        assert b"http_requests_total" in body
