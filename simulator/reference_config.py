"""The reference system's `config_foiegras.yaml` (`default_profile` + `profiles:`), read into a native profile.

The reference simulator loads one named profile of that file (`default_profile`, else
`foiegras_standard_barquette`). Its keys map onto the physical models here as follows (simulator/README.md):

- `sensor_vl53l8ch.resolution` must be 8; `height_mm` is the sensor height, raised when the 45° field of view would
  not hold the container (or the product and its margin): a 300 mm container → 363 mm, the reference's 37.5 mm zones.
- `product.length_mm` / `width_mm` are the largest lobe; `margin_percent` below that is the lobe-size spread.
- `sensor_as7341.integration_time_ms` becomes ATIME/ASTEP (2.78 µs steps, ASTEP 599 when ATIME fits); `gain` stays.
- `quality.<class>`: `weight`; `fat_quality` → fat; `oxidation_level` → oxidation; `freshness` → blood
  (0.4 × (1 − freshness)); `thickness_variation` (mm) → surface roughness; the `{min, max}` of each is the range.
  A profile without `quality` takes the lot mix of the bundled standard profile.
- Not simulated (read, then ignored): `container.height_mm`, `n_bins`, `bin_size_mm`, `noise_std`, `product.type`,
  `defects`, the per-class `temperature` / `ambient_light` / `surface_uniformity`, and the top-level sections other
  than `default_profile` and `profiles`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

FOV_DEG = 45.0
ATIME_STEP_MS = 2.78 / 1000
DEFAULT_ASTEP = 599
BLOOD_PER_FRESHNESS_LOSS = 0.4
DEFAULT_VOLUME_SCALE = [0.9, 1.1]


class ReferenceConfigError(ValueError):
    """A reference configuration key is missing or unusable here."""


def is_reference_config(data: Any) -> bool:
    """True for a mapping shaped like the reference `config_foiegras.yaml` (a `profiles:` section)."""
    return isinstance(data, dict) and isinstance(data.get("profiles"), dict)


def _mapping(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ReferenceConfigError(f"{where}.{key}: expected a mapping")
    return value


def _number(data: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = data.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ReferenceConfigError(f"{where}.{key}: expected a positive number")
    return float(value)


def registers_for(integration_time_ms: float) -> tuple[int, int]:
    """(ATIME, ASTEP) whose integration time is closest to `integration_time_ms`."""
    steps = max(1, round(integration_time_ms / ATIME_STEP_MS))
    atime = round(steps / (DEFAULT_ASTEP + 1)) - 1
    if 0 <= atime <= 255:
        return atime, DEFAULT_ASTEP
    if atime < 0:
        return 0, min(65534, steps - 1)
    return 255, min(65534, round(steps / 256) - 1)


def _tof(entry: dict[str, Any], where: str) -> dict[str, Any]:
    sensor = _mapping(entry, "sensor_vl53l8ch", where)
    product = _mapping(entry, "product", where)
    container = _mapping(entry, "container", where)
    if sensor.get("resolution", 8) != 8:
        raise ReferenceConfigError(f"{where}.sensor_vl53l8ch.resolution: only 8 (8x8 zones) is simulated")
    length = _number(product, "length_mm", f"{where}.product")
    width = _number(product, "width_mm", f"{where}.product")
    spread = 1 - _number(product, "margin_percent", f"{where}.product", 15.0) / 100
    field = length * (2 - spread)  # without a barquette: the product and its margin
    if container.get("enabled"):
        field = _number(container, "length_mm", f"{where}.container")
    needed = field / (2 * math.tan(math.radians(FOV_DEG) / 2))
    height = max(_number(sensor, "height_mm", f"{where}.sensor_vl53l8ch"), math.ceil(needed))
    return {
        "sensor_height_mm": height,
        "fov_deg": FOV_DEG,
        "lobe_length_mm": [round(length * spread, 1), length],
        "lobe_width_mm": [round(width * spread, 1), width],
    }


def _spectral(entry: dict[str, Any], where: str) -> dict[str, Any]:
    sensor = _mapping(entry, "sensor_as7341", where)
    if sensor and not sensor.get("enabled", True):
        raise ReferenceConfigError(f"{where}.sensor_as7341.enabled: the AS7341 is always simulated")
    atime, astep = registers_for(_number(sensor, "integration_time_ms", f"{where}.sensor_as7341", 100.0))
    return {"atime": atime, "astep": astep, "gain": sensor.get("gain", 4)}


def _range(spec: dict[str, Any], key: str, where: str) -> list[float]:
    bounds = _mapping(spec, key, where)
    low, high = bounds.get("min"), bounds.get("max")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise ReferenceConfigError(f"{where}.{key}: expected min and max numbers")
    return [float(low), float(high)]  # type: ignore[arg-type]


def _classes(quality: dict[str, Any], where: str) -> dict[str, Any]:
    classes = {}
    for name, spec in quality.items():
        at = f"{where}.quality.{name}"
        if not isinstance(spec, dict):
            raise ReferenceConfigError(f"{at}: expected a mapping")
        fresh_low, fresh_high = _range(spec, "freshness", at)
        classes[str(name)] = {
            "weight": spec.get("weight"),
            "fat": _range(spec, "fat_quality", at),
            "oxidation": _range(spec, "oxidation_level", at),
            "blood": [
                round(BLOOD_PER_FRESHNESS_LOSS * (1 - fresh_high), 4),
                round(BLOOD_PER_FRESHNESS_LOSS * (1 - fresh_low), 4),
            ],
            "volume_scale": DEFAULT_VOLUME_SCALE,
            "roughness_mm": _range(spec, "thickness_variation", at),
        }
    return classes


def native_profile(data: dict[str, Any], standard_profile: Path) -> dict[str, Any]:
    """The native profile mapping (profiles/*.yaml keys) of the reference file's selected profile."""
    name = data.get("default_profile") or "foiegras_standard_barquette"
    profiles = data["profiles"]
    if name not in profiles:
        raise ReferenceConfigError(f"default_profile {name!r} is not in profiles ({', '.join(map(str, profiles))})")
    entry = profiles[name]
    where = f"profiles.{name}"
    if not isinstance(entry, dict):
        raise ReferenceConfigError(f"{where}: expected a mapping")
    quality = _mapping(entry, "quality", where)
    if quality:
        lot_mix = {"classes": _classes(quality, where)}
    else:
        lot_mix = yaml.safe_load(standard_profile.read_text(encoding="utf-8"))["lot_mix"]
    return {
        "name": name,
        "description": str(entry.get("description", "")),
        "vl53l8ch": _tof(entry, where),
        "as7341": _spectral(entry, where),
        "lot_mix": lot_mix,
    }
