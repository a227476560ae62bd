"""Run the real gunicorn (gunicorn.conf.py) as a subprocess for integration tests; `session_server` is the one way
to start one on the session's database and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import requests

from scripts.devservices import REPO_ROOT, free_port
from scripts.services import TestServices

GUNICORN = Path(sys.executable).with_name("gunicorn")


class GunicornServer:
    """A gunicorn master with its workers, stdout/stderr captured to files in `log_dir`."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        workers: int = 2,
        port: int | None = None,
        args: Sequence[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        # Command-line arguments after `gunicorn`; default: this repository's configuration file.
        self.args = list(args) if args is not None else ["-c", str(REPO_ROOT / "gunicorn.conf.py")]
        self.log_dir = log_dir
        self.stdout_path = log_dir / f"gunicorn-{self.port}.out"
        self.stderr_path = log_dir / f"gunicorn-{self.port}.err"
        self.env = {
            **os.environ,
            "APP_ENV": "test",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self, timeout: float = 30.0, ready_path: str = "/health/live") -> GunicornServer:
        """Start gunicorn and wait until `ready_path` answers 200."""
        # The child keeps its own descriptors; ours are closed as soon as it has started.
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen(
                [str(GUNICORN), *self.args],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.stderr()[-4000:]}")
            try:
                if requests.get(self.url(ready_path), timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn not ready within {timeout}s:\n{self.stderr()[-4000:]}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM the master (graceful), then SIGKILL the group if it lingers; return the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(5)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def session_env(services: TestServices, rate_limits: bool = False, **env: str) -> dict[str, str]:
    """Environment of a gunicorn on the session's database and Redis, `env` on top: no drain delay at shutdown, and
    rate limits off unless `rate_limits` (they are tested on purpose in tests/core; elsewhere they make tests flaky).
    """
    base = {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url, "SHUTDOWN_DRAIN_DELAY": "0"}
    if not rate_limits:
        base["RATE_LIMIT_ENABLED"] = "false"
    return {**base, **env}


def session_server(
    services: TestServices,
    log_dir: Path,
    workers: int = 2,
    port: int | None = None,
    rate_limits: bool = False,
    **env: str,
) -> GunicornServer:
    """A gunicorn (not started yet: `.start()` or `with`) on the session's database and Redis (`session_env`)."""
    return GunicornServer(session_env(services, rate_limits, **env), log_dir, workers=workers, port=port)


def together(calls: Sequence[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Run every call in its own thread, released at the same instant; the responses in the calls' order."""
    barrier = threading.Barrier(len(calls))
    results: list[requests.Response | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    done = [result for result in results if result is not None]
    assert len(done) == len(calls), "a request did not finish"
    return done


def check_config(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`gunicorn -c gunicorn.conf.py --check-config` in the repository with exactly `env` (it loads the settings as
    a worker would: a bad value ends it with the configuration error on stderr)."""
    return subprocess.run(
        [str(GUNICORN), "-c", "gunicorn.conf.py", "--check-config"],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
