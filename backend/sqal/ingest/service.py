"""SQAL ingestion logic over the SQLAlchemy session: device authentication, exactly-once sample storage.

No Flask request or WebSocket objects here: the WebSocket adapter (`routes.py`) and the frame protocol
(`frames.py`) call these functions with plain values.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg2.errors
from pydantic_core import to_json
from sqlalchemy import Row, TextClause, func, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import ProgrammingError, SQLAlchemyError

from backend.base.errors import ServiceUnavailable
from backend.core import security
from backend.extensions import db
from backend.sqal.ingest.schemas import SampleIn
from backend.sqal.models import Device, SensorSample
from backend.sqal.protocol import AckStatus, ErrorCode
from backend.sqal.sample_fields import frame_reader

logger = logging.getLogger(__name__)

# What storing a sample came to: an ack status, or a conflict (a resend of its sample_id with other content).
Status = AckStatus | Literal["conflict"]


class DeviceRejected(Exception):
    """The device may not (or may no longer) send samples; `code` is the protocol error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StorageError(Exception):
    """The samples could not be committed; nothing from the frame was stored."""


@dataclass(frozen=True)
class DeviceIdentity:
    """The device a connection is authenticated as."""

    device_id: str
    firmware_version: str | None
    token_hash: str  # the credential the session is bound to (docs/protocol.md §1)


def authenticate(token: str | None) -> DeviceIdentity:
    """The enabled device owning `token`, or DeviceRejected (`unauthorized` / `device_disabled`)."""
    if not token:
        raise DeviceRejected(ErrorCode.UNAUTHORIZED, "missing or invalid device token")
    digest = security.hash_token(token)
    device = db.session.execute(select(Device).where(Device.token_hash == digest)).scalar_one_or_none()
    if device is None or not security.verify_token(token, device.token_hash):
        db.session.rollback()
        raise DeviceRejected(ErrorCode.UNAUTHORIZED, "missing or invalid device token")
    identity = DeviceIdentity(device.device_id, device.firmware_version, device.token_hash)
    enabled = device.enabled
    db.session.rollback()  # read-only: end the transaction so no connection stays checked out
    if not enabled:
        raise DeviceRejected(ErrorCode.DEVICE_DISABLED, "device is disabled")
    return identity


def credential_refusal(device_id: str, token_hash: str | None) -> DeviceRejected | None:
    """Why a session bound to `token_hash` may no longer send (token rotated: `unauthorized`, device disabled:
    `device_disabled`); None while its credential holds. `token_hash` None checks only `enabled`."""
    row = db.session.execute(
        select(Device.enabled, Device.token_hash).where(Device.device_id == device_id)
    ).one_or_none()
    db.session.rollback()  # read-only: no connection stays checked out by an idle socket
    if row is None or (token_hash is not None and row.token_hash != token_hash):
        return DeviceRejected(ErrorCode.UNAUTHORIZED, "device token was revoked")
    if not row.enabled:
        return DeviceRejected(ErrorCode.DEVICE_DISABLED, "device is disabled")
    return None


def touch_device(device_id: str) -> None:
    """Record that the device was just seen (on connect)."""
    db.session.execute(update(Device).where(Device.device_id == device_id).values(last_seen_at=func.now()))
    db.session.commit()


# Bound once per frame; the other `sensor_samples` columns without a server default come from each sample.
_FRAME_COLUMNS = frozenset({"device_id", "received_at"})
# (name, SQL type) of the per-sample columns, from the model: the column list of json_to_recordset.
_SAMPLE_COLUMNS = tuple(
    (column.name, column.type.compile(dialect=postgresql.dialect()))
    for column in SensorSample.__table__.columns
    if column.server_default is None and column.name not in _FRAME_COLUMNS
)
# One statement per frame instead of three: each round trip is a wait for PostgreSQL and then for the interpreter
# lock, and under load those waits, not the work, made most of a frame's time (docs/profiles/ingest.md). The row is
# touched first (a disabled or unknown device, or a session whose token was rotated, stores nothing), the
# (device_id, sample_id) keys go into the ledger with their content hash and ON CONFLICT DO NOTHING, and only the rows
# whose key came back are inserted. A key already in the ledger with another content hash is a conflict: the final
# SELECT reads the ledger as it was before the statement (a data-modifying CTE's rows are invisible to the rest of
# its statement), so only earlier keys compare, by primary key. The whole batch travels as one JSON parameter that
# PostgreSQL unpacks: no per-value bind parameters to compile, adapt and encode in Python.
_STORE_FRAME_SQL = """
    WITH device AS (
        UPDATE devices SET last_seen_at = now(), firmware_version = :firmware_version, profile = :profile
        WHERE device_id = :device_id AND enabled AND (CAST(:token_hash AS text) IS NULL OR token_hash = :token_hash)
        RETURNING enabled
    ), incoming AS (
        SELECT key, decode(digest, 'hex') AS content_hash
        FROM unnest(CAST(:sample_ids AS text[]), CAST(:digests AS text[])) AS f(key, digest)
    ), new_keys AS (
        INSERT INTO sensor_sample_keys (device_id, sample_id{hash_column})
        SELECT :device_id, key{hash_value} FROM incoming
        WHERE (SELECT enabled FROM device)
        ON CONFLICT DO NOTHING RETURNING sample_id
    ), stored AS (
        INSERT INTO sensor_samples (device_id, received_at, {names})
        SELECT :device_id, :received_at, {names} FROM json_to_recordset(CAST(:rows AS json)) AS r({typed})
        WHERE r.sample_id IN (SELECT sample_id FROM new_keys)
    )
    SELECT (SELECT enabled FROM device) AS enabled, ARRAY(SELECT sample_id FROM new_keys) AS stored, {conflicts}
"""
_CONFLICTS = """ARRAY(SELECT i.key FROM incoming i JOIN sensor_sample_keys k
                 ON k.device_id = :device_id AND k.sample_id = i.key
                 WHERE k.content_hash <> i.content_hash) AS conflicts"""


