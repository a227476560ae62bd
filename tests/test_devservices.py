"""scripts/devservices.py against real postgres / redis-server processes in tmp dirs on free ports."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis

from scripts.devservices import REPO_ROOT, EmbeddedPostgres, EmbeddedRedis, free_port, main, services


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _wait_stopped(service: EmbeddedPostgres | EmbeddedRedis) -> None:
    deadline = time.monotonic() + 10
    while service.is_running():
        assert time.monotonic() < deadline, "still running"
        time.sleep(0.05)


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", free_port())
    server.start()
    yield server
    server.stop(mode="immediate")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    server.start()
    yield server
    server.stop()


def test_postgres_stop_start_keeps_data_on_the_same_port(pg: EmbeddedPostgres) -> None:
    assert pg.is_running()
    assert pg.running_port() == pg.port
    pg.create_database("app_db")
    pg.create_database("app_db")  # idempotent
    conn = psycopg2.connect(pg.url("app_db"))
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE lot (code text PRIMARY KEY)")
        cur.execute("INSERT INTO lot VALUES ('LL-042')")
    conn.close()

    pg.stop()
    assert not pg.is_running()
    assert pg.running_port() is None
    assert _refused(pg.port)
    with pytest.raises(psycopg2.OperationalError, match="refused"):
        psycopg2.connect(pg.url("app_db"), connect_timeout=2)

    pg.start()
    conn = psycopg2.connect(pg.url("app_db"))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT code FROM lot")
        assert cur.fetchall() == [("LL-042",)]
    conn.close()
    assert (pg.data_dir / "postgres.log").read_text().count("ready to accept connections") == 2

    pg.drop_database("app_db")
    pg.drop_database("app_db")  # idempotent
    with pytest.raises(psycopg2.OperationalError, match="does not exist"):
        psycopg2.connect(pg.url("app_db"))


def test_postgres_restarts_after_its_postmaster_was_killed(pg: EmbeddedPostgres) -> None:
    pid_file = pg.pgdata / "postmaster.pid"
    pid = int(pid_file.read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    _wait_stopped(pg)
    assert pid_file.exists()

    pg.start()
    conn = psycopg2.connect(pg.url("postgres"))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    conn.close()


def test_postgres_ignores_postmaster_pid_naming_an_unrelated_live_process(pg: EmbeddedPostgres) -> None:
    pid_file = pg.pgdata / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    pg.stop()
    # A reused pid: postgres itself would refuse to start ("lock file already exists").
    pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")
    assert not pg.is_running()

    pg.start()
    assert pg.is_running()
    assert int(pid_file.read_text().split()[0]) != os.getpid()


def test_postgres_already_running_on_another_port_is_an_error(pg: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres(pg.data_dir, free_port())
    with pytest.raises(RuntimeError, match=f"runs on port {pg.port}, not {other.port}"):
        other.start()
    EmbeddedPostgres(pg.data_dir, pg.port).start()  # same port: a no-op
    assert pg.is_running()


def test_port_taken_by_another_process_is_reported(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(RuntimeError, match="already in use"):
            EmbeddedRedis(tmp_path / "redis", port).start()
        pg = EmbeddedPostgres(tmp_path / "pg", port)
        with pytest.raises(RuntimeError, match="Address already in use"):
            pg.start()
        assert not pg.is_running()


def test_postgres_stop_rejects_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stop mode"):
        EmbeddedPostgres(tmp_path, free_port()).stop(mode="abrupt")


def test_redis_kill_then_restart_on_the_same_port(redis_server: EmbeddedRedis) -> None:
    assert redis_server.is_running()
    with redis.Redis.from_url(redis_server.url()) as client:
        assert client.ping()
        client.set("k", "v")

    redis_server.kill()
    assert not redis_server.is_running()
    assert redis_server.pid_file.exists()
    assert _refused(redis_server.port)

    redis_server.start()
    with redis.Redis.from_url(redis_server.url(db=2)) as client:
        assert client.ping()
    with redis.Redis.from_url(redis_server.url()) as client:
        assert client.get("k") is None  # no persistence: --save "" and no AOF

    redis_server.stop()
    assert not redis_server.is_running()
    assert not redis_server.pid_file.exists()
    assert _refused(redis_server.port)
    redis_server.stop()  # no-op when stopped


def _cli(root: Path, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.devservices", command, "--root", str(root)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _eval_exports(stdout: str) -> dict[str, str]:
    """Run the printed lines through a real shell, as `eval "$(... up)"` in the Makefile does."""
    script = 'eval "$1"; printf "%s\\n" "${DATABASE_URL-unset}" "${REDIS_URL-unset}"'
    clean_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    out = subprocess.run(
        ["bash", "-c", script, "_", stdout], capture_output=True, text=True, check=True, env=clean_env
    ).stdout
    database_url, redis_url = out.splitlines()
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url}


def test_cli_up_prints_exports_then_down_stops(tmp_path: Path) -> None:
    root = tmp_path / "local"
    pg_port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"LOCAL_PG_PORT": str(pg_port), "LOCAL_REDIS_PORT": str(redis_port)}
    try:
        first = _cli(root, "up", env)
        assert first.returncode == 0, first.stderr
        assert all(shlex.split(line)[0] == "export" for line in first.stdout.splitlines())
        exported = _eval_exports(first.stdout)
        assert exported == {
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/sqal",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        psycopg2.connect(exported["DATABASE_URL"]).close()
        with redis.Redis.from_url(exported["REDIS_URL"]) as client:
            assert client.ping()

        again = _cli(root, "up", env)
        assert (again.returncode, again.stdout) == (0, first.stdout)
        assert _cli(root, "status", env).returncode == 0

        only_redis = _cli(root, "up", env | {"DATABASE_URL": "postgresql://elsewhere/db"})
        assert only_redis.returncode == 0, only_redis.stderr
        assert only_redis.stdout == f"export REDIS_URL=redis://127.0.0.1:{redis_port}/0\n"

        stopped = _cli(root, "down", env)
        assert (stopped.returncode, stopped.stdout) == (0, "")
        assert _refused(pg_port)
        assert _refused(redis_port)
        status = _cli(root, "status", env)
        assert status.returncode == 3
        assert "postgres: stopped" in status.stdout
        assert "redis: stopped" in status.stdout
    finally:
        for service in services(root):
            service.stop()


def test_cli_up_with_both_urls_set_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    assert main(["up", "--root", str(tmp_path)]) == 0
    assert list(tmp_path.iterdir()) == []


def test_cli_rejects_a_bad_port_naming_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_PG_PORT", "54x29")
    with pytest.raises(SystemExit, match="LOCAL_PG_PORT must be a TCP port"):
        main(["status", "--root", str(tmp_path)])


def test_cli_up_that_cannot_start_redis_leaves_no_postgres_running(tmp_path: Path) -> None:
    """`make run` stops nothing when `up` fails, so `up` itself must stop the PostgreSQL it had started."""
    root = tmp_path / "local"
    pg_port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST")}
        env |= {"LOCAL_PG_PORT": str(pg_port), "LOCAL_REDIS_PORT": str(squatter.getsockname()[1])}
        try:
            failed = _cli(root, "up", env)
            assert failed.returncode != 0
            assert "already in use" in failed.stderr
            assert "LOCAL_REDIS_PORT" in failed.stderr
            assert failed.stdout == ""
            assert _refused(pg_port)
            assert not services(root)[0].is_running()
        finally:
            for service in services(root):
                service.stop()
