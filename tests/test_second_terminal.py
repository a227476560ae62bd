"""A second terminal and a second checkout: `make run` in two copies of this checkout, one killed with SIGKILL
(its embedded PostgreSQL and Redis outlive it), `make env` / `make psql` / bare `flask` and `python` commands in a
new terminal, `make stop`, and `.env` honoured by `make run`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.checkout import checkout_dir, copy_checkout, shell, terminal_env

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]

RUN_ENV = {"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "8"}


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def _state(checkout: Path) -> dict[str, dict[str, dict[str, str]]]:
    return json.loads((checkout / ".local" / "services.json").read_text())  # type: ignore[no-any-return]


def _ports(checkout: Path) -> tuple[int, int]:
    services = _state(checkout)["services"]
    return tuple(urlsplit(services[name]["url"]).port for name in ("DATABASE_URL", "REDIS_URL"))  # type: ignore[return-value]


class MakeRun:
    """`make run` in a checkout, in its own process group (as a terminal runs it)."""

    started: list[MakeRun] = []

    def __init__(self, checkout: Path, env: dict[str, str]) -> None:
        MakeRun.started.append(self)
        self.checkout = checkout
        self.log = checkout / "make-run.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                ["make", "run"], cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_serving(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-4000:]
            try:
                url = _state(self.checkout)["app"]["url"]
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    return str(url)
            except (OSError, KeyError, ValueError, requests.RequestException):
                pass
            time.sleep(0.3)
        raise AssertionError(f"make run not serving within {timeout}s:\n{self.log.read_text()[-4000:]}")

    def kill_hard(self) -> None:
        """SIGKILL make, run.sh and gunicorn, as closing a terminal or `kill -9` would: no cleanup runs."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def checkouts() -> Iterator[tuple[Path, Path]]:
    with checkout_dir() as base:
        first, second = copy_checkout(base / "first"), copy_checkout(base / "second")
        try:
            yield first, second
        finally:
            for run in MakeRun.started:  # a failed test must not leave a `make run` behind
                if run.process.poll() is None:
                    os.killpg(run.process.pid, signal.SIGTERM)
                    run.process.wait(60)
            MakeRun.started.clear()
            for checkout in (first, second):
                shell(checkout, "make -s stop", terminal_env())


def test_second_checkout_runs_while_the_first_ones_services_outlive_a_sigkill(checkouts: tuple[Path, Path]) -> None:
    first, second = checkouts
    env = terminal_env(**RUN_ENV)
    (second / ".env").write_text("SERVICE_NAME=second-checkout\n")  # make run reads .env, as flask does

    run_first = MakeRun(first, env)
    run_first.wait_serving()
    first_ports = _ports(first)
    run_first.kill_hard()
    assert all(_listening(port) for port in first_ports), "the embedded services should outlive the SIGKILL"

    run_second = MakeRun(second, env)
    url = run_second.wait_serving()
    second_ports = _ports(second)
    assert set(second_ports).isdisjoint(first_ports)
    assert requests.get(f"{url}/health", timeout=5).json()["service"] == "second-checkout"

    # A new terminal in the second checkout: no venv, no URL; `make env` provides them, bare commands work.
    script = """
        eval "$(make -s env)"
        KEY=$(flask keys create --name ci --scope read)
        printf 'key=%s\\n' "$KEY"
        flask keys create --name ci-json --scope read --json
        psql "$DATABASE_URL" -tAc 'select count(*) from api_keys'
        python init_db.py > /dev/null
        curl -sf "$SQAL_URL/health/ready" -o /dev/null -w 'ready=%{http_code}\\n'
    """
    second_terminal = shell(second, script, terminal_env())
    assert second_terminal.returncode == 0, second_terminal.stderr
    lines = second_terminal.stdout.splitlines()
    assert re.fullmatch(r"key=sqal_[A-Za-z0-9_-]{43}", lines[0]), lines
    assert json.loads(lines[1])["name"] == "ci-json"
    assert lines[2:] == ["2", "ready=200"]
    psql = subprocess.run(
        ["make", "-s", "psql"], cwd=second, env=terminal_env(), input="select 6 * 7;", capture_output=True, text=True
    )
    assert (psql.returncode, psql.stdout.split()[-3]) == (0, "42"), psql.stderr

    # `make stop` in the first checkout stops what its killed `make run` left, and nothing of the second's.
    stopped = shell(first, "make -s stop", terminal_env())
    assert stopped.returncode == 0, stopped.stderr
    assert not any(_listening(port) for port in first_ports)
    assert not (first / ".local" / "services.json").exists()
    assert requests.get(f"{url}/health", timeout=5).status_code == 200

    shell(second, "make -s stop", terminal_env())
    assert run_second.process.wait(30) is not None
    assert not any(_listening(port) for port in second_ports)
    assert not _listening(urlsplit(url).port or 0)


def test_make_env_without_running_services_still_gives_the_venv(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "idle")
    script = 'eval "$(make -s env)"; echo "$FLASK_APP ${DATABASE_URL-none}"; command -v flask psql'
    result = shell(checkout, script, terminal_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "backend none",
        str(checkout / ".venv" / "bin" / "flask"),
        str(checkout / ".local" / "bin" / "psql"),
    ]
    assert "make run" in result.stderr
