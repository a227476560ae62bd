"""A scriptable CLI: every `--help` without a database, secrets alone on stdout (logs on stderr), `--json`,
progress on stderr (a bar on a terminal, plain lines when piped), `.flaskenv`/`.env` and the running `make run`
services found by `flask` and `python app.py` without any URL."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from apiflask import APIFlask

from backend.base import config as config_module
from backend.base.config import Settings
from scripts.devservices import REPO_ROOT, free_port
from scripts.services import TestServices
from tests.support.checkout import copy_checkout, terminal_env

FLASK = str(Path(sys.executable).with_name("flask"))
KEY = re.compile(r"sqal_[A-Za-z0-9_-]{43}")
TOKEN = re.compile(r"sqal_dev_[A-Za-z0-9_-]{43}")
# No database anywhere: no URL, no .env, not the services a `make run` of this checkout may be running.
NO_DATABASE = {"PATH": "/usr/bin:/bin", "FLASK_SKIP_DOTENV": "1", "LOCAL_SERVICES": "false"}

HELP_COMMANDS = [
    ["--help"],
    ["keys", "--help"],
    ["keys", "create", "--help"],
    ["keys", "list", "--help"],
    ["sqal", "--help"],
    ["sqal", "create-device", "--help"],
    ["sqal", "create-devices", "--help"],
    ["db", "--help"],
    ["db", "upgrade", "--help"],
]


def _flask(*args: str, env: dict[str, str], app: str = "backend") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLASK, "--app", app, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("args", HELP_COMMANDS, ids=lambda args: " ".join(args))
def test_every_help_works_without_a_database(args: list[str]) -> None:
    result = _flask(*args, env=NO_DATABASE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: flask")
    assert result.stderr == ""


def test_help_of_the_reference_entry_point_works_without_a_database() -> None:
    result = _flask("--help", env=NO_DATABASE, app="app")
    assert (result.returncode, result.stderr) == (0, "")
    assert all(name in result.stdout for name in ("keys", "sqal", "db"))


@pytest.fixture
def cli_env(app: APIFlask, services: TestServices) -> dict[str, str]:
    """The session's (migrated) database for `flask` subprocesses, nothing read from .env."""
    return {**os.environ, **NO_DATABASE, "DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url}


def test_keys_create_prints_the_key_alone_on_stdout(cli_env: dict[str, str]) -> None:
    plain = _flask("keys", "create", "--name", "ci", "--scope", "read", env=cli_env)
    assert plain.returncode == 0, plain.stderr
    assert KEY.fullmatch(plain.stdout.rstrip("\n")), plain.stdout  # what KEY=$(flask … keys create …) captures
    assert "name=ci" in plain.stderr
    assert '"event": "startup_dependencies"' in plain.stderr  # the logs are there, on stderr

    as_json = _flask(
        "keys", "create", "--name", "ci-json", "--scope", "read", "--scope", "bugs:write", "--json", env=cli_env
    )
    assert as_json.returncode == 0, as_json.stderr
    created = json.loads(as_json.stdout)
    assert (created["name"], created["scopes"], type(created["id"])) == ("ci-json", ["bugs:write", "read"], int)
    assert KEY.fullmatch(created["key"])

    listed = json.loads(_flask("keys", "list", "--json", env=cli_env).stdout)
    assert {"ci", "ci-json"} <= {key["name"] for key in listed["keys"]}
    assert all("key" not in key and "key_hash" not in key for key in listed["keys"])


def test_device_tokens_alone_on_stdout_and_bulk_provisioning_with_progress(cli_env: dict[str, str]) -> None:
    suffix = os.urandom(3).hex()
    single = _flask("sqal", "create-device", f"CLI_{suffix}", env=cli_env)
    assert single.returncode == 0, single.stderr
    assert TOKEN.fullmatch(single.stdout.rstrip("\n")), single.stdout

    as_json = _flask("sqal", "create-device", f"CLI_{suffix}", "--rotate", "--json", env=cli_env)
    assert json.loads(as_json.stdout)["device_id"] == f"CLI_{suffix}"

    bulk = _flask("sqal", "create-devices", "--count", "12", "--prefix", f"BULK_{suffix}_", "--json", env=cli_env)
    assert bulk.returncode == 0, bulk.stderr
    devices = json.loads(bulk.stdout)["devices"]
    assert sorted(devices) == [f"BULK_{suffix}_{n:02d}" for n in range(1, 13)]
    assert all(TOKEN.fullmatch(token) for token in devices.values())
    # Piped: plain progress lines on stderr (no carriage return), never on stdout.
    assert "12/12 provisioning devices" in bulk.stderr.splitlines()[-1]
    assert "\r" not in bulk.stderr
    assert "provisioning" not in bulk.stdout


def test_progress_is_plain_lines_when_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.core import cli  # here, not at module level: the other tests run on any checkout

    clock = iter(range(0, 1000, 2))  # every clock reading 2 s later: slow work
    monkeypatch.setattr(cli.time, "monotonic", lambda: float(next(clock)))
    out = io.StringIO()
    assert list(cli.progress(range(10), "export", stream=out)) == list(range(10))
    lines = out.getvalue().splitlines()
    shown = [line.split("] ", 1)[1].split(" (")[0].strip() for line in lines]
    assert 2 <= len(lines) <= 5  # not one per item: at most one per 5 s of work, and the final state
    assert shown[-1] == "100.0% 10/10 export"
    assert all(line.startswith("[") and "\r" not in line for line in lines)

    unknown = io.StringIO()
    assert sum(cli.progress((n for n in range(250)), "rows", stream=unknown)) == sum(range(250))
    assert unknown.getvalue().splitlines()[-1].startswith("250 rows (")


def test_progress_is_a_bar_on_a_terminal() -> None:
    from backend.core.cli import progress

    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as terminal:
            assert terminal.isatty()
            assert list(progress(range(40), "seeding", stream=terminal)) == list(range(40))
        os.set_blocking(leader, False)
        chunks = []
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(leader, 4096):
                chunks.append(chunk)
        shown = b"".join(chunks).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert shown.startswith("\r[")  # redrawn in place
    assert f"[{'#' * 30}] 100.0% 40/40 seeding" in shown


def test_config_finds_the_running_services_of_this_checkout_only_in_development(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, services: TestServices
) -> None:
    state = tmp_path / "services.json"
    alive, gone = os.getpid(), _dead_pid()
    entries = {
        "DATABASE_URL": {"url": services.database_url, "pid": alive},
        "REDIS_URL": {"url": "redis://127.0.0.1:1/0", "pid": gone},
    }
    state.write_text(json.dumps({"services": entries}))
    monkeypatch.setattr(config_module, "LOCAL_SERVICES_FILE", state)
    for name in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "APP_ENV", "LOCAL_SERVICES"):
        monkeypatch.delenv(name, raising=False)

    found = Settings.from_env()
    assert found.database_url == services.database_url.replace("postgresql://", "postgresql+psycopg2://")
    assert found.redis_url == ""  # its process is gone: not a default
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    assert Settings.from_env().database_url == "postgresql+psycopg2://elsewhere/db"  # a set value wins
    monkeypatch.delenv("DATABASE_URL")
    for app_env, switch in (("production", "true"), ("test", "true"), ("development", "false")):
        monkeypatch.setenv("APP_ENV", app_env)
        monkeypatch.setenv("LOCAL_SERVICES", switch)
        with pytest.raises(config_module.ConfigError, match="Missing DATABASE_URL"):
            Settings.from_env()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_dotenv_files_are_read_by_flask_and_python_app_py(tmp_path: Path, cli_env: dict[str, str]) -> None:
    checkout = copy_checkout(tmp_path / "checkout")
    port = free_port()
    (checkout / ".flaskenv").write_text("FLASK_APP=backend\nSERVICE_NAME=from-flaskenv\n")
    (checkout / ".env").write_text(
        f"DATABASE_URL={cli_env['DATABASE_URL']}\nREDIS_URL={cli_env['REDIS_URL']}\nPORT={port}\nSERVICE_NAME=from-env\n"
    )
    env = terminal_env(LOCAL_SERVICES="false")
    listed = subprocess.run(
        [FLASK, "keys", "list", "--json"], cwd=checkout, env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr  # FLASK_APP from .flaskenv, DATABASE_URL from .env
    assert "keys" in json.loads(listed.stdout)
    assert '"service": "from-env"' in listed.stderr  # .env wins over .flaskenv

    log = tmp_path / "app.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=checkout, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(10)
    assert (health["service"], health["database"]) == ("from-env", "connected")
