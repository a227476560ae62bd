"""AS7341 model: raw counts of 10 channels from a reflectance model of fatty duck liver under a white LED."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from simulator.noise import GaussianTable
from simulator.product import ProductCondition
from simulator.profile import SpectralSetup

CHANNELS = (
    "F1_415nm",
    "F2_445nm",
    "F3_480nm",
    "F4_515nm",
    "F5_555nm",
    "F6_590nm",
    "F7_630nm",
    "F8_680nm",
    "Clear",
    "NIR",
)
# Per-band tables below cover F1..F8 then NIR (Clear is broadband, derived from the visible bands).
BANDS = 9
# Reflectance of a pale, fat-rich lobe and of a lean (pink-brown) liver.
REFLECTANCE_FAT = (0.30, 0.38, 0.45, 0.52, 0.56, 0.62, 0.66, 0.68, 0.70)
REFLECTANCE_LEAN = (0.12, 0.14, 0.16, 0.18, 0.17, 0.25, 0.40, 0.45, 0.55)
# Relative absorption of haemoglobin (Soret band at 415 nm, Q bands at 540-580 nm).
HAEMOGLOBIN_ABSORPTION = (1.0, 0.35, 0.18, 0.30, 0.55, 0.35, 0.04, 0.02, 0.01)
HAEMOGLOBIN_DEPTH = 2.5
# Relative absorption of lipid oxidation products (yellow-brown pigments absorb blue).
OXIDATION_ABSORPTION = (1.0, 0.8, 0.55, 0.25, 0.08, 0.03, 0.01, 0.0, 0.0)
OXIDATION_DEPTH = 2.0
# LED emission x photodiode response, relative to F5; the calibration of a white reference.
SENSITIVITY = (0.30, 0.55, 0.75, 0.90, 1.00, 0.95, 0.85, 0.70, 0.45)
CLEAR_WEIGHT = 0.42
COUNTS_PER_GAIN_MS = 3.0
STEP_US = 2.78
GLINT_FACTOR = (3.5, 5.0)


@dataclass(frozen=True)
class SpectralReading:
    """Raw AS7341 output plus the register values it was taken with."""

    channels: dict[str, int]
    atime: int
    astep: int
    integration_time_ms: int
    gain: float


def full_scale(atime: int, astep: int) -> int:
    """Largest count a channel can report: min(65535, (ATIME+1)(ASTEP+1))."""
    return min(65535, (atime + 1) * (astep + 1))


def integration_time_ms(atime: int, astep: int) -> float:
    """Integration time (ms) of an ATIME/ASTEP pair: (ATIME+1)(ASTEP+1) x 2.78 us."""
    return (atime + 1) * (astep + 1) * STEP_US / 1000.0


def tissue_reflectance(fat: float, blood: float, oxidation: float) -> list[float]:
    """Reflectance per band (F1..F8, NIR) of liver tissue with the given fat, blood and oxidation levels."""
    result = []
    for band in range(BANDS):
        base = REFLECTANCE_LEAN[band] + fat * (REFLECTANCE_FAT[band] - REFLECTANCE_LEAN[band])
        absorption = (
            HAEMOGLOBIN_DEPTH * blood * HAEMOGLOBIN_ABSORPTION[band]
            + OXIDATION_DEPTH * oxidation * OXIDATION_ABSORPTION[band]
        )
        result.append(base * math.exp(-absorption))
    return result


def simulate_spectrum(
    rng: random.Random, noise: GaussianTable, setup: SpectralSetup, cond: ProductCondition
) -> SpectralReading:
    """One AS7341 read of the lobe: counts = reflectance x sensitivity x gain x time, shot noise, clipping."""
    reflectance = tissue_reflectance(cond.fat, cond.blood, cond.oxidation)
    time_ms = integration_time_ms(setup.atime, setup.astep)
    scale = COUNTS_PER_GAIN_MS * setup.gain * time_ms * rng.gauss(1.0, 0.01)
    if "saturated_channel" in cond.defects:
        # Specular glint off the wet surface floods the photodiodes.
        scale *= rng.uniform(*GLINT_FACTOR)
    shot = noise.block(rng, len(CHANNELS))
    signal = [reflectance[b] * SENSITIVITY[b] * scale for b in range(BANDS)]
    clear = CLEAR_WEIGHT * sum(signal[:8])
    ceiling = full_scale(setup.atime, setup.astep)
    channels: dict[str, int] = {}
    for index, mean in enumerate((*signal[:8], clear, signal[8])):
        noisy = mean + shot[index] * (math.sqrt(mean) * 0.6 + 3.0)
        name = CHANNELS[index]
        channels[name] = min(ceiling, max(0, round(noisy)))
    return SpectralReading(
        channels=channels,
        atime=setup.atime,
        astep=setup.astep,
        integration_time_ms=round(time_ms),
        gain=setup.gain,
    )
