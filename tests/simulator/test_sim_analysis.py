"""The analysers and the fusion are pure functions: hand-built frames in, expected findings out."""

from __future__ import annotations

import math

import pytest

from simulator.fusion import fuse
from simulator.spectral_analysis import analyse_spectrum
from simulator.tof_analysis import TofAnalysis, analyse_tof

SENSOR_HEIGHT = 250.0
PITCH = 2 * SENSOR_HEIGHT * math.tan(math.radians(22.5)) / 8  # zone side on the tray floor, FoV 45 deg
ATIME, ASTEP, GAIN = 29, 599, 64  # full scale (29+1)*(599+1) = 18000
# Hand-measured style spectra (raw counts at ATIME 29 / ASTEP 599 / gain 64).
FRESH = {
    "F1_415nm": 751,
    "F2_445nm": 1821,
    "F3_480nm": 3009,
    "F4_515nm": 4221,
    "F5_555nm": 5028,
    "F6_590nm": 5385,
    "F7_630nm": 5270,
    "F8_680nm": 4491,
    "Clear": 12590,
    "NIR": 2992,
}


def flat_tray() -> list[list[float]]:
    """Bare tray: every zone at the sensor height, with +-1 mm of ranging jitter."""
    jitter = [0, 1, -1, 0, 1, 0, -1, 1]
    return [[SENSOR_HEIGHT + jitter[(r + c) % 8] for c in range(8)] for r in range(8)]


def dome(peak: float = 45.0, radius_zones: float = 3.0) -> list[list[float]]:
    """A paraboloid lobe centred on the grid: distance = height - product height."""
    rows = []
    for r in range(8):
        row = []
        for c in range(8):
            rho2 = ((r - 3.5) ** 2 + (c - 3.5) ** 2) / radius_zones**2
            row.append(SENSOR_HEIGHT - (peak * (1 - rho2) if rho2 < 1 else 0.0))
        rows.append(row)
    return rows


def analyse(
    distances: list[list[float]], status: list[list[int]] | None = None, reflectance: float = 45.0
) -> TofAnalysis:
    status = status or [[5] * 8 for _ in range(8)]
    return analyse_tof(
        distances, [[reflectance] * 8 for _ in range(8)], [[1200] * 8 for _ in range(8)], status, SENSOR_HEIGHT
    )


def test_flat_tray_has_no_volume_and_is_rejected_as_empty() -> None:
    result = analyse(flat_tray(), reflectance=70.0)
    assert result.volume_mm3 == pytest.approx(0.0, abs=1.0)
    assert result.avg_height_mm == 0.0
    assert result.defects == ["no_product"]
    assert result.grade == "REJECT"


def test_dome_volume_matches_the_paraboloid() -> None:
    peak, radius = 45.0, 3.0
    result = analyse(dome(peak, radius))
    expected = math.pi * (radius * PITCH) ** 2 * peak / 2  # paraboloid volume
    assert result.volume_mm3 == pytest.approx(expected, rel=0.12)
    assert 15.0 < result.avg_height_mm < peak
    assert result.surface_uniformity > 0.95
    assert result.defects == []
    assert result.grade == "A"
    assert result.bins_analysis["product_zones"] == sum(b for b in result.bins_analysis["counts"])


def test_flat_and_nested_inputs_agree_and_bad_shapes_fail() -> None:
    nested = dome()
    flat = [v for row in nested for v in row]
    ones = [5] * 64
    from_flat = analyse_tof(flat, [45.0] * 64, [1200] * 64, ones, SENSOR_HEIGHT)
    assert from_flat.volume_mm3 == analyse(nested).volume_mm3
    with pytest.raises(ValueError, match="8x8"):
        analyse_tof([[250.0] * 7] * 8, [[45.0] * 8] * 8, [[1] * 8] * 8, [[5] * 8] * 8, SENSOR_HEIGHT)


def test_dents_make_the_surface_irregular() -> None:
    smooth = analyse(dome())
    dented = dome()
    for r, c in ((3, 3), (4, 2)):
        dented[r][c] += 16.0  # 16 mm deeper than the dome there
    result = analyse(dented)
    assert result.surface_uniformity < smooth.surface_uniformity
    assert "surface_irregular" in result.defects
    assert result.grade in ("C", "REJECT")


def test_isolated_spike_is_a_foreign_object() -> None:
    distances = dome()
    distances[0][7] -= 28.0  # a 28 mm object on the bare tray corner
    result = analyse(distances)
    assert "foreign_object" in result.defects
    assert result.grade == "REJECT"


