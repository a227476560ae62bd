"""The reference `config_foiegras.yaml` format: its keys drive the models; what cannot be simulated is refused."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.profile import PROFILES_DIR, ProfileError, load_profile
from simulator.reference_config import registers_for

SHIPPED = PROFILES_DIR / "config_foiegras.yaml"
STANDARD = load_profile("foiegras_standard_barquette")


def shipped() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    return data


def load(tmp_path: Path, data: dict[str, Any]) -> Any:
    path = tmp_path / "config_foiegras.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_profile(str(path))


def test_the_shipped_file_maps_onto_the_models() -> None:
    profile = load_profile("config_foiegras.yaml")  # CONFIG_PATH as the reference guide writes it
    assert profile.name == "foiegras_standard_barquette"
    assert profile.tof.sensor_height_mm == 363  # 45° field of view holding the 300 mm barquette
    assert (profile.tof.lobe_length_mm, profile.tof.lobe_width_mm) == ((161.5, 190.0), (89.2, 105.0))
    assert (profile.spectral.atime, profile.spectral.astep, profile.spectral.gain) == (59, 599, 4)
    classes = {c.name: c for c in profile.classes}
    assert list(classes) == ["premium", "good", "acceptable", "low", "defective"]
    assert classes["good"].weight == 0.40
    assert classes["good"].fat == (0.75, 0.90)
    assert classes["good"].oxidation == (0.04, 0.15)
    assert classes["good"].blood == (0.02, 0.08)  # 0.4 × (1 − freshness)
    assert classes["defective"].roughness_mm == (2.5, 5.0)


def test_a_reference_file_with_its_other_sections_and_keys_loads(tmp_path: Path) -> None:
    data = shipped()
    data["quality_references"] = {"dimensional": {"thickness_categories": {"extra": {"min_mm": 45}}}}
    data["visualization"] = {"style": "surface"}
    data["global_defaults"] = {"random_seed": None}
    premium = data["profiles"]["foiegras_standard_barquette"]["quality"]["premium"]
    premium["temperature"] = {"min": 19.0, "max": 21.0, "mean": 20.0}
    premium["surface_uniformity"] = {"min": 0.85, "max": 0.98, "mean": 0.92}
    bare = copy.deepcopy(data["profiles"]["foiegras_standard_barquette"])
    del bare["quality"]
    bare["container"] = {"enabled": False}
    bare["sensor_vl53l8ch"]["height_mm"] = 100
    data["profiles"]["foiegras_standard_seul"] = bare
    assert load(tmp_path, data).name == "foiegras_standard_barquette"
    data["default_profile"] = "foiegras_standard_seul"
    profile = load(tmp_path, data)
    assert profile.name == "foiegras_standard_seul"
    assert profile.classes == STANDARD.classes  # no `quality`: the standard lot mix
    assert profile.tof.sensor_height_mm == 264  # no barquette: product + margin (218.5 mm) in view


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (("sensor_vl53l8ch", "resolution"), 16, "sensor_vl53l8ch.resolution: only 8"),
        (("sensor_as7341", "enabled"), False, "the AS7341 is always simulated"),
        (("sensor_as7341", "gain"), 3, "as7341.gain must be one of"),
        (("product", "length_mm"), -5, "product.length_mm: expected a positive number"),
        (("quality", "low", "fat_quality"), {"min": 0.5}, "quality.low.fat_quality: expected min and max"),
    ],
)
def test_what_cannot_be_simulated_is_a_profile_error_naming_the_key(
    tmp_path: Path, key: tuple[str, ...], value: Any, message: str
) -> None:
    data = shipped()
    target = data["profiles"]["foiegras_standard_barquette"]
    for part in key[:-1]:
        target = target[part]
    target[key[-1]] = value
    with pytest.raises(ProfileError, match=message):
        load(tmp_path, data)


def test_an_unknown_default_profile_lists_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"'foiegras_export' is not in profiles \(foiegras_standard_barquette\)"):
        load(tmp_path, {**shipped(), "default_profile": "foiegras_export"})


@pytest.mark.parametrize(("ms", "registers"), [(50, (29, 599)), (100, (59, 599)), (500, (255, 702)), (0.5, (0, 179))])
def test_integration_time_becomes_the_closest_registers(ms: float, registers: tuple[int, int]) -> None:
    assert registers_for(ms) == registers
    atime, astep = registers
    assert abs((atime + 1) * (astep + 1) * 2.78 / 1000 - ms) < 0.01 * ms + 0.01
