"""Builds complete `sensor_data` frames: sensor models -> analysers -> fusion -> JSON text."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simulator.fusion import fuse
from simulator.noise import GaussianTable
from simulator.product import draw_condition
from simulator.profile import Profile
from simulator.spectral_analysis import analyse_spectrum
from simulator.spectral_model import simulate_spectrum
from simulator.tof_analysis import TofLimits, analyse_tof
from simulator.tof_model import GRID, simulate_tof


@dataclass(frozen=True)
class Sample:
    """One generated sample, ready for the outbox."""

    device_id: str
    seq: int
    sample_id: str
    payload: str
    grade: str


def make_sample_id(when: datetime, seq: int) -> str:
    """`SAMPLE-YYYYMMDD-HHMMSS-NNNN`: UTC time of the sample and the device seq (>= 4 digits)."""
    return f"SAMPLE-{when:%Y%m%d-%H%M%S}-{seq:04d}"


def format_timestamp(when: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a `Z` zone."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _matrix(flat: list[Any]) -> list[list[Any]]:
    return [flat[row * GRID : (row + 1) * GRID] for row in range(GRID)]


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def device_rng(seed: int | None, device_id: str) -> random.Random:
    """Per-device generator: a given seed gives each device the same sample content on every run."""
    return random.Random(f"{seed}:{device_id}") if seed is not None else random.Random()


class SampleGenerator:
    """Generates the samples of one device from a profile; deterministic for a given rng state."""

    def __init__(
        self,
        device_id: str,
        profile: Profile,
        rng: random.Random,
        pool: int = 0,
        noise: GaussianTable | None = None,
    ) -> None:
        self.device_id = device_id
        self.profile = profile
        self.rng = rng
        self.pool_size = pool
        self._pool: list[tuple[str, str]] = []
        self._device_json = json.dumps(device_id)
        self._clock: tuple[int, str, str] = (-1, "", "")
        # Without a shared table, draw one from the device's rng so the generator stays deterministic for its seed.
        self.noise = noise if noise is not None else GaussianTable(random.Random(rng.getrandbits(64)))
        env = profile.environment
        self._temperature = rng.gauss(*env.temperature_c)
        self._humidity = rng.gauss(*env.humidity_percent)
        tof = profile.tof
        self._tof_limits = TofLimits(fov_deg=tof.fov_deg, target_volume_mm3=tof.target_volume_mm3)

    def sensor_sections(self) -> dict[str, Any]:
        """The `vl53l8ch`, `as7341`, `fusion` and `meta` sections of a new sample."""
        rng, profile = self.rng, self.profile
        condition = draw_condition(rng, profile)
        tof = simulate_tof(rng, self.noise, profile.tof, condition)
        spectrum = simulate_spectrum(rng, self.noise, profile.spectral, condition)
        height = profile.tof.sensor_height_mm
        tof_result = analyse_tof(
            tof.distance_mm, tof.reflectance_percent, tof.amplitude, tof.target_status, height, self._tof_limits
        )
        spectral_result = analyse_spectrum(spectrum.channels, spectrum.atime, spectrum.astep, spectrum.gain)
        fusion = fuse(tof_result, spectral_result)
        # Ambient conditions drift slowly, back towards the line's mean.
        env = profile.environment
        self._temperature += 0.1 * (env.temperature_c[0] - self._temperature) + rng.gauss(0.0, 0.05)
        self._humidity += 0.1 * (env.humidity_percent[0] - self._humidity) + rng.gauss(0.0, 0.2)
        return {
            "vl53l8ch": {
                "distance_matrix": _matrix(tof.distance_mm),
                "reflectance_matrix": _matrix(tof.reflectance_percent),
                "amplitude_matrix": _matrix(tof.amplitude),
                "target_status_matrix": _matrix(tof.target_status),
                "sensor_height_mm": _number(height),
                **tof_result.frame_fields(),
            },
            "as7341": {
                "channels": spectrum.channels,
                "atime": spectrum.atime,
                "astep": spectrum.astep,
                "integration_time": spectrum.integration_time_ms,
                "gain": _number(spectrum.gain),
                **spectral_result.frame_fields(),
            },
            "fusion": fusion.frame_fields(),
            "meta": {
                "firmware_version": profile.firmware_version,
                "temperature_c": round(min(125.0, max(-40.0, self._temperature)), 2),
                "humidity_percent": round(min(100.0, max(0.0, self._humidity)), 1),
                "config_profile": profile.name,
                # Modelled ESP32 analysis time (the host's time would say nothing about the device).
                "processing_time_ms": round(max(5.0, rng.gauss(24.0, 3.0)), 2),
            },
        }

    def frame(self, seq: int, when: datetime) -> dict[str, Any]:
        """A complete `sensor_data` frame as a dict."""
        return {
            "type": "sensor_data",
            "timestamp": format_timestamp(when),
            "device_id": self.device_id,
            "sample_id": make_sample_id(when, seq),
            "seq": seq,
            **self.sensor_sections(),
        }

    def _encoded_sections(self) -> tuple[str, str]:
        """The sensor sections as a JSON fragment (no braces) and the final grade."""
        sections = self.sensor_sections()
        text = json.dumps(sections, separators=(",", ":"), allow_nan=False)
        return text[1:-1], sections["fusion"]["final_grade"]

    def _time_texts(self, when: datetime) -> tuple[str, str]:
        """ISO timestamp and sample-id time part; strftime runs once per second, not once per sample."""
        second = int(when.timestamp())
        if second != self._clock[0]:
            self._clock = (second, when.strftime("%Y-%m-%dT%H:%M:%S."), when.strftime("%Y%m%d-%H%M%S"))
        return f"{self._clock[1]}{when.microsecond // 1000:03d}Z", self._clock[2]

    def next_sample(self, seq: int, when: datetime | None = None) -> Sample:
        """Sample number `seq` taken at `when` (now by default), encoded as compact JSON.

        With a pool, the first `pool` samples are fully simulated and later ones reuse one of them at random
        with a new timestamp, seq and sample_id: load tests then cost almost nothing per sample.
        """
        moment = (when if when is not None else datetime.now(UTC)).astimezone(UTC)
        if not self.pool_size:
            fragment, grade = self._encoded_sections()
        elif len(self._pool) < self.pool_size:
            fragment, grade = self._encoded_sections()
            self._pool.append((fragment, grade))
        else:
            fragment, grade = self._pool[int(self.rng.random() * self.pool_size)]
        timestamp, id_time = self._time_texts(moment)
        sample_id = f"SAMPLE-{id_time}-{seq:04d}"
        payload = (
            f'{{"type":"sensor_data","timestamp":"{timestamp}","device_id":{self._device_json},'
            f'"sample_id":"{sample_id}","seq":{seq},{fragment}}}'
        )
        return Sample(self.device_id, seq, sample_id, payload, grade)
