"""Grades shared by the analysers and the fusion: thresholds, ordering, caps."""

from __future__ import annotations

from collections.abc import Iterable

GRADES = ("A", "B", "C", "REJECT")
_RANK = {grade: rank for rank, grade in enumerate(GRADES)}
# Lowest score of each grade; anything below the last one is REJECT.
GRADE_FLOORS = (("A", 0.85), ("B", 0.72), ("C", 0.55))
_CEILINGS = {"A": 1.0, "B": 0.849, "C": 0.719, "REJECT": 0.549}


def grade_for_score(score: float) -> str:
    """Grade of a quality score in [0, 1]."""
    for grade, floor in GRADE_FLOORS:
        if score >= floor:
            return grade
    return "REJECT"


def worst_grade(grades: Iterable[str]) -> str:
    """The most severe grade of `grades` ("A" when empty)."""
    return max(grades, key=_RANK.__getitem__, default="A")


def cap_score(score: float, grade: str) -> float:
    """Lower `score` so that it does not exceed the best score allowed by `grade`."""
    return min(score, _CEILINGS[grade])


def clamp01(value: float) -> float:
    """Clamp to [0, 1]."""
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value
