"""Line profiles: sensor set-up and lot mix, loaded from YAML files in `simulator/profiles/`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simulator.reference_config import ReferenceConfigError, is_reference_config, native_profile

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = "foiegras_standard_barquette"

Range = tuple[float, float]

DEFECT_KINDS = (
    "blood_spot",
    "yellowing",
    "surface_irregular",
    "low_volume",
    "foreign_object",
    "saturated_channel",
    "missing_zones",
)
VALID_GAINS = (0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ProfileError(ValueError):
    """A profile file is missing or malformed."""


@dataclass(frozen=True)
class QualityClass:
    """One commercial class of the lot: ranges the product parameters are drawn from."""

    name: str
    weight: float
    fat: Range
    oxidation: Range
    blood: Range
    volume_scale: Range
    roughness_mm: Range


@dataclass(frozen=True)
class TofSetup:
    """VL53L8CH mounting and product geometry."""

    sensor_height_mm: float = 250.0
    fov_deg: float = 45.0
    noise_mm: float = 1.5
    tray_reflectance_percent: float = 70.0
    liver_reflectance_percent: float = 43.0
    no_target_probability: float = 0.002
    lobe_length_mm: Range = (140.0, 175.0)
    lobe_width_mm: Range = (90.0, 115.0)
    lobe_height_mm: Range = (40.0, 55.0)
    target_volume_mm3: Range = (250_000.0, 600_000.0)


@dataclass(frozen=True)
class SpectralSetup:
    """AS7341 register set-up."""

    atime: int = 29
    astep: int = 599
    gain: float = 64


@dataclass(frozen=True)
class Environment:
    """Ambient conditions of the line (mean, standard deviation)."""

    temperature_c: Range = (16.0, 1.5)
    humidity_percent: Range = (62.0, 6.0)


@dataclass(frozen=True)
class Profile:
    """Everything the generator needs for one production line set-up."""

    name: str
    description: str
    firmware_version: str
    tof: TofSetup
    spectral: SpectralSetup
    environment: Environment
    classes: tuple[QualityClass, ...]
    defect_rates: dict[str, float] = field(default_factory=dict)


def _range(value: Any, where: str) -> Range:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise ProfileError(f"{where}: expected a [low, high] pair of numbers, got {value!r}")
    low, high = float(value[0]), float(value[1])
    return (low, high)


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ProfileError(f"{key}: expected a mapping")
    return value


def _build_tof(raw: dict[str, Any]) -> TofSetup:
    defaults = TofSetup()
    kwargs: dict[str, Any] = {}
    for name, default in vars(defaults).items():
        if name not in raw:
            continue
        if isinstance(default, tuple):
            kwargs[name] = _range(raw[name], f"vl53l8ch.{name}")
        elif isinstance(raw[name], int | float) and not isinstance(raw[name], bool):
            kwargs[name] = float(raw[name])
        else:
            raise ProfileError(f"vl53l8ch.{name}: expected a number")
    unknown = set(raw) - set(vars(defaults))
    if unknown:
        raise ProfileError(f"vl53l8ch: unknown keys {sorted(unknown)}")
    return TofSetup(**kwargs)


def _build_spectral(raw: dict[str, Any]) -> SpectralSetup:
    setup = SpectralSetup(
        atime=int(raw.get("atime", SpectralSetup.atime)),
        astep=int(raw.get("astep", SpectralSetup.astep)),
        gain=float(raw.get("gain", SpectralSetup.gain)),
    )
    if not 0 <= setup.atime <= 255 or not 0 <= setup.astep <= 65534:
        raise ProfileError("as7341: atime must be 0-255 and astep 0-65534")
    if setup.gain not in VALID_GAINS:
        raise ProfileError(f"as7341.gain must be one of {VALID_GAINS}")
    return setup


def _build_classes(raw: dict[str, Any]) -> tuple[QualityClass, ...]:
    if not raw:
        raise ProfileError("lot_mix.classes: at least one class is required")
    classes = []
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise ProfileError(f"lot_mix.classes.{name}: expected a mapping")
        where = f"lot_mix.classes.{name}"
        weight = spec.get("weight")
        if not isinstance(weight, int | float) or weight < 0:
            raise ProfileError(f"{where}.weight: expected a number >= 0")
        classes.append(
            QualityClass(
                name=str(name),
                weight=float(weight),
                fat=_range(spec.get("fat"), f"{where}.fat"),
                oxidation=_range(spec.get("oxidation"), f"{where}.oxidation"),
                blood=_range(spec.get("blood"), f"{where}.blood"),
                volume_scale=_range(spec.get("volume_scale"), f"{where}.volume_scale"),
                roughness_mm=_range(spec.get("roughness_mm"), f"{where}.roughness_mm"),
            )
        )
    if sum(c.weight for c in classes) <= 0:
        raise ProfileError("lot_mix.classes: weights must not all be 0")
    return tuple(classes)


def _build_defects(raw: dict[str, Any]) -> dict[str, float]:
    rates = {}
    for name, rate in raw.items():
        if name not in DEFECT_KINDS:
            raise ProfileError(f"lot_mix.defects.{name}: unknown defect (known: {', '.join(DEFECT_KINDS)})")
        if not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ProfileError(f"lot_mix.defects.{name}: expected a probability 0-1")
        rates[name] = float(rate)
    return rates


def parse_profile(data: Any, name: str) -> Profile:
    """Build a Profile from the parsed YAML mapping, raising ProfileError with the faulty key."""
    if not isinstance(data, dict):
        raise ProfileError(f"profile {name}: expected a mapping at the top level")
    lot_mix = _section(data, "lot_mix")
    env = _section(data, "environment")
    return Profile(
        name=str(data.get("name", name)),
        description=str(data.get("description", "")),
        firmware_version=str(data.get("firmware_version", "1.0.0")),
        tof=_build_tof(_section(data, "vl53l8ch")),
        spectral=_build_spectral(_section(data, "as7341")),
        environment=Environment(
            temperature_c=_range(env.get("temperature_c", [16.0, 1.5]), "environment.temperature_c"),
            humidity_percent=_range(env.get("humidity_percent", [62.0, 6.0]), "environment.humidity_percent"),
        ),
        classes=_build_classes(_section(lot_mix, "classes")),
        defect_rates=_build_defects(_section(lot_mix, "defects")),
    )


def resolve_profile_path(name_or_path: str) -> Path:
    """A bare name is looked up in simulator/profiles/ (`.yaml` optional); anything else is a path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    bundled = PROFILES_DIR / f"{candidate.stem if candidate.suffix else name_or_path}.yaml"
    if bundled.exists():
        return bundled
    if candidate.exists():
        return candidate
    available = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
    raise ProfileError(f"profile {name_or_path!r} not found (bundled profiles: {available})")


def load_profile(name_or_path: str = DEFAULT_PROFILE) -> Profile:
    """Load a bundled profile by name, or a YAML file by path; either may be a reference `config_foiegras.yaml`
    (its `default_profile` is loaded, see simulator/reference_config.py)."""
    path = resolve_profile_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if is_reference_config(data):
            data = native_profile(data, PROFILES_DIR / f"{DEFAULT_PROFILE}.yaml")
            return parse_profile(data, data["name"])
    except (OSError, yaml.YAMLError, ReferenceConfigError) as exc:
        raise ProfileError(f"profile {path}: {exc}") from exc
    return parse_profile(data, path.stem)
