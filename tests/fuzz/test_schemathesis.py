"""Quick schemathesis profile: every documented operation, every check, bounded examples per operation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz import runner
from tests.support.server import GunicornServer

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]


def test_every_operation_conforms_to_the_openapi_document(
    gunicorn: GunicornServer, fuzz_key: str, tmp_path: Path
) -> None:
    args = runner.command(gunicorn.base_url, runner.QUICK, tmp_path)
    result = runner.run(args, fuzz_key, tmp_path, timeout=600)
    log = tmp_path / "schemathesis.log"
    assert result.returncode == 0, (
        f"schemathesis found failures (exit {result.returncode}; full output {log}):\n{result.stdout[-15000:]}"
        f"\n{result.stderr[-3000:]}\n--- server stderr ---\n{gunicorn.stderr()[-3000:]}"
    )
