"""On-disk outbox (sqlite): every generated sample stays here until the server acks or rejects it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUTBOX = Path(".local/simulator/outbox.sqlite3")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    device_id  TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    sample_id  TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at REAL    NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    last_seq  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    device_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    sample_id   TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    rejected_at REAL    NOT NULL,
    PRIMARY KEY (device_id, seq)
);
"""


@dataclass(frozen=True)
class StoredSample:
    """A sample waiting in the outbox."""

    device_id: str
    seq: int
    sample_id: str
    payload: str


class Outbox:
    """Durable store of unacked samples and of each device's last sequence number.

    Writes happen in one transaction per call; the WAL journal with synchronous=NORMAL survives a process
    crash (the case that matters for a simulator) without an fsync per sample.
    """

    def __init__(self, path: Path | str = DEFAULT_OUTBOX) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # One thread at a time uses it (the runner's outbox thread), but not always the one that opened it.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Checkpoint and close the database."""
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def last_seq(self, device_id: str) -> int:
        """Highest seq ever generated for the device (0 if none)."""
        row = self._db.execute("SELECT last_seq FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        return int(row[0]) if row else 0

    def add(self, samples: Iterable[StoredSample]) -> None:
        """Store new samples and advance each device's last seq, atomically."""
        rows = [(s.device_id, s.seq, s.sample_id, s.payload) for s in samples]
        if not rows:
            return
        now = time.time()
        last: dict[str, int] = {}
        for device_id, seq, _, _ in rows:
            last[device_id] = max(seq, last.get(device_id, 0))
        with self._transaction():
            self._db.executemany(
                "INSERT INTO samples (device_id, seq, sample_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                [(*row, now) for row in rows],
            )
            self._db.executemany(
                "INSERT INTO devices (device_id, last_seq) VALUES (?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
                list(last.items()),
            )

    def pending(self, device_id: str) -> list[StoredSample]:
        """Unacked samples of a device, oldest first."""
        rows = self._db.execute(
            "SELECT device_id, seq, sample_id, payload FROM samples WHERE device_id = ? ORDER BY seq",
            (device_id,),
        ).fetchall()
        return [StoredSample(*row) for row in rows]

    def pending_count(self, device_id: str | None = None) -> int:
        """Number of unacked samples (of one device, or of all)."""
        if device_id is None:
            row = self._db.execute("SELECT count(*) FROM samples").fetchone()
        else:
            row = self._db.execute("SELECT count(*) FROM samples WHERE device_id = ?", (device_id,)).fetchone()
        return int(row[0])

    def remove(self, keys: Iterable[tuple[str, int]]) -> None:
        """Forget acked samples, given as (device_id, seq)."""
        rows = list(keys)
        if rows:
            with self._transaction():
                self._db.executemany("DELETE FROM samples WHERE device_id = ? AND seq = ?", rows)

    def reject(self, device_id: str, seq: int, reason: str) -> None:
        """Move a sample the server refused into the `rejected` table (never resent)."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO rejected (device_id, seq, sample_id, payload, reason, rejected_at) "
                "SELECT device_id, seq, sample_id, payload, ?, ? FROM samples WHERE device_id = ? AND seq = ?",
                (reason, time.time(), device_id, seq),
            )
            self._db.execute("DELETE FROM samples WHERE device_id = ? AND seq = ?", (device_id, seq))

    def rejected_count(self) -> int:
        """Number of samples the server refused, over the outbox's life."""
        return int(self._db.execute("SELECT count(*) FROM rejected").fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
