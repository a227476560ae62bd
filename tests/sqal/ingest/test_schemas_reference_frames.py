"""Protocol version 1: the reference deployment guide's `sensor_data` frame, sent as written, over the real socket."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from pydantic import ValidationError
from sqlalchemy import text

from backend.extensions import db
from backend.sqal.devices import service
from backend.sqal.ingest.schemas import SampleV2, protocol_version, validate_sample
from scripts.devservices import REPO_ROOT
from tests.sqal.helpers import (
    make_device,
    reference_frame,
    reference_frame_text,
    stored_sample_ids,
    unique_device_id,
)
from tests.sqal.ingest.test_routes import exchange, open_socket

pytestmark = pytest.mark.gunicorn

REFERENCE = reference_frame()
DEVICE = REFERENCE["device_id"]  # "ESP32_SIM_1234", as in the guide
VERSION_2_ONLY = [
    ("seq",),
    ("vl53l8ch", "target_status_matrix"),
    ("vl53l8ch", "sensor_height_mm"),
    ("as7341", "atime"),
    ("as7341", "astep"),
    ("fusion", "confidence"),
]


def reference_device(app: APIFlask) -> str:
    """The guide's device, with no sample stored yet; returns its (new) token."""
    with app.app_context():
        for table in ("sensor_samples", "sensor_sample_keys"):
            db.session.execute(text(f"DELETE FROM {table} WHERE device_id = :d"), {"d": DEVICE})
        db.session.commit()
        token = service.create_device(DEVICE, profile="foiegras_standard_barquette", replace_token=True)
        db.session.remove()
    return token


def stored_row(app: APIFlask, sample_id: str) -> dict[str, Any]:
    with app.app_context():
        row = db.session.execute(
            text("SELECT * FROM sensor_samples WHERE device_id = :d AND sample_id = :s"), {"d": DEVICE, "s": sample_id}
        ).one()
        db.session.remove()
    return dict(row._mapping)


def test_the_reference_frame_is_version_1_and_version_2_would_refuse_it() -> None:
    assert protocol_version(REFERENCE) == 1
    sample = validate_sample(REFERENCE, DEVICE)
    assert (sample.seq, sample.fusion.confidence, sample.as7341.atime) == (None, None, None)
    with pytest.raises(ValidationError) as refused:
        SampleV2.model_validate(REFERENCE)
    assert sorted(tuple(error["loc"]) for error in refused.value.errors()) == sorted(VERSION_2_ONLY)


def test_version_1_still_checks_the_version_2_fields_it_carries() -> None:
    frame = copy.deepcopy(REFERENCE)
    frame["as7341"].update(atime=29, astep=599)  # 50 ms: the guide's integration_time 100 contradicts them
    frame["vl53l8ch"]["target_status_matrix"] = [[5] * 8] * 7
    frame["fusion"]["confidence"] = 1.5
    with pytest.raises(ValidationError) as refused:
        validate_sample(frame, DEVICE)
    assert {tuple(error["loc"]) for error in refused.value.errors()} == {
        ("as7341", "integration_time"),
        ("vl53l8ch", "target_status_matrix"),
        ("fusion", "confidence"),
    }
    del frame["as7341"]["astep"]
    with pytest.raises(ValidationError, match="atime and astep go together"):
        validate_sample(frame | {"fusion": REFERENCE["fusion"], "vl53l8ch": REFERENCE["vl53l8ch"]}, DEVICE)


def test_the_reference_frame_sent_as_written_is_stored_once_field_by_field(app: APIFlask, sqal_server: str) -> None:
    token = reference_device(app)
    sample_id = REFERENCE["sample_id"]
    with open_socket(sqal_server, token) as ws:
        assert exchange(ws, reference_frame_text()) == {
            "type": "ack",
            "sample_id": sample_id,
            "seq": None,
            "status": "stored",
        }
        assert exchange(ws, reference_frame_text())["status"] == "duplicate"
    with open_socket(sqal_server, token) as again:
        assert exchange(again, reference_frame_text())["status"] == "duplicate"
    assert stored_sample_ids(app, DEVICE) == [sample_id]

    row, tof, spectral, fusion = (
        stored_row(app, sample_id),
        REFERENCE["vl53l8ch"],
        REFERENCE["as7341"],
        REFERENCE["fusion"],
    )
    assert row["timestamp"].isoformat() == "2024-10-26T23:00:00+00:00"
    assert (row["device_id"], row["sample_id"], row["seq"]) == (DEVICE, sample_id, None)
    for name in ("distance_matrix", "reflectance_matrix", "amplitude_matrix"):
        assert row[f"vl53l8ch_{name}"] == tof[name]
    for name in ("volume_mm3", "avg_height_mm", "surface_uniformity", "quality_score", "grade"):
        assert row[f"vl53l8ch_{name}"] == tof[name]
    assert row["as7341_channels"] == spectral["channels"]
    assert (row["as7341_integration_time"], row["as7341_gain"]) == (100, 4.0)
    assert (row["as7341_color_score"], row["as7341_freshness_score"]) == (0.95, 0.92)
    assert (row["as7341_quality_score"], row["as7341_grade"]) == (0.90, "A")
    assert (row["fusion_final_score"], row["fusion_final_grade"]) == (fusion["final_score"], fusion["final_grade"])
    assert (row["fusion_confidence"], row["fusion_defects"], row["processing_time_ms"]) == (None, [], None)

    with app.test_client() as client:
        detail = client.get(f"/api/sqal/samples/{sample_id}?device_id={DEVICE}").get_json()
    assert (detail["seq"], detail["confidence"], detail["score"]) == (None, None, 0.89)
    with app.app_context():
        profile, firmware = db.session.execute(
            text("SELECT profile, firmware_version FROM devices WHERE device_id = :d"), {"d": DEVICE}
        ).one()
        db.session.remove()
    assert (profile, firmware) == ("foiegras_standard_barquette", "1.0.0")