def test_zones_without_target_are_ignored_and_reported() -> None:
    status = [[5] * 8 for _ in range(8)]
    distances = dome()
    for c in range(8):
        status[0][c] = 255
        distances[0][c] = 0.0  # meaningless value of a no-target zone
    result = analyse(distances, status)
    assert "missing_zones" in result.defects
    assert result.bins_analysis["valid_zones"] == 56
    assert result.volume_mm3 == pytest.approx(analyse(dome()).volume_mm3, rel=0.01)


def test_fresh_spectrum_is_grade_a_without_defects() -> None:
    result = analyse_spectrum(FRESH, ATIME, ASTEP, GAIN)
    assert result.defects == []
    assert result.grade == "A"
    assert result.freshness_index > 0.9
    assert result.oxidation_index < 0.1
    assert result.spectral_analysis["full_scale"] == 18000


@pytest.mark.parametrize("channel", ["Clear", "F6_590nm"])
def test_saturated_channel_is_flagged(channel: str) -> None:
    counts = dict(FRESH, **{channel: 18000})
    result = analyse_spectrum(counts, ATIME, ASTEP, GAIN)
    assert "saturated_channel" in result.defects
    assert result.saturated_channels == [channel]
    assert result.grade != "A"


def test_saturation_uses_the_65535_cap_for_long_integrations() -> None:
    # (100+1) * (999+1) = 101000 steps, but a channel register holds at most 65535.
    counts = dict(FRESH, Clear=65535)
    assert analyse_spectrum(counts, 100, 999, 4).saturated_channels == ["Clear"]
    assert analyse_spectrum(dict(FRESH, Clear=65534), 100, 999, 4).saturated_channels == []


def test_blood_spot_spectrum_is_detected() -> None:
    # Haemoglobin absorbs at 555 nm but not at 630/680 nm: both red/green ratios jump.
    blood = dict(FRESH, F1_415nm=106, F4_515nm=2283, F5_555nm=1661, F6_590nm=2639, F7_630nm=4778, F8_680nm=4245)
    result = analyse_spectrum(blood, ATIME, ASTEP, GAIN)
    assert "blood_spot" in result.defects
    assert result.spectral_analysis["ratio_630_555"] > 2.5
    assert result.grade == "REJECT"
    assert result.freshness_index < analyse_spectrum(FRESH, ATIME, ASTEP, GAIN).freshness_index


def test_mild_blood_is_graded_down_not_rejected() -> None:
    mild = dict(FRESH, F5_555nm=2600, F4_515nm=3000)
    result = analyse_spectrum(mild, ATIME, ASTEP, GAIN)
    assert "blood_spot" in result.defects
    assert result.grade == "C"


def test_yellowing_is_detected_from_depleted_blue() -> None:
    yellow = dict(FRESH, F1_415nm=233, F2_445nm=708, F3_480nm=1554, F4_515nm=3067, F5_555nm=4424)
    result = analyse_spectrum(yellow, ATIME, ASTEP, GAIN)
    assert "yellowing" in result.defects
    assert "blood_spot" not in result.defects
    assert result.oxidation_index > 0.4
    assert result.grade in ("C", "REJECT")


def test_weak_signal_is_flagged() -> None:
    dark = {name: max(1, value // 100) for name, value in FRESH.items()}
    assert "low_signal" in analyse_spectrum(dark, ATIME, ASTEP, GAIN).defects


def test_fusion_takes_the_worst_grade_and_the_union_of_defects() -> None:
    tof = analyse(dome())
    spectral = analyse_spectrum(
        dict(FRESH, F5_555nm=1661, F7_630nm=4778, F8_680nm=4245, F4_515nm=2283), ATIME, ASTEP, GAIN
    )
    result = fuse(tof, spectral)
    assert tof.grade == "A"
    assert result.final_grade == spectral.grade == "REJECT"
    assert result.final_score < 0.55
    assert result.defects == sorted(set(tof.defects) | set(spectral.defects))
    assert result.vl53l8ch_score == tof.quality_score


def test_fusion_confidence_drops_with_a_saturated_measurement() -> None:
    tof = analyse(dome())
    clean = fuse(tof, analyse_spectrum(FRESH, ATIME, ASTEP, GAIN))
    saturated = fuse(tof, analyse_spectrum(dict(FRESH, Clear=18000), ATIME, ASTEP, GAIN))
    assert clean.final_grade == "A"
    assert saturated.confidence < clean.confidence - 0.2
    assert "saturated_channel" in saturated.defects
