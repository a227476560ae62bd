"""Fusion of the two analysers into the final grade: the most severe finding of either sensor wins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulator.grading import cap_score, clamp01, grade_for_score, worst_grade
from simulator.spectral_analysis import SpectralAnalysis
from simulator.tof_analysis import TofAnalysis

TOF_WEIGHT = 0.4
SPECTRAL_WEIGHT = 0.6


@dataclass(frozen=True)
class FusionResult:
    """Final decision for one sample."""

    final_score: float
    final_grade: str
    confidence: float
    vl53l8ch_score: float
    as7341_score: float
    defects: list[str]

    def frame_fields(self) -> dict[str, Any]:
        """The protocol's `fusion` section."""
        return {
            "final_score": round(self.final_score, 4),
            "final_grade": self.final_grade,
            "confidence": round(self.confidence, 4),
            "vl53l8ch_score": round(self.vl53l8ch_score, 4),
            "as7341_score": round(self.as7341_score, 4),
            "defects": self.defects,
        }


def fuse(tof: TofAnalysis, spectral: SpectralAnalysis) -> FusionResult:
    """Weighted score, grade no better than either sensor's grade, confidence from measurement health."""
    score = TOF_WEIGHT * tof.quality_score + SPECTRAL_WEIGHT * spectral.quality_score
    grade = worst_grade([grade_for_score(score), tof.grade, spectral.grade])
    confidence = 0.97
    confidence -= 0.35 if spectral.saturated_channels else 0.0
    confidence -= 0.3 if "low_signal" in spectral.defects else 0.0
    confidence -= min(0.3, 0.02 * tof.invalid_zones)
    # Sensors that disagree strongly make the decision less certain.
    confidence -= 0.25 * abs(tof.quality_score - spectral.quality_score)
    return FusionResult(
        final_score=cap_score(score, grade),
        final_grade=grade,
        confidence=max(0.05, clamp01(confidence)),
        vl53l8ch_score=tof.quality_score,
        as7341_score=spectral.quality_score,
        defects=sorted(set(tof.defects) | set(spectral.defects)),
    )
