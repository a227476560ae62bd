"""Generated frames: valid per docs/protocol.md, reproducible with a seed, believable lot mix."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from simulator.generator import SampleGenerator, device_rng
from simulator.profile import DEFECT_KINDS, PROFILES_DIR, ProfileError, load_profile, parse_profile
from tests.simulator.protocol_validator import validate_sample

SAMPLE_ID = re.compile(r"^SAMPLE-\d{8}-\d{6}-\d{4,}$")
BUNDLED = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
# Bundled files in the reference's format (simulator/reference_config.py) load their `default_profile`.
PROFILE_NAMES = {"config_foiegras": "foiegras_standard_barquette"}


def every_defect_profile() -> dict:
    """The standard profile with every injected defect at probability 1: exercises every model branch."""
    data = yaml.safe_load((PROFILES_DIR / "foiegras_standard_barquette.yaml").read_text())
    data["lot_mix"]["defects"] = dict.fromkeys(DEFECT_KINDS, 1.0)
    return data


def test_bundled_profiles_exist_and_load() -> None:
    assert "foiegras_standard_barquette" in BUNDLED
    assert len(BUNDLED) >= 2
    for name in BUNDLED:
        profile = load_profile(name)
        assert profile.name == PROFILE_NAMES.get(name, name)
        assert sum(c.weight for c in profile.classes) > 0


@pytest.mark.parametrize("name", BUNDLED)
def test_every_generated_frame_is_valid(name: str) -> None:
    profile = load_profile(name)
    generator = SampleGenerator("ESP32_LL_07", profile, random.Random(11))
    start = datetime.now(UTC)
    ids = set()
    for seq in range(1, 301):
        sample = generator.next_sample(seq, start + timedelta(milliseconds=seq * 7))
        frame = json.loads(sample.payload)
        assert validate_sample(frame, "ESP32_LL_07") == [], frame["sample_id"]
        assert frame["seq"] == seq == sample.seq
        assert frame["sample_id"] == sample.sample_id
        assert SAMPLE_ID.match(sample.sample_id)
        assert frame["fusion"]["final_grade"] == sample.grade
        assert frame["meta"]["config_profile"] == PROFILE_NAMES.get(name, name)
        ids.add(sample.sample_id)
    assert len(ids) == 300


def test_frames_with_every_defect_are_still_valid_and_flagged() -> None:
    profile = parse_profile(every_defect_profile(), "all_defects")
    generator = SampleGenerator("ESP32_LL_01", profile, random.Random(3))
    seen: Counter[str] = Counter()
    grades: Counter[str] = Counter()
    for seq in range(1, 101):
        frame = json.loads(generator.next_sample(seq).payload)
        assert validate_sample(frame, "ESP32_LL_01") == []
        seen.update(frame["fusion"]["defects"])
        grades[frame["fusion"]["final_grade"]] += 1
    # Every defect at once never passes as A or B; noise can hide one defect, so a few land in C, most are REJECT.
    assert set(grades) <= {"C", "REJECT"}, grades
    assert grades["REJECT"] >= 80, grades
    for defect in ("blood_spot", "yellowing", "low_volume", "foreign_object", "saturated_channel", "missing_zones"):
        assert seen[defect] >= 50, (defect, seen)


def test_same_seed_same_content_other_seed_other_content() -> None:
    profile = load_profile()
    when = datetime(2025, 1, 14, 9, 30, 12, tzinfo=UTC)

    def payloads(seed: int, device: str) -> list[str]:
        generator = SampleGenerator(device, profile, device_rng(seed, device))
        return [generator.next_sample(seq, when).payload for seq in range(1, 21)]

    assert payloads(42, "ESP32_LL_01") == payloads(42, "ESP32_LL_01")
    assert payloads(42, "ESP32_LL_01") != payloads(43, "ESP32_LL_01")
    # Each device has its own stream: device 2 does not replay device 1.
    first = [json.loads(p)["vl53l8ch"] for p in payloads(42, "ESP32_LL_01")]
    second = [json.loads(p)["vl53l8ch"] for p in payloads(42, "ESP32_LL_02")]
    assert first != second


def test_sample_id_and_timestamp_come_from_the_sample_time() -> None:
    generator = SampleGenerator("ESP32_LL_01", load_profile(), random.Random(1))
    when = datetime(2025, 1, 14, 9, 30, 12, 418000, tzinfo=UTC)
    frame = json.loads(generator.next_sample(42, when).payload)
    assert frame["sample_id"] == "SAMPLE-20250114-093012-0042"
    assert frame["timestamp"] == "2025-01-14T09:30:12.418Z"
    assert json.loads(generator.next_sample(123456, when).payload)["sample_id"].endswith("-123456")


def test_standard_lot_mix_gives_believable_grade_shares() -> None:
    generator = SampleGenerator("ESP32_LL_01", load_profile(), random.Random(5))
    grades = Counter(generator.next_sample(seq).grade for seq in range(1, 2001))
    share = {grade: grades[grade] / 2000 for grade in ("A", "B", "C", "REJECT")}
    assert 0.40 <= share["A"] <= 0.75, share
    assert 0.10 <= share["B"] <= 0.35, share
    assert 0.02 <= share["REJECT"] <= 0.12, share


def test_premium_profile_rejects_less_than_the_degraded_one() -> None:
    def reject_rate(name: str) -> float:
        generator = SampleGenerator("ESP32_LL_01", load_profile(name), random.Random(9))
        return sum(generator.next_sample(seq).grade == "REJECT" for seq in range(1, 1001)) / 1000

    assert reject_rate("foiegras_premium_entier") < reject_rate("foiegras_standard_barquette")
    assert reject_rate("foiegras_standard_barquette") < reject_rate("foiegras_degraded_lot")


def test_pool_reuses_simulated_content_with_fresh_identities() -> None:
    generator = SampleGenerator("ESP32_LL_01", load_profile(), random.Random(2), pool=5)
    frames = [json.loads(generator.next_sample(seq).payload) for seq in range(1, 51)]
    sections = {json.dumps(f["vl53l8ch"], sort_keys=True) for f in frames}
    assert len(sections) == 5
    assert len({f["sample_id"] for f in frames}) == 50
    assert all(validate_sample(f, "ESP32_LL_01") == [] for f in frames)


def test_profile_errors_name_the_key(tmp_path: Path) -> None:
    data = every_defect_profile()
    data["lot_mix"]["defects"]["teleported"] = 0.1
    with pytest.raises(ProfileError, match=r"lot_mix\.defects\.teleported"):
        parse_profile(data, "bad")
    data = every_defect_profile()
    data["vl53l8ch"]["lobe_height_mm"] = [40]
    with pytest.raises(ProfileError, match=r"vl53l8ch\.lobe_height_mm"):
        parse_profile(data, "bad")
    with pytest.raises(ProfileError, match="not found"):
        load_profile("no_such_profile")
    custom = tmp_path / "custom.yaml"
    custom.write_text(yaml.safe_dump(every_defect_profile()))
    assert load_profile(str(custom)).defect_rates["blood_spot"] == 1.0
