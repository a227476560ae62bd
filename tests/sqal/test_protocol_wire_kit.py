"""The devices' kit: JSON Schemas and AsyncAPI generated from the models, real replies matching them, and the
minimal device client (`clients/device_client.py`) delivering exactly once through connection cuts."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from apiflask import APIFlask
from websockets.sync.client import connect

from scripts.devservices import REPO_ROOT
from scripts.services import TestServices
from scripts.wire_schemas import FRAMES, rendered
from tests.sqal.chaos_proxy import ChaosProxy
from tests.sqal.helpers import WS_PATH, make_device, reference_frame, sample_frame, start_server, stored_sample_ids
from tests.support.server import GunicornServer

DOCS = REPO_ROOT / "docs"
CLIENT_PATH = REPO_ROOT / "clients" / "device_client.py"


def schema(stem: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DOCS / "wire" / f"{stem}.schema.json").read_text(encoding="utf-8"))
    return loaded


def errors(stem: str, frame: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema(stem), format_checker=jsonschema.FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(frame)]


def load_client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("device_client", CLIENT_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_client"] = module  # dataclass-free, but keeps pickling/typing lookups sane
    spec.loader.exec_module(module)
    return module


def test_committed_kit_matches_the_models() -> None:
    expected = rendered(DOCS)
    for path, text in expected.items():
        assert path.exists(), f"{path.relative_to(REPO_ROOT)} missing: run `python -m scripts.wire_schemas`"
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run `python -m scripts.wire_schemas`"
    committed = set((DOCS / "wire").glob("*.schema.json"))
    assert committed == {p for p in expected if p.suffix == ".json"}, "docs/wire holds a schema no model makes"


def test_reference_frame_is_version_1_and_the_protocol_example_version_2() -> None:
    reference = reference_frame()  # the deployment guide's frame, as a device following it sends it
    assert errors("sensors.sensor_data.v1", reference) == []
    assert any("seq" in message for message in errors("sensors.sensor_data.v2", reference))
    example = sample_frame("ESP32_KIT", 1)
    assert errors("sensors.sensor_data.v2", example) == []
    broken = {**example, "vl53l8ch": {**example["vl53l8ch"], "distance_matrix": [[1.0] * 8] * 7}}
    assert errors("sensors.sensor_data.v2", broken), "a 7-row matrix must not validate"
    batch = {"type": "sensor_batch", "batch_id": "b1", "samples": [reference, example]}
    assert errors("sensors.sensor_batch.v1", batch) == []


def test_asyncapi_document_references_resolve() -> None:
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert document["asyncapi"].startswith("3.")
    assert {c["address"] for c in document["channels"].values()} == {"/ws/sensors/", "/ws/dashboard/"}

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    seen = list(refs(document))
    assert len(seen) > len(FRAMES)
    for ref in seen:
        if ref.startswith("#/"):
            target: Any = document
            for part in ref[2:].split("/"):
                target = target[part]
        else:
            assert (DOCS / ref).is_file(), ref


@pytest.fixture(scope="module")
def server(app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    started = start_server(services, tmp_path_factory.mktemp("kit"))
    try:
        yield started
    finally:
        started.stop()


def reply_stem(channel: str, reply: dict[str, Any]) -> str:
    return f"{channel}.{reply['type']}" if reply["type"] != "sample" else "dashboard.sample"


@pytest.mark.gunicorn
def test_real_replies_of_both_sockets_match_their_schemas(app: APIFlask, server: GunicornServer) -> None:
    device_id, token = make_device(app)
    ws_url = f"ws://127.0.0.1:{server.port}"
    with connect(f"{ws_url}/ws/dashboard/", open_timeout=10) as dashboard:
        greeting = [json.loads(dashboard.recv(timeout=10)) for _ in range(2)]
        headers = {"Authorization": f"Bearer {token}"}
        with connect(ws_url + WS_PATH, additional_headers=headers, max_size=None, open_timeout=10) as device:
            sample = sample_frame(device_id, 1)
            invalid = sample_frame(device_id, 2, fusion={"final_score": 2})
            frames: list[Any] = [
                sample,
                sample,
                {"type": "sensor_batch", "batch_id": "k1", "samples": [sample_frame(device_id, 3), invalid]},
                {"type": "ping", "ts": 12.5},
                invalid,
                "not json",
                {"type": "nope"},
            ]
            replies = []
            for frame in frames:
                device.send(frame if isinstance(frame, str) else json.dumps(frame))
                replies.append(json.loads(device.recv(timeout=15)))
        events = greeting
        deadline = time.monotonic() + 10
        while not any(e["type"] == "sample" for e in events) and time.monotonic() < deadline:
            events.append(json.loads(dashboard.recv(timeout=10)))
    assert [r["type"] for r in replies] == ["ack", "ack", "batch_ack", "pong", "error", "error", "error"]
    assert [r.get("status") for r in replies[:2]] == ["stored", "duplicate"]
    assert replies[2]["errors"], "the batch's invalid sample must be reported"
    for reply in replies:
        assert errors(reply_stem("sensors", reply), reply) == [], reply
    assert {e["type"] for e in events} >= {"hello", "metrics", "sample"}
    for event in events:
        assert errors(reply_stem("dashboard", event), event) == [], event


@pytest.mark.gunicorn
def test_device_client_delivers_exactly_once_through_cut_connections(app: APIFlask, server: GunicornServer) -> None:
    client = load_client()
    device_id, token = make_device(app)
    proxy = ChaosProxy(server.port, seed=7)
    stop = threading.Event()

    def cut() -> None:
        while not stop.wait(0.05):
            proxy.cut_random()

    cutter = threading.Thread(target=cut, daemon=True)
    device = client.Device(f"ws://127.0.0.1:{proxy.port}{WS_PATH}", token, max_backoff=0.2)
    frames = [client.make_sample(device_id, seq) for seq in range(40)]
    for frame in frames:
        device.queue(frame)
    cutter.start()
    try:
        device.deliver(deadline=90)
    finally:
        stop.set()
        cutter.join()
        proxy.close()
    assert proxy.cuts > 0, "the proxy never cut a connection: the test proved nothing"
    assert device.outbox == {}
    assert set(device.delivered) == {f["sample_id"] for f in frames}
    assert sorted(stored_sample_ids(app, device_id)) == sorted(f["sample_id"] for f in frames)  # each exactly once


@pytest.mark.gunicorn
def test_device_client_command_line(app: APIFlask, server: GunicornServer) -> None:
    device_id, token = make_device(app)
    url = f"ws://127.0.0.1:{server.port}{WS_PATH}"
    done = subprocess.run(
        [sys.executable, str(CLIENT_PATH), url, token, device_id, "--count", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines()] == ["stored"] * 3
    refused = subprocess.run(
        [sys.executable, str(CLIENT_PATH), url, "not-a-token", device_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "credential refused" in refused.stderr
    assert Path(CLIENT_PATH).read_text(encoding="utf-8").count("import backend") == 0
