"""A device token sent as `?token=` (the reference devices do) never reaches a log line or a span attribute, in
every HTTP semantic-convention mode of OpenTelemetry (`OTEL_SEMCONV_STABILITY_OPT_IN` unset, `http`, `http/dup`,
or a value that leaves HTTP on the old conventions):
the old conventions copy the raw request target (`http.target`, `http.url`) into the server span.

Each mode runs the real gunicorn exporting to an OTLP receiver; a device connects with its token in the query,
sends a frame and gets its ack, a refused handshake carries a second token; then every span and both output
streams are searched for the tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from backend.core.security import generate_token
from backend.sqal.devices.service import TOKEN_PREFIX
from scripts.services import TestServices
from tests.conftest import truncate_all
from tests.observability.receiver import OtlpReceiver
from tests.security.test_secret_hygiene import leaks, span_text
from tests.sqal.helpers import WS_PATH, make_device, sample_frame, start_server

pytestmark = [pytest.mark.gunicorn]

MODE_VARIABLE = "OTEL_SEMCONV_STABILITY_OPT_IN"


def refused_session(url: str, frame: dict[str, Any]) -> None:
    """Connect, send a frame and read until the server closes (an error frame, then 1008)."""
    with connect(url, open_timeout=10) as refused:
        refused.send(json.dumps(frame))
        while True:
            refused.recv(timeout=15)


# "database" opts in for database spans only: HTTP spans keep the old conventions (`http.target`).
@pytest.mark.parametrize("mode", [None, "http", "http/dup", "database"], ids=["unset", "http", "http-dup", "old"])
def test_query_token_stays_out_of_spans_and_logs(
    mode: str | None, app: APIFlask, services: TestServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truncate_all(app)
    device_id, token = make_device(app)
    unknown = generate_token(TOKEN_PREFIX)
    if mode is None:
        monkeypatch.delenv(MODE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(MODE_VARIABLE, mode)
    receiver = OtlpReceiver().start()
    server = start_server(
        services,
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_TRACES_SAMPLER="always_on",
        LOG_LEVEL="DEBUG",
    )
    try:
        url = server.url(WS_PATH).replace("http://", "ws://")
        with connect(f"{url}?token={token}", open_timeout=10, close_timeout=2) as ws:
            ws.send(json.dumps(sample_frame(device_id, 1)))
            assert json.loads(ws.recv(timeout=15))["type"] == "ack"
        with pytest.raises(ConnectionClosed):
            refused_session(f"{url}?token={unknown}", sample_frame(device_id, 2))
    finally:
        server.stop()  # workers flush their spans on exit
        receiver.stop()
    spans = [span for span in receiver.spans if span.kind == 2]  # server spans: the handshakes
    assert len(spans) >= 2, "the handshakes were not traced: the search would be vacuous"
    secrets = {"device_token": token, "unknown_token": unknown}
    for span in receiver.spans:
        assert not leaks(span_text(span), secrets), f"span {span.name} carries a token: {span.attributes}"
    output = server.stdout() + server.stderr()
    assert not leaks(output, secrets), "a log line carries a token"
