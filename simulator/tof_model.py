"""VL53L8CH time-of-flight model: an 8x8 zone grid looking down on a tray holding a liver lobe."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulator.noise import GaussianTable
from simulator.product import ProductCondition
from simulator.profile import TofSetup

GRID = 8
ZONES = GRID * GRID
STATUS_VALID = 5
STATUS_NO_TARGET = 255
MAX_RANGE_MM = 4000.0
# Signal per SPAD (kcps) of a 100 % reflector at 200 mm; falls with distance squared.
AMPLITUDE_AT_200MM = 3000.0
FOREIGN_OBJECT_REFLECTANCE = 86.0
DOME_EXPONENT = 0.6


@dataclass(frozen=True)
class TofReading:
    """Raw readings, each a flat row-major list of 64 zones."""

    distance_mm: list[int]
    reflectance_percent: list[float]
    amplitude: list[int]
    target_status: list[int]


def zone_pitch_mm(sensor_height_mm: float, fov_deg: float = 45.0) -> float:
    """Side of one zone's footprint on the tray floor."""
    return 2.0 * sensor_height_mm * math.tan(math.radians(fov_deg) / 2.0) / GRID


def _lobe_heights(
    rng: random.Random, noise: GaussianTable, setup: TofSetup, cond: ProductCondition, pitch: float
) -> list[float]:
    """Product height above the tray floor at each zone centre (0 where the tray is bare)."""
    scale = cond.volume_scale ** (1.0 / 3.0)
    semi_a = rng.uniform(*setup.lobe_length_mm) / 2.0 * scale
    semi_b = rng.uniform(*setup.lobe_width_mm) / 2.0 * scale
    peak = rng.uniform(*setup.lobe_height_mm) * scale
    angle = rng.gauss(0.0, 0.25)
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    centre = GRID * pitch / 2.0
    cx = centre + rng.gauss(0.0, 0.25 * pitch)
    cy = centre + rng.gauss(0.0, 0.25 * pitch)
    inv_a2, inv_b2 = 1.0 / (semi_a * semi_a), 1.0 / (semi_b * semi_b)
    bumps = noise.block(rng, ZONES)
    roughness = cond.roughness_mm
    heights = [0.0] * ZONES
    for row in range(GRID):
        dy = (row + 0.5) * pitch - cy
        for col in range(GRID):
            dx = (col + 0.5) * pitch - cx
            u = dx * cos_a + dy * sin_a
            v = dy * cos_a - dx * sin_a
            r2 = u * u * inv_a2 + v * v * inv_b2
            if r2 < 1.0:
                zone = row * GRID + col
                height = peak * (1.0 - r2) ** DOME_EXPONENT + roughness * bumps[zone]
                heights[zone] = height if height > 0.0 else 0.0
    if "surface_irregular" in cond.defects:
        _add_dents(rng, heights)
    return heights


def _add_dents(rng: random.Random, heights: list[float]) -> None:
    """Torn or bruised lobe: a few deep local dents (and the odd bump) well inside the lobe."""
    inside = [
        zone
        for zone in range(ZONES)
        if heights[zone] > 15.0
        and 0 < zone // GRID < GRID - 1
        and 0 < zone % GRID < GRID - 1
        and min(heights[zone - GRID], heights[zone + GRID], heights[zone - 1], heights[zone + 1]) > 5.0
    ]
    for zone in rng.sample(inside, k=min(len(inside), rng.randint(2, 4))):
        depth = rng.uniform(10.0, 18.0) if rng.random() < 0.75 else -rng.uniform(6.0, 9.0)
        heights[zone] = max(0.0, heights[zone] - depth)


def _status(rng: random.Random, setup: TofSetup, cond: ProductCondition) -> list[int]:
    status = [STATUS_VALID] * ZONES
    lost = rng.randint(6, 12) if "missing_zones" in cond.defects else 0
    # Chance that at least one of the 64 zones drops out, then one zone (two at once is negligible).
    if rng.random() < 1.0 - (1.0 - setup.no_target_probability) ** ZONES:
        lost += 1
    for zone in rng.sample(range(ZONES), k=lost):
        status[zone] = STATUS_NO_TARGET
    return status


def simulate_tof(rng: random.Random, noise: GaussianTable, setup: TofSetup, cond: ProductCondition) -> TofReading:
    """One VL53L8CH frame: distance = sensor height - product height + ranging noise."""
    height_mm = setup.sensor_height_mm
    pitch = zone_pitch_mm(height_mm, setup.fov_deg)
    heights = _lobe_heights(rng, noise, setup, cond, pitch)
    liver, tray = setup.liver_reflectance_percent, setup.tray_reflectance_percent
    # A zone only partly covered by the lobe's thin edge sees a mix of liver and tray.
    reflectance = [liver if h >= 8.0 else tray if h <= 0.0 else tray + (liver - tray) * h / 8.0 for h in heights]
    if "blood_spot" in cond.defects:
        product = [i for i, h in enumerate(heights) if h > 10.0]
        for zone in rng.sample(product, k=min(len(product), rng.randint(1, 2))):
            reflectance[zone] -= rng.uniform(14.0, 20.0)
    if "foreign_object" in cond.defects:
        zone = rng.randrange(ZONES)
        heights[zone] += rng.uniform(22.0, 35.0)
        reflectance[zone] = FOREIGN_OBJECT_REFLECTANCE

    status = _status(rng, setup, cond)
    range_noise, refl_noise, amp_noise = noise.block(rng, ZONES), noise.block(rng, ZONES), noise.block(rng, ZONES)
    # Ranging noise grows as the returned signal weakens (darker surface): sigma ~ 1/sqrt(reflectance).
    sigma_scale = setup.noise_mm * math.sqrt(tray)
    distances = [0] * ZONES
    reflect_out = [0.0] * ZONES
    amplitudes = [0] * ZONES
    for i in range(ZONES):
        if status[i] != STATUS_VALID:
            continue
        refl = reflectance[i]
        distance = height_mm - heights[i] + range_noise[i] * sigma_scale / math.sqrt(refl if refl > 5.0 else 5.0)
        distance = MAX_RANGE_MM if distance > MAX_RANGE_MM else 0.0 if distance < 0.0 else distance
        distances[i] = int(distance + 0.5)
        refl = refl + 0.6 * refl_noise[i]
        refl = 100.0 if refl > 100.0 else 0.0 if refl < 0.0 else refl
        reflect_out[i] = int(refl * 10.0 + 0.5) / 10.0
        ratio = 200.0 / (distance if distance > 10.0 else 10.0)
        amplitude = AMPLITUDE_AT_200MM * refl / 100.0 * ratio * ratio * (1.0 + 0.02 * amp_noise[i])
        amplitudes[i] = int(amplitude + 0.5) if amplitude > 0.0 else 0
    return TofReading(distances, reflect_out, amplitudes, status)
