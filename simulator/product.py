"""The product under the sensors: drawn from a profile's lot mix (commercial class + injected defects)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator.profile import Profile, QualityClass


@dataclass(frozen=True)
class ProductCondition:
    """Physical state of one liver lobe, the input of both sensor models."""

    quality_class: str
    fat: float
    oxidation: float
    blood: float
    volume_scale: float
    roughness_mm: float
    defects: frozenset[str]


def _pick_class(rng: random.Random, classes: tuple[QualityClass, ...]) -> QualityClass:
    total = sum(c.weight for c in classes)
    point = rng.random() * total
    for quality_class in classes:
        point -= quality_class.weight
        if point < 0:
            return quality_class
    return classes[-1]


def draw_condition(rng: random.Random, profile: Profile) -> ProductCondition:
    """Draw the next lobe: a class of the lot mix, then each defect with its profile probability."""
    cls = _pick_class(rng, profile.classes)
    defects = frozenset(kind for kind, rate in profile.defect_rates.items() if rng.random() < rate)
    fat = rng.uniform(*cls.fat)
    oxidation = rng.uniform(*cls.oxidation)
    blood = rng.uniform(*cls.blood)
    volume_scale = rng.uniform(*cls.volume_scale)
    roughness = rng.uniform(*cls.roughness_mm)
    if "blood_spot" in defects:
        blood = max(blood, rng.uniform(0.45, 1.0))
    if "yellowing" in defects:
        oxidation = max(oxidation, rng.uniform(0.4, 0.85))
    if "low_volume" in defects:
        volume_scale = min(volume_scale, rng.uniform(0.3, 0.55))
    return ProductCondition(
        quality_class=cls.name,
        fat=fat,
        oxidation=oxidation,
        blood=blood,
        volume_scale=volume_scale,
        roughness_mm=roughness,
        defects=defects,
    )
