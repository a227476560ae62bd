"""Every README shell block marked `<!-- runnable -->` runs verbatim in a second terminal next to a running instance.

The instance is the real gunicorn on the session's database server (a fresh database, migrated and seeded as
`make run` does); the terminal is a new shell in a copy of this checkout whose `.local/services.json` names that
instance, after `eval "$(make -s env)"`, exactly as the README's "Second terminal" section says. Only the address
`127.0.0.1:8000` is replaced by the test server's. curl fails on an HTTP error unless the block is marked
`<!-- runnable: any-status -->` (the chaos endpoints).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.devservices import REPO_ROOT
from scripts.services import TestServices, create_database, drop_database, with_database
from tests.support.checkout import checkout_dir, copy_checkout, shell, terminal_env
from tests.support.server import GunicornServer

pytestmark = pytest.mark.gunicorn

README = REPO_ROOT / "README.md"
BLOCK = re.compile(r"^( *)<!-- runnable(: any-status)? -->\n\1```bash\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
FENCE = re.compile(r"^ *```(?:bash|sh|shell|console)\n(.*?)^ *```", re.MULTILINE | re.DOTALL)


def runnable_blocks() -> list[tuple[int, bool, str]]:
    """(line number, any HTTP status allowed, script) of each marked block, in README order."""
    text = README.read_text()
    return [
        (text.count("\n", 0, match.start()) + 2, bool(match.group(2)), textwrap.dedent(match.group(3)))
        for match in BLOCK.finditer(text)
    ]


def test_readme_marks_its_second_terminal_blocks_runnable() -> None:
    blocks = runnable_blocks()
    assert len(blocks) >= 8
    scripts = "\n".join(script for _, _, script in blocks)
    for command in ('eval "$(make -s env)"', 'psql "$DATABASE_URL"', "KEY=$(flask --app backend keys create"):
        assert command in scripts


def test_no_shell_block_uses_macos_open() -> None:
    for block in FENCE.findall(README.read_text()):
        assert not re.search(r"^\s*open\s", block, re.MULTILINE), block


@pytest.fixture(scope="module")
def instance(services: TestServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(second checkout, server address): a fresh database migrated and seeded in development, gunicorn on it."""
    from scripts import checkout as checkout_state

    name = f"sqal_readme_{uuid.uuid4().hex[:8]}"
    create_database(services.server_url, name)
    database_url = with_database(services.server_url, name)
    env = {"DATABASE_URL": database_url, "REDIS_URL": services.redis_url}
    try:
        with checkout_dir() as base:
            second = copy_checkout(base / "checkout")
            development = terminal_env(**env, APP_ENV="development", FLASK_SKIP_DOTENV="1")
            # As `make run` does: migrate and seed (products, the simulator's devices and their token file).
            subprocess.run([sys.executable, "init_db.py"], cwd=second, env=development, check=True, timeout=120)
            server_env = {**env, "APP_ENV": "development", "RATE_LIMIT_ENABLED": "false", "SHUTDOWN_DRAIN_DELAY": "0"}
            log_dir = tmp_path_factory.mktemp("readme-gunicorn")
            with GunicornServer(server_env, log_dir, workers=2) as server:
                assert server.process is not None
                # What `make run` records for this checkout: its services and its gunicorn.
                root = second / ".local"
                checkout_state.record_service(root, "DATABASE_URL", database_url, server.process.pid)
                checkout_state.record_service(root, "REDIS_URL", services.redis_url, server.process.pid)
                state = checkout_state.read_state(root)
                checkout_state.write_state(root, {**state, "app": {"url": server.base_url}})
                (root / checkout_state.GUNICORN_PID_FILE).write_text(f"{server.process.pid}\n")
                yield second, f"127.0.0.1:{server.port}"
    finally:
        drop_database(services.server_url, name)


def test_every_runnable_readme_block_runs_in_a_second_terminal(instance: tuple[Path, str], tmp_path: Path) -> None:
    second, address = instance
    strict, lenient = tmp_path / "strict", tmp_path / "lenient"
    for home, options in ((strict, "--fail-with-body\n--show-error\n"), (lenient, "--show-error\n")):
        home.mkdir()
        (home / ".curlrc").write_text(options)
    for line, any_status, script in runnable_blocks():
        env = terminal_env(CURL_HOME=str(lenient if any_status else strict), FLASK_SKIP_DOTENV="1")
        body = script.replace("127.0.0.1:8000", address)
        result = shell(second, 'set -o pipefail\neval "$(make -s env)"\n' + body, env, timeout=180)
        assert result.returncode == 0, (
            f"README.md line {line}:\n{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr[-3000:]}"
        )
