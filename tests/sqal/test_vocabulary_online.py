""" "Online" has one definition: seen within ONLINE_INTERVALS generation intervals, in the gauge, the device list and
the dashboard figures alike."""

from __future__ import annotations

import ast
from pathlib import Path

from backend.base.config import Settings
from backend.sqal.vocabulary import ONLINE_INTERVALS, online_seconds

ROOT = Path(__file__).resolve().parents[2]


def test_online_seconds_follow_the_generation_interval() -> None:
    settings = Settings.from_env({"SQAL_GENERATION_INTERVAL": "7", "DATABASE_URL": "postgresql://x/y"})
    assert online_seconds(settings) == ONLINE_INTERVALS * 7


def test_no_module_restates_the_rule() -> None:
    """`N * settings.sqal_generation_interval` written anywhere but vocabulary.online_seconds is a second copy."""
    copies = []
    for path in sorted((ROOT / "backend").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Mult)
                and "sqal_generation_interval" in ast.unparse(node)
                and path.name != "vocabulary.py"
            ):
                copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert copies == []
