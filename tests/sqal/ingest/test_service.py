"""Devices, tokens and exactly-once storage against the real database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import event, select, text

from backend.core import security
from backend.extensions import db
from backend.sqal.devices import provisioning
from backend.sqal.devices import service as devices
from backend.sqal.ingest import service
from backend.sqal.ingest.schemas import SampleIn
from backend.sqal.models import Device, SensorSample
from tests.sqal.helpers import make_device, sample_frame, stored_sample_ids


@pytest.fixture
def ctx(app: APIFlask) -> Iterator[None]:
    with app.app_context():
        yield
        db.session.remove()


def samples(device_id: str, seqs: range | list[int]) -> list[SampleIn]:
    return [SampleIn.model_validate(sample_frame(device_id, seq)) for seq in seqs]


def test_tokens_are_random_and_stored_as_digests() -> None:
    first, second = security.generate_token("p_"), security.generate_token("p_")
    assert first != second
    assert first.startswith("p_")
    assert len(first) >= 40
    digest = security.hash_token(first)
    assert len(digest) == security.DIGEST_LENGTH
    assert first not in digest
    assert security.verify_token(first, digest)
    assert not security.verify_token(second, digest)
    assert security.fingerprint(first) == digest[:8]


def test_authenticate(app: APIFlask, ctx: None) -> None:
    device_id, token = make_device(app)
    assert service.authenticate(token).device_id == device_id
    assert db.session.get(Device, device_id).token_hash == security.hash_token(token)  # type: ignore[union-attr]
    for bad in (None, "", "not-a-token", token + "x"):
        with pytest.raises(service.DeviceRejected) as rejected:
            service.authenticate(bad)
        assert rejected.value.code == "unauthorized"
    _, disabled_token = make_device(app, enabled=False)
    with pytest.raises(service.DeviceRejected) as rejected:
        service.authenticate(disabled_token)
    assert rejected.value.code == "device_disabled"


def test_store_maps_every_column_and_updates_the_device(app: APIFlask, ctx: None) -> None:
    device_id, _ = make_device(app)
    received = datetime.now(UTC)
    [sample] = samples(device_id, [42])
    assert service.store_samples(device_id, [sample], received) == ["stored"]
    row = db.session.execute(select(SensorSample).where(SensorSample.device_id == device_id)).scalar_one()
    assert (row.sample_id, row.seq, row.timestamp) == (sample.sample_id, 42, sample.timestamp)
    assert row.received_at == received
    assert row.vl53l8ch_distance_matrix == sample.vl53l8ch.distance_matrix
    assert row.as7341_channels == sample.as7341.channels.as_dict()
    spectral, fusion = sample.as7341, sample.fusion
    assert (row.as7341_gain, row.as7341_integration_time) == (spectral.gain, spectral.integration_time)
    assert (row.as7341_color_score, row.as7341_freshness_score) == (spectral.color_uniformity, spectral.freshness_index)
    assert (row.as7341_quality_score, row.as7341_grade) == (spectral.quality_score, spectral.grade)
    assert (row.vl53l8ch_volume_mm3, row.vl53l8ch_grade) == (sample.vl53l8ch.volume_mm3, sample.vl53l8ch.grade)
    assert (row.fusion_final_grade, row.fusion_final_score) == (fusion.final_grade, fusion.final_score)
    assert (row.fusion_confidence, row.fusion_defects) == (fusion.confidence, fusion.defects)
    assert row.processing_time_ms == sample.meta.processing_time_ms
    assert row.id is not None
    assert row.created_at is not None
    device = db.session.get(Device, device_id)
    assert device is not None
    assert device.firmware_version == sample.meta.firmware_version
    assert device.profile == sample.meta.config_profile
    assert device.last_seen_at is not None


def test_duplicates_within_a_batch_and_across_calls(app: APIFlask, ctx: None) -> None:
    device_id, _ = make_device(app)
    first, second, third = samples(device_id, [1, 2, 3])
    assert service.store_samples(device_id, [first, second], datetime.now(UTC)) == ["stored", "stored"]
    statuses = service.store_samples(device_id, [second, third, third, first], datetime.now(UTC))
    assert statuses == ["duplicate", "stored", "duplicate", "duplicate"]
    assert sorted(stored_sample_ids(app, device_id)) == sorted(s.sample_id for s in (first, second, third))


def test_the_same_sample_id_from_two_devices_is_two_samples(app: APIFlask, ctx: None) -> None:
    one, _ = make_device(app)
    two, _ = make_device(app)
    [a], [b] = samples(one, [5]), samples(two, [5])
    assert a.sample_id == b.sample_id
    assert service.store_samples(one, [a], datetime.now(UTC)) == ["stored"]
    assert service.store_samples(two, [b], datetime.now(UTC)) == ["stored"]


def test_a_batch_of_500_is_one_statement(app: APIFlask, ctx: None) -> None:
    device_id, _ = make_device(app)
    batch = samples(device_id, range(500))
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert service.store_samples(device_id, batch, datetime.now(UTC)) == ["stored"] * 500
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    # One round trip to PostgreSQL per frame (plus its commit), whatever the batch size.
    assert len(statements) == 1
    assert "INSERT INTO sensor_sample_keys" in statements[0]
    assert "INSERT INTO sensor_samples" in statements[0]
    assert len(stored_sample_ids(app, device_id)) == 500


def test_concurrent_writers_store_a_sample_once(app: APIFlask) -> None:
    device_id, _ = make_device(app)
    batch = samples(device_id, range(20))
    results: list[list[str]] = []
    barrier = threading.Barrier(4)

    def writer() -> None:
        with app.app_context():
            barrier.wait()
            results.append(list(service.store_samples(device_id, batch, datetime.now(UTC))))
            db.session.remove()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4
    for index in range(20):
        assert sorted(result[index] for result in results) == ["duplicate"] * 3 + ["stored"]
    assert len(stored_sample_ids(app, device_id)) == 20


def test_disabled_device_cannot_store(app: APIFlask, ctx: None) -> None:
    device_id, _ = make_device(app, enabled=False)
    with pytest.raises(service.DeviceRejected):
        service.store_samples(device_id, samples(device_id, [1]), datetime.now(UTC))
    assert stored_sample_ids(app, device_id) == []


def test_a_session_whose_token_was_rotated_stores_nothing(app: APIFlask, ctx: None) -> None:
    device_id, token = make_device(app)
    session_credential = service.authenticate(token).token_hash
    assert service.store_samples(device_id, samples(device_id, [1]), datetime.now(UTC), token_hash=session_credential)
    new_token = devices.rotate_device_token(device_id)
    with pytest.raises(service.DeviceRejected) as rejected:
        service.store_samples(device_id, samples(device_id, [2]), datetime.now(UTC), token_hash=session_credential)
    assert rejected.value.code == "unauthorized"
    assert service.credential_refusal(device_id, session_credential) is not None
    renewed = service.authenticate(new_token).token_hash
    assert service.credential_refusal(device_id, renewed) is None
    assert service.store_samples(device_id, samples(device_id, [3]), datetime.now(UTC), token_hash=renewed)
    devices.set_device_enabled(device_id, False)
    refusal = service.credential_refusal(device_id, renewed)
    assert refusal is not None
    assert refusal.code == "device_disabled"
    assert len(stored_sample_ids(app, device_id)) == 2  # seq 2 was refused


def test_a_sample_id_reused_with_other_content_is_a_conflict(app: APIFlask, ctx: None) -> None:
    device_id, _ = make_device(app)
    first, second = samples(device_id, [1, 2])
    other_first = first.model_copy(update={"fusion": first.fusion.model_copy(update={"final_score": 0.01})})
    other_second = second.model_copy(update={"seq": 99})
    assert service.store_samples(device_id, [first], datetime.now(UTC)) == ["stored"]
    assert service.store_samples(device_id, [first, other_first, second, other_second, second], datetime.now(UTC)) == [
        "duplicate",
        "conflict",
        "stored",
        "conflict",
        "duplicate",
    ]
    stored = db.session.execute(
        select(SensorSample.fusion_final_score, SensorSample.seq).where(SensorSample.device_id == device_id)
    ).all()
    assert sorted(stored, key=lambda row: row.seq) == [(first.fusion.final_score, 1), (second.fusion.final_score, 2)]
    # A key stored before migration 0007 has no hash: it cannot be compared and stays a duplicate.
    db.session.execute(text("UPDATE sensor_sample_keys SET content_hash = NULL WHERE device_id = :d"), {"d": device_id})
    db.session.commit()
    assert service.store_samples(device_id, [other_first], datetime.now(UTC)) == ["duplicate"]


def test_before_migration_0007_samples_are_still_stored_exactly_once(app: APIFlask, ctx: None) -> None:
    # New code may run before its migration has finished (docs/migrations.md): a ledger without content_hash.
    device_id, _ = make_device(app)
    first, second = samples(device_id, [1, 2])
    db.session.execute(text("ALTER TABLE sensor_sample_keys DROP COLUMN content_hash"))
    db.session.commit()
    try:
        assert service.store_samples(device_id, [first], datetime.now(UTC)) == ["stored"]
        assert service.store_samples(device_id, [first, second], datetime.now(UTC)) == ["duplicate", "stored"]
    finally:
        db.session.rollback()
        db.session.execute(text("ALTER TABLE sensor_sample_keys ADD COLUMN content_hash bytea"))
        db.session.commit()
        service._legacy_ledger_until = 0.0
    assert stored_sample_ids(app, device_id) == [first.sample_id, second.sample_id]


def test_storage_failure_commits_nothing_and_the_session_recovers(app: APIFlask, ctx: None) -> None:
    device_id, _ = make_device(app)
    first, second = samples(device_id, [1, 2])
    with db.engine.connect() as blocker:
        blocker.execute(text("SELECT 1 FROM devices WHERE device_id = :d FOR UPDATE"), {"d": device_id})
        db.session.execute(text("SET lock_timeout = '100ms'"))
        with pytest.raises(service.StorageError):
            service.store_samples(device_id, [first], datetime.now(UTC))
        blocker.rollback()
    db.session.execute(text("SET lock_timeout = 0"))
    assert stored_sample_ids(app, device_id) == []
    assert service.store_samples(device_id, [first, second], datetime.now(UTC)) == ["stored", "stored"]


def test_cli_create_device_prints_the_token_once(app: APIFlask, ctx: None) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sqal", "create-device", "ESP32_CLI_01", "--profile", "p1"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert service.authenticate(token).device_id == "ESP32_CLI_01"
    again = runner.invoke(args=["sqal", "create-device", "ESP32_CLI_01"])
    assert again.exit_code != 0
    assert "already exists" in again.output
    assert token not in again.output
    rotated = runner.invoke(args=["sqal", "create-device", "ESP32_CLI_01", "--rotate"])
    assert rotated.exit_code == 0
    assert service.authenticate(rotated.output.strip()).device_id == "ESP32_CLI_01"
    with pytest.raises(service.DeviceRejected):
        service.authenticate(token)
    assert runner.invoke(args=["sqal", "create-device", "bad id!"]).exit_code != 0
    assert runner.invoke(args=["sqal", "disable-device", "ESP32_CLI_01"]).exit_code == 0
    with pytest.raises(service.DeviceRejected):
        service.authenticate(rotated.output.strip())
    assert runner.invoke(args=["sqal", "disable-device", "NOPE_404"]).exit_code != 0


def test_dev_provisioning_writes_the_simulator_token_file(app: APIFlask, ctx: None, tmp_path: Path) -> None:
    path = tmp_path / "simulator" / "tokens.json"
    assert provisioning.provision_dev_devices("test", path) is None
    assert not path.exists()
    assert provisioning.provision_dev_devices("development", path) == path
    tokens = provisioning.read_tokens(path)
    assert sorted(tokens) == [f"ESP32_LL_{n:02d}" for n in range(1, 11)]
    assert path.stat().st_mode & 0o777 == 0o600
    for device_id, token in tokens.items():
        assert service.authenticate(token).device_id == device_id
    provisioning.provision_dev_devices("development", path)
    assert provisioning.read_tokens(path) == tokens  # idempotent: valid tokens are kept
    stale = {**tokens, "ESP32_LL_03": "stale-token"}
    provisioning.write_tokens(path, stale)
    provisioning.provision_dev_devices("development", path)
    refreshed = provisioning.read_tokens(path)
    assert refreshed["ESP32_LL_03"] not in (tokens["ESP32_LL_03"], "stale-token")
    assert service.authenticate(refreshed["ESP32_LL_03"]).device_id == "ESP32_LL_03"
    assert {k: v for k, v in refreshed.items() if k != "ESP32_LL_03"} == {
        k: v for k, v in tokens.items() if k != "ESP32_LL_03"
    }
