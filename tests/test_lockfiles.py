"""Reproducible installs: the hash-locked files agree with their inputs, and the venv is what the lock says."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from scripts.devservices import REPO_ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements file, following `-r` includes."""
    text = path.read_text(encoding="utf-8")
    found = {normalise(name): version for name, version in PIN.findall(text)}
    for include in re.findall(r"^-r\s+(\S+)", text, re.M):
        found = pins(path.parent / include) | found
    return found


def locked(path: Path) -> dict[str, list[str]]:
    """name==version -> its hashes, for every entry of a pip-compile lock file."""
    entries: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", path.read_text(encoding="utf-8")):
        match = PIN.match(block.strip())
        if match:
            entries[f"{normalise(match[1])}=={match[2]}"] = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
    return entries


@pytest.mark.parametrize(
    ("source", "lock"), [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")]
)
def test_lock_pins_every_input_at_its_version_with_hashes(source: str, lock: str) -> None:
    entries = locked(REPO_ROOT / lock)
    assert entries, f"{lock} is empty"
    missing = [f"{n}=={v}" for n, v in pins(REPO_ROOT / source).items() if f"{n}=={v}" not in entries]
    assert missing == [], f"{lock} is stale (run `make lock`): {missing}"
    unhashed = [entry for entry, hashes in entries.items() if not hashes]
    assert unhashed == [], f"entries without a hash: {unhashed}"
    text = (REPO_ROOT / lock).read_text(encoding="utf-8")
    assert "--index-url" not in text, "a lock must not name this machine's package indexes"
    assert "--find-links" not in text


def test_runtime_lock_is_the_dev_lock_restricted() -> None:
    runtime, dev = locked(REPO_ROOT / "requirements.lock"), locked(REPO_ROOT / "requirements-dev.lock")
    assert set(runtime) <= set(dev), f"dev and prod resolve differently: {sorted(set(runtime) - set(dev))}"


def test_the_venv_running_the_tests_is_the_dev_lock() -> None:
    wanted = {entry.split("==")[0]: entry.split("==")[1] for entry in locked(REPO_ROOT / "requirements-dev.lock")}
    installed = {normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differing = {
        name: (version, installed.get(name)) for name, version in wanted.items() if installed.get(name) != version
    }
    assert differing == {}, f"installed packages differ from requirements-dev.lock (run `make install`): {differing}"
