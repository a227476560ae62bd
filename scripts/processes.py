"""Process and file helpers of the embedded services (`scripts.devservices`): find a bundled executable, watch a
pid, report a server that did not come up, open a data directory to the postgres system user."""

from __future__ import annotations

import importlib.util
import stat
import time
from pathlib import Path

import psutil


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed (pip install -r requirements-dev.txt)")
    return Path(next(iter(spec.submodule_search_locations))).resolve()  # a symlinked venv: the real path


def alive(pid: int) -> psutil.Process | None:
    """The live (non-zombie) process with this pid, if any."""
    if pid <= 0:  # a standalone backend (initdb's bootstrap) writes its pid negated in postmaster.pid
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE:
            return proc
        # A killed leader turns zombie while its other threads still hold the process's sockets open.
        return proc if proc.num_threads() > 1 else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def startup_failure(message: str, log_file: Path, lines: int = 20) -> RuntimeError:
    """An error carrying the end of the server log, which says why the server did not come up."""
    try:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        tail = "(no log)"
    return RuntimeError(f"{message}\n--- {log_file} ---\n{tail}")


def grant_traverse(path: Path) -> None:
    """Let other users traverse every ancestor of `path` (pytest's tmp root is 0700, for one)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def grant_read(tree: Path) -> None:
    """Let other users read `tree` and run its executables (a venv made under umask 077 is owner-only)."""
    for path in [tree, *tree.rglob("*")]:
        mode = path.stat().st_mode
        wanted = mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() or mode & stat.S_IXUSR else 0)
        if wanted != mode:
            path.chmod(wanted)