def _bad(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """The reference frame with the value at `path` replaced (or removed when `value` is DELETE)."""
    frame = copy.deepcopy(REFERENCE)
    target = frame
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return frame


DELETE = object()
NINE_ROWS = [*REFERENCE["vl53l8ch"]["distance_matrix"], [250] * 8]
BAD_VERSION_1 = [
    ("9x8 distance matrix", _bad(("vl53l8ch", "distance_matrix"), NINE_ROWS), ["vl53l8ch", "distance_matrix"]),
    ("9 channels", _bad(("as7341", "channels", "NIR"), DELETE), ["as7341", "channels", "NIR"]),
    ("NaN", _bad(("vl53l8ch", "distance_matrix", 3, 4), math.nan), ["vl53l8ch", "distance_matrix", 3, 4]),
    ("other device", _bad(("device_id",), "ESP32_SIM_9999"), ["device_id"]),
]


def test_bad_version_1_frames_keep_their_documented_errors(app: APIFlask, sqal_server: str) -> None:
    token = reference_device(app)
    with open_socket(sqal_server, token) as ws:
        for name, frame, loc in BAD_VERSION_1:
            reply = exchange(ws, json.dumps(frame))  # NaN goes out as the literal NaN, which Python's parser reads
            assert (reply["type"], reply["code"], reply["sample_id"], reply["seq"]) == (
                "error",
                "validation_error",
                REFERENCE["sample_id"],
                None,
            ), name
            assert [detail["loc"] for detail in reply["details"]] == [loc], name
        second = REFERENCE | {"sample_id": "SAMPLE-20241026-230005-0002", "timestamp": "2024-10-26T23:00:05Z"}
        batch = {"type": "sensor_batch", "samples": [REFERENCE, BAD_VERSION_1[0][1], second, REFERENCE]}
        reply = exchange(ws, batch)
    assert reply["acks"] == [
        {"sample_id": REFERENCE["sample_id"], "seq": None, "status": "stored"},
        {"sample_id": second["sample_id"], "seq": None, "status": "stored"},
        {"sample_id": REFERENCE["sample_id"], "seq": None, "status": "duplicate"},
    ]
    assert [(error["index"], error["details"][0]["loc"]) for error in reply["errors"]] == [
        (1, ["vl53l8ch", "distance_matrix"])
    ]
    assert sorted(stored_sample_ids(app, DEVICE)) == [REFERENCE["sample_id"], second["sample_id"]]


def test_the_simulator_runs_on_the_reference_configuration(app: APIFlask, sqal_server: str, tmp_path: Path) -> None:
    """`CONFIG_PATH=config_foiegras.yaml` as in the reference guide, from a directory without that file."""
    device_id, token = make_device(app, unique_device_id("ESP32_REF") + "_01")  # the simulator's 1st device: PREFIX01
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "CONFIG_PATH": "config_foiegras.yaml",
        "BACKEND_WS_URL": sqal_server,
        "GENERATION_INTERVAL": "0",
        "DEVICE_TOKEN": token,
    }
    command = [sys.executable, "-m", "simulator", "--device-prefix", device_id[:-2], "--count", "5"]
    command += ["--seed", "3", "--outbox", str(tmp_path / "outbox.sqlite3"), "--drain-timeout", "20"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT seq, as7341_integration_time, as7341_gain, fusion_confidence IS NOT NULL FROM sensor_samples "
                "WHERE device_id = :d ORDER BY seq"
            ),
            {"d": device_id},
        ).all()
        profile = db.session.execute(text("SELECT profile FROM devices WHERE device_id = :d"), {"d": device_id})
        profile_name = profile.scalar()
        db.session.remove()
    # sensor_as7341 of the shipped file: 100 ms (ATIME 59, ASTEP 599) at gain 4; version-2 frames.
    assert [tuple(row) for row in rows] == [(seq, 100, 4.0, True) for seq in range(1, 6)]
    assert profile_name == "foiegras_standard_barquette"
