"""Development provisioning: the simulator's devices exist and their tokens are in the simulator's token file.

Only in APP_ENV=development (`make run` runs the seeders through init_db.py), so `python -m simulator
--devices 3` works with no manual step. Idempotent: a token still valid for its device is kept; a missing or
stale one is replaced (the server stores only digests, so a lost token can only be re-issued).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from backend.sqal.devices import service

REPO_ROOT = Path(__file__).resolve().parents[3]
TOKEN_FILE = REPO_ROOT / ".local" / "simulator" / "tokens.json"  # the simulator's default --token-file
DEV_DEVICE_PREFIX = "ESP32_LL_"
DEV_DEVICE_COUNT = 10
DEV_PROFILE = "foiegras_standard_barquette"


def dev_device_ids(count: int = DEV_DEVICE_COUNT, prefix: str = DEV_DEVICE_PREFIX) -> list[str]:
    """The ids `python -m simulator --devices N` uses: ESP32_LL_01, ESP32_LL_02, ..."""
    width = max(2, len(str(count)))
    return [f"{prefix}{number:0{width}d}" for number in range(1, count + 1)]


def read_tokens(path: Path) -> dict[str, str]:
    """The token file's `{device_id: token}` object; empty when missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items() if isinstance(key, str) and isinstance(value, str)}


def write_tokens(path: Path, tokens: dict[str, str]) -> None:
    """Write the token file atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(tokens, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def ensure_devices(device_ids: list[str], path: Path) -> dict[str, str]:
    """Make every device exist with the token recorded in `path`; return the tokens written."""
    tokens = read_tokens(path)
    changed = False
    for device_id in device_ids:
        token = tokens.get(device_id)
        if token and service.device_token_matches(device_id, token):
            continue
        tokens[device_id] = service.create_device(device_id, profile=DEV_PROFILE, replace_token=True)
        changed = True
    if changed or not path.exists():
        write_tokens(path, tokens)
    return {device_id: tokens[device_id] for device_id in device_ids}


def provision_dev_devices(app_env: str, path: Path = TOKEN_FILE) -> Path | None:
    """In development, provision the simulator's devices; return the token file written (None otherwise)."""
    if app_env != "development":
        return None
    ensure_devices(dev_device_ids(), path)
    return path
