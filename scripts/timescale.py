"""Throwaway PostgreSQL clusters with TimescaleDB preloaded, for tests and benchmarks.

The extension is built from ../shared/vendor by `scripts/timescaledb.sh build` into private copies of the machine's
PostgreSQL 15 tree, one per TimescaleDB version, so the system server keeps the plain-table path. A cluster here is
an `EmbeddedPostgres` run from such a copy with `shared_preload_libraries = 'timescaledb'`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.devservices import REPO_ROOT, EmbeddedPostgres, free_port

__all__ = ["REPO_ROOT", "TimescalePostgres", "free_port", "running_cluster"]

# The pinned image's version (existing installations) and the newest release that builds against PostgreSQL 15.
OLDEST_VERSION = "2.17.2"
NEWEST_VERSION = "2.28.3"
VERSIONS = (OLDEST_VERSION, NEWEST_VERSION)
PG_MAJOR = 15
BUILD_HINT = (
    "TimescaleDB {version} is not built here: run `bash scripts/timescaledb.sh build` "
    "(needs Debian's postgresql-server-dev-15, cmake, build-essential, libssl-dev, libkrb5-dev; ~2 min)"
)


def cache_dir() -> Path:
    """Where `scripts/timescaledb.sh` installs its builds."""
    default = Path(os.environ.get("HOME", "/root")) / ".cache" / "sqal" / "timescaledb"
    return Path(os.environ.get("SQAL_TIMESCALEDB_CACHE", default))


def bin_dir(version: str) -> Path:
    """The PostgreSQL binaries of the private tree holding TimescaleDB `version`."""
    return cache_dir() / f"pg{PG_MAJOR}-timescaledb-{version}" / "usr" / "lib" / "postgresql" / str(PG_MAJOR) / "bin"


def is_built(version: str) -> bool:
    """True when `scripts/timescaledb.sh build` has installed `version` (its build stamp is there)."""
    prefix = cache_dir() / f"pg{PG_MAJOR}-timescaledb-{version}"
    return (bin_dir(version) / "postgres").exists() and any(prefix.glob(".built-*"))


def missing_reason(version: str) -> str | None:
    """None when `version` can run here, else one line saying how to make it run."""
    return None if is_built(version) else BUILD_HINT.format(version=version)


class TimescalePostgres(EmbeddedPostgres):
    """A cluster of the private PostgreSQL tree that has TimescaleDB `version` installed and preloaded."""

    server_options = "-c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"

    def __init__(self, version: str, data_dir: Path, port: int) -> None:
        super().__init__(data_dir, port)
        self.version = version
        self.bin_dir = bin_dir(version)


@contextmanager
def running_cluster(version: str, root: Path | None = None) -> Iterator[TimescalePostgres]:
    """Start a fresh TimescaleDB `version` cluster on a free port; stopped and deleted afterwards."""
    base = root or REPO_ROOT / ".local" / "test"
    base.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix=f"timescaledb-{version}-", dir=base))
    cluster = TimescalePostgres(version, data_dir, free_port())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(data_dir, ignore_errors=True)
