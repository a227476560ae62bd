"""docs/security.md: every control in the threat model names a test that exists."""

from __future__ import annotations

import re

from scripts.devservices import REPO_ROOT

DOC = REPO_ROOT / "docs" / "security.md"


def test_every_test_the_threat_model_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"`(tests/[\w/.-]+)`", text))
    assert len(named) >= 15, "the threat model should name the tests that hold its controls"
    missing = sorted(path for path in named if not (REPO_ROOT / path.rstrip("/")).exists())
    assert missing == [], f"docs/security.md names tests that do not exist: {missing}"


def test_every_row_names_a_test() -> None:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if line.startswith("| ") and "---" not in line and not line.startswith("| asset ")]
    assert rows
    untested = [row for row in rows if "`tests/" not in row]
    assert untested == [], f"rows without a test: {untested}"