def _store_frame(with_hashes: bool) -> TextClause:
    return text(
        _STORE_FRAME_SQL.format(
            names=", ".join(f'"{name}"' for name, _ in _SAMPLE_COLUMNS),
            typed=", ".join(f'"{name}" {kind}' for name, kind in _SAMPLE_COLUMNS),
            hash_column=", content_hash" if with_hashes else "",
            hash_value=", content_hash" if with_hashes else "",
            conflicts=_CONFLICTS if with_hashes else "CAST(ARRAY[] AS text[]) AS conflicts",
        )
    )


_STORE_FRAME = _store_frame(with_hashes=True)
# The same without the ledger's `content_hash` (before migration 0007): new code may run before the migration has
# finished (docs/migrations.md), so a missing column falls back to this statement (no conflicts detected) and the
# full one is tried again after LEGACY_LEDGER_SECONDS.
_STORE_FRAME_WITHOUT_HASHES = _store_frame(with_hashes=False)
LEGACY_LEDGER_SECONDS = 10.0
_legacy_ledger_until = 0.0


def row_json(sample: SampleIn) -> bytes:
    """The sample's stored content (`sample_row`) as the JSON the insert sends."""
    return to_json(sample_row(sample))


def content_digest(row: bytes) -> str:
    """A 128-bit digest of a sample's stored content (`row_json`): two sends of one `sample_id` with equal digests
    store the same record (a resend); unequal ones are a conflict. Hashing the JSON the insert sends anyway costs a
    few microseconds per sample; digesting the whole validated model would cost ~100 µs."""
    return hashlib.blake2b(row, digest_size=16).hexdigest()


# The per-sample `sensor_samples` columns of a validated sample (docs/protocol.md §8), JSON-ready. Keyed in the
# table's order: `row_json` hashes the row, so the order is part of every stored content hash.
sample_row: Callable[[SampleIn], dict[str, Any]] = frame_reader([name for name, _ in _SAMPLE_COLUMNS])


def store_samples(
    device_id: str, samples: Sequence[SampleIn], received_at: datetime, *, token_hash: str | None = None
) -> list[Status]:
    """Store the samples exactly once and commit; return each one's status, in order.

    One statement (`_STORE_FRAME`) and its commit. A sample_id repeated within `samples` is stored once; the
    later copies are duplicates (conflicts when their content differs from the first). `token_hash`, when given,
    is the session's credential: a rotated token stores nothing and raises DeviceRejected like a disabled device.
    """
    if not samples:
        return []
    first_index: dict[str, int] = {}
    for index, sample in enumerate(samples):
        first_index.setdefault(sample.sample_id, index)
    rows = [row_json(sample) for sample in samples]
    digests = [content_digest(row) for row in rows]
    unique = [samples[index] for index in first_index.values()]
    meta = samples[-1].meta
    parameters = {
        "device_id": device_id,
        "token_hash": token_hash,
        "firmware_version": meta.firmware_version,
        "profile": meta.config_profile,
        "sample_ids": [sample.sample_id for sample in unique],
        "digests": [digests[index] for index in first_index.values()],
        "received_at": received_at,
        "rows": (b"[" + b",".join(rows[index] for index in first_index.values()) + b"]").decode(),
    }
    try:
        outcome = _execute_store(parameters)
        if not outcome.enabled:
            db.session.rollback()
            raise credential_refusal(device_id, token_hash) or DeviceRejected(
                ErrorCode.DEVICE_DISABLED, "device is disabled"
            )
        db.session.commit()
    except (SQLAlchemyError, ServiceUnavailable) as exc:  # the latter: database breaker open / connection lost
        _rollback_quietly()
        raise StorageError(exc.__class__.__name__) from exc
    stored, conflicts = set(outcome.stored), set(outcome.conflicts)
    statuses: list[Status] = []
    for index, sample in enumerate(samples):
        first = first_index[sample.sample_id]
        if first == index:
            statuses.append(
                "stored" if sample.sample_id in stored else "conflict" if sample.sample_id in conflicts else "duplicate"
            )
        else:  # a repeat within the frame: compared with its first copy
            statuses.append("duplicate" if digests[index] == digests[first] else "conflict")
    return statuses


def _execute_store(parameters: dict[str, Any]) -> Row[Any]:
    """Run the frame's statement; on a ledger without `content_hash` (before 0007), its legacy form."""
    global _legacy_ledger_until
    if time.monotonic() >= _legacy_ledger_until:
        try:
            return db.session.execute(_STORE_FRAME, parameters).one()
        except ProgrammingError as exc:
            if not isinstance(exc.orig, psycopg2.errors.UndefinedColumn):
                raise
            db.session.rollback()  # the frame's transaction held only this statement: nothing else is lost
            _legacy_ledger_until = time.monotonic() + LEGACY_LEDGER_SECONDS
            logger.warning(
                "sensor_sample_keys has no content_hash yet (migration 0007): conflicts are not detected",
                extra={"event": "ledger_without_content_hash"},
            )
    return db.session.execute(_STORE_FRAME_WITHOUT_HASHES, parameters).one()


def _rollback_quietly() -> None:
    with contextlib.suppress(SQLAlchemyError, ServiceUnavailable):  # the connection may be gone
        db.session.rollback()
