"""Seeded generators of hostile `/ws/sensors/` messages for the WebSocket fuzz (test_routes_fuzz.py).

Every `FuzzFrame` (`fuzz_model`) carries the outcome docs/protocol.md requires for it, so the fuzz checks each reply,
not only that the server survived. Junk samples carry `JUNK-` sample ids, so a junk frame stored by mistake shows up
in the database.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from tests.sqal.helpers import EXAMPLE, sample_frame
from tests.sqal.ingest.fuzz_model import (
    BATCH_ACK,
    CONTAINER_PATHS,
    DUPLICATE,
    HOSTILE_TEXT,
    INT_FIELDS,
    INVALID_JSON,
    INVALID_UTF8,
    MATRICES,
    NUMBER_PATHS,
    PARSE_FAILS_DEPTH,
    PONG,
    REQUIRED_KEYS,
    SAFE_DEPTH,
    STORED,
    STORED_TEXT_PATHS,
    STRING_PATHS,
    TOO_LARGE,
    TRANSPORT_TOO_BIG,
    UNKNOWN_TYPE,
    VALIDATION,
    Deep,
    FuzzFrame,
    Raw,
    depth_expectation,
    get_path,
    nested,
    set_path,
    unicode_junk,
)


class FrameFactory:
    """Frames for one device, reproducible from `rng`; valid samples get increasing seqs."""

    def __init__(self, rng: random.Random, device_id: str, max_bytes: int) -> None:
        self.rng = rng
        self.device_id = device_id
        self.max_bytes = max_bytes
        self.seq = 0
        self.sent: list[dict[str, Any]] = []  # valid samples already generated (duplicate resends pick from these)
        self._junk = 0
        self._by_id: dict[str, dict[str, Any]] = {}
        template = sample_frame(device_id, 0)
        self._template, self._id_prefix = json.dumps(template), template["sample_id"].rpartition("-")[0]
        self.junk_mutations: list[Callable[[dict[str, Any], Raw], None]] = [
            self._missing_field, self._wrong_type, self._huge_number, self._nan_or_infinity, self._bad_matrix,
            self._nested_number, self._junk_string, self._long_string, self._bad_timestamp, self._bad_seq,
            self._spectral_logic, self._other_device, self._not_storable_text]  # fmt: skip

    def sample(self, seq: int, sample_id: str | None = None) -> dict[str, Any]:
        """`sample_frame(device_id, seq)`, from a template: a JSON round trip is much cheaper than its deepcopy."""
        sample: dict[str, Any] = json.loads(self._template)
        sample.update(seq=seq, sample_id=sample_id or f"{self._id_prefix}-{seq:04d}")
        return sample

    # -- samples -------------------------------------------------------------------------------------------
    def valid_sample(self) -> dict[str, Any]:
        """A new valid sample, sometimes with exotic but legal content (hostile text, unknown keys)."""
        self.seq += 1
        sample = self.sample(self.seq)
        rng = self.rng
        if rng.random() < 0.3:
            sample["meta"]["firmware_version"] = rng.choice(HOSTILE_TEXT)[:32]
            sample["fusion"]["defects"] = rng.sample(HOSTILE_TEXT, rng.randint(1, 3))
            sample["meta"]["config_profile"] = rng.choice(HOSTILE_TEXT)
        if rng.random() < 0.2:
            sample["meta"].pop("processing_time_ms")
        if rng.random() < 0.2:
            sample["future_field"] = {"nested": nested(rng.randint(1, 50)), "text": rng.choice(HOSTILE_TEXT)}
        self._by_id[sample["sample_id"]] = sample
        return sample

    def junk_sample(self, raw: Raw) -> dict[str, Any]:
        """A sample that breaks a rule of §3.1 (so the reply must be validation_error)."""
        self._junk += 1
        sample = self.sample(10_000_000 + self._junk, f"JUNK-{self._junk}")
        self.rng.choice(self.junk_mutations)(sample, raw)
        return sample

    def _missing_field(self, sample: dict[str, Any], raw: Raw) -> None:
        path = self.rng.choice(REQUIRED_KEYS)
        del get_path(sample, path[:-1])[path[-1]]

    def _wrong_type(self, sample: dict[str, Any], raw: Raw) -> None:
        path = self.rng.choice(NUMBER_PATHS + STRING_PATHS + CONTAINER_PATHS)
        value = get_path(sample, path)
        if isinstance(value, str):
            choices: list[Any] = [0, 1.5, True, None, [], {}, [value]]
        elif isinstance(value, list | dict):
            choices = ["x", 5, None, True, {} if isinstance(value, list) else []]
        else:
            choices = [str(value), "", True, False, [], {}, [value]]
            choices += [value + 0.5] if INT_FIELDS.intersection(map(str, path)) else []
            choices += [] if path[-1] == "processing_time_ms" else [None]
        set_path(sample, path, self.rng.choice(choices))

    def _huge_number(self, sample: dict[str, Any], raw: Raw) -> None:
        digits = self.rng.choice([21, 40, 310, 4000])
        literal = self.rng.choice(["1e400", "-1e400", "9" * digits, "-" + "9" * digits, "1.5e308", "1e-400"])
        path = self.rng.choice(NUMBER_PATHS)
        if literal == "1e-400":  # underflows to 0.0, which is in range for most fields: pair it with a real fault
            self._bad_seq(sample, raw)
        set_path(sample, path, raw(literal))

    def _nan_or_infinity(self, sample: dict[str, Any], raw: Raw) -> None:
        set_path(sample, self.rng.choice(NUMBER_PATHS), raw(self.rng.choice(["NaN", "Infinity", "-Infinity"])))

    def _bad_matrix(self, sample: dict[str, Any], raw: Raw) -> None:
        rng = self.rng
        name = rng.choice(MATRICES)
        matrix = sample["vl53l8ch"][name]
        out_of_range = {"distance_matrix": 4001, "reflectance_matrix": 100.5, "amplitude_matrix": 100001}
        edits: list[Callable[[], Any]] = [
            lambda: [*matrix, matrix[0]],  # 9x8
            lambda: [[*row, row[0]] if i == 3 else row for i, row in enumerate(matrix)],  # a row of 9
            lambda: matrix[:7],  # 7x8
            lambda: [row[:7] if i == 5 else row for i, row in enumerate(matrix)],  # ragged
            lambda: [],
            lambda: [[] for _ in range(8)],
            lambda: [[[cell] for cell in row] for row in matrix],  # 8x8x1
            lambda: [[str(cell) for cell in row] for row in matrix],
            lambda: {str(i): row for i, row in enumerate(matrix)},
            lambda: [[-1 if (i, j) == (2, 2) else c for j, c in enumerate(r)] for i, r in enumerate(matrix)],
            lambda: [[out_of_range.get(name, 256)] * 8 for _ in range(8)],
            lambda: [[True] * 8 for _ in range(8)],
        ]
        sample["vl53l8ch"][name] = rng.choice(edits)()

    def _nested_number(self, sample: dict[str, Any], raw: Raw) -> None:
        depth = self.rng.randint(1, SAFE_DEPTH)  # deeper nesting is covered by `deep_nesting` frames
        set_path(sample, self.rng.choice(NUMBER_PATHS), nested(depth, as_list=self.rng.random() < 0.5))

    def _junk_string(self, sample: dict[str, Any], raw: Raw) -> None:
        path = self.rng.choice([("sample_id",), ("device_id",), ("vl53l8ch", "grade"), ("fusion", "final_grade")])
        set_path(sample, path, unicode_junk(self.rng, self.rng.randint(1, 60)) + "\u00e9")

    def _long_string(self, sample: dict[str, Any], raw: Raw) -> None:
        limits = {("sample_id",): 100, ("device_id",): 100, ("meta", "firmware_version"): 32}
        limits |= {("meta", "config_profile"): 100, ("timestamp",): 0, ("as7341", "grade"): 1}
        path, limit = self.rng.choice(list(limits.items()))
        length = self.rng.choice([limit + 1, limit + 100, self.rng.randint(limit + 1, 20_000)])
        set_path(sample, path, "A" * length)

    def _bad_timestamp(self, sample: dict[str, Any], raw: Raw) -> None:
        sample["timestamp"] = self.rng.choice(
            ["2099-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2025-01-14T09:30:12", "2025-13-45T09:30:12Z",
             "yesterday", "", "10000-01-01T00:00:00Z", "2025-01-14T09:30:12+25:00", "\u0000", 1736847012]
        )  # fmt: skip

    def _bad_seq(self, sample: dict[str, Any], raw: Raw) -> None:
        sample["seq"] = self.rng.choice([-1, 2**63, 1.5, "42", None, True])

    def _spectral_logic(self, sample: dict[str, Any], raw: Raw) -> None:
        spectral = sample["as7341"]  # each breaks a cross-field rule: registers vs time, full scale, gain steps
        faults = [("integration_time", spectral["integration_time"] + 5), ("gain", 3), ("atime", 0), ("astep", 0)]
        key, value = self.rng.choice(faults)
        spectral[key] = value
        spectral["channels"]["NIR"] = 65536 if self.rng.random() < 0.3 else spectral["channels"]["NIR"]

    def _other_device(self, sample: dict[str, Any], raw: Raw) -> None:
        sample["device_id"] = self.rng.choice(["ESP32_LL_01", self.device_id + " ", self.device_id.lower() + "x"])

    def _not_storable_text(self, sample: dict[str, Any], raw: Raw) -> None:
        """NUL and lone surrogates: valid JSON escapes, but PostgreSQL text/JSONB cannot hold them."""
        bad = self.rng.choice(["\x00", "a\x00b", "\ud800", "x\udfff"])
        if self.rng.random() < 0.5:
            set_path(sample, self.rng.choice(STORED_TEXT_PATHS), bad)
        else:
            sample["fusion"]["defects"] = ["ok", bad]

    # -- frames --------------------------------------------------------------------------------------------
    def _frame(
        self, kind: str, obj: Any, raw: Raw, expected: frozenset[str] | str, as_bytes: bool = False, **extra: Any
    ) -> FuzzFrame:
        text = obj if isinstance(obj, str) else raw.encode(obj)
        message: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text
        expected = frozenset({expected}) if isinstance(expected, str) else expected
        size = len(message) if isinstance(message, bytes) else len(text.encode("utf-8", "surrogatepass"))
        if size > self.max_bytes:  # size wins over everything else (§2); only a few bytes may tip a frame over
            transport_units = len(message)  # simple-websocket counts characters of text messages
            expected = frozenset({TRANSPORT_TOO_BIG} if transport_units > self.max_bytes else {TOO_LARGE})
            extra = {}
        elif "pong_ts" in extra and not isinstance(extra["pong_ts"], Deep):
            extra["pong_ts"] = json.loads(text).get("ts")  # as JSON reads it: "\\ud800\\udfff" is one character
        return FuzzFrame(kind, message, expected, **extra)

    def valid(self) -> FuzzFrame:
        """A frame carrying valid samples: sensor_data, a mixed batch, or a resend of a stored sample."""
        frame = self._valid(self.rng, Raw())
        if frame.acks:  # not too large: its new samples will be stored, so later resends are duplicates
            self.sent.extend(self._by_id.pop(sample_id) for sample_id, _, status in frame.acks if status == "stored")
        self._by_id.clear()
        return frame

    def _valid(self, rng: random.Random, raw: Raw) -> FuzzFrame:
        roll = rng.random()
        if roll < 0.15 and self.sent:
            sample = rng.choice(self.sent)
            acks = ((sample["sample_id"], sample["seq"], "duplicate"),)
            return self._frame("resend", sample, raw, DUPLICATE, acks=acks)
        if roll < 0.45:
            entries: list[tuple[dict[str, Any], bool]] = [(self.valid_sample(), True) for _ in range(rng.randint(1, 3))]
            entries += [(self.junk_sample(raw), False) for _ in range(rng.randint(0, 2))]
            rng.shuffle(entries)
            if rng.random() < 0.3:  # the same sample twice in one batch: stored, then duplicate
                entries.append(entries[0])
            acks, errors, seen = [], [], set()
            for index, (sample, good) in enumerate(entries):
                if good:
                    status = "duplicate" if sample["sample_id"] in seen else "stored"
                    seen.add(sample["sample_id"])
                    acks.append((sample["sample_id"], sample["seq"], status))
                else:
                    errors.append(index)
            samples = [{k: v for k, v in s.items() if k != "type" or rng.random() < 0.5} for s, _ in entries]
            batch = {"type": "sensor_batch", "batch_id": f"B{self.seq}", "samples": samples}
            return self._frame("valid_batch", batch, raw, BATCH_ACK, acks=tuple(acks), batch_errors=tuple(errors))
        sample = self.valid_sample()
        return self._frame("valid_sample", sample, raw, STORED, acks=((sample["sample_id"], sample["seq"], "stored"),))

    def junk(self) -> FuzzFrame:
        """One hostile frame of a random kind."""
        make = self.rng.choices(list(JUNK_KINDS), weights=list(JUNK_KINDS.values()))[0]
        return make(self)

    def _junk_sample_frame(self) -> FuzzFrame:
        raw = Raw()
        return self._frame("junk_sample", self.junk_sample(raw), raw, VALIDATION)

    def _junk_batch(self) -> FuzzFrame:
        rng, raw = self.rng, Raw()
        if rng.random() < 0.5:  # envelope errors: nothing validated, nothing stored
            envelopes: list[dict[str, Any]] = [
                {"type": "sensor_batch"}, {"type": "sensor_batch", "samples": None},
                {"type": "sensor_batch", "samples": []}, {"type": "sensor_batch", "samples": {"0": {}}},
                {"type": "sensor_batch", "samples": [{}] * 501},
                {"type": "sensor_batch", "batch_id": 7, "samples": [self.junk_sample(raw)]},
                {"type": "sensor_batch", "batch_id": "B" * 101, "samples": [self.junk_sample(raw)]},
            ]  # fmt: skip
            return self._frame("batch_envelope", rng.choice(envelopes), raw, VALIDATION)
        items: list[Any] = [self.junk_sample(raw) for _ in range(rng.randint(0, 3))]
        not_samples = [None, 5, "x", [], [EXAMPLE], {"type": "ping"}, {"type": "sensor_batch"}]
        items += rng.sample(not_samples, rng.randint(1, 3))
        rng.shuffle(items)
        batch = {"type": "sensor_batch", "samples": items}
        return self._frame("junk_batch", batch, raw, BATCH_ACK, batch_errors=tuple(range(len(items))))

    def _random_bytes(self) -> FuzzFrame:
        data = self.rng.randbytes(self.rng.randint(0, 3000))
        if self.rng.random() < 0.5:
            return FuzzFrame("binary", data, frozenset({INVALID_JSON}))
        return self._frame("latin1_text", data.decode("latin-1") or "\x00", Raw(), INVALID_JSON)

    def _binary_json(self) -> FuzzFrame:
        raw = Raw()
        # Valid content: it would be stored if the server read binary frames as text.
        sample = self.sample(20_000_000, f"JUNK-binary-{self.rng.randint(0, 10**6)}")
        return self._frame("binary_json", sample, raw, INVALID_JSON, as_bytes=True)

    def _invalid_utf8(self) -> FuzzFrame:
        data = b'{"type":"ping","ts":"' + self.rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82"]) + b'"}'
        return FuzzFrame("invalid_utf8", data, frozenset({INVALID_UTF8}), as_text=True)

    def _truncated(self) -> FuzzFrame:
        text = json.dumps(self.rng.choice([self.sample(1, "JUNK-cut"), {"type": "ping"}]))
        return self._frame("truncated", text[: self.rng.randint(0, len(text) - 1)], Raw(), INVALID_JSON)

    def _not_an_object(self) -> FuzzFrame:
        choices = ["[]", "null", "42", '"sensor_data"', "true", "", " ", "{}", '{"type":null}', '{"type":7}',
                   '{"type":["ping"]}', '{"type":{"x":1}}', '{"ts":1}', "[{\"type\":\"ping\"}]", "NaN"]  # fmt: skip
        return self._frame("not_an_object", self.rng.choice(choices), Raw(), INVALID_JSON)

    def _unknown_type(self) -> FuzzFrame:
        rng = self.rng
        kind = rng.choice(["", "SENSOR_DATA", "sensor_data ", " ping", "pong", "ack", "error", "batch_ack", "ping\x00"])
        kind = rng.choice([kind, unicode_junk(rng, rng.randint(1, 40)), "t" * rng.randint(101, 20_000)])
        return self._frame("unknown_type", {"type": kind, "samples": [EXAMPLE]}, Raw(), UNKNOWN_TYPE)

    def _deep_nesting(self) -> FuzzFrame:
        rng = self.rng
        bands = [(1, SAFE_DEPTH), (SAFE_DEPTH, PARSE_FAILS_DEPTH), (PARSE_FAILS_DEPTH, 8000)]
        depth = rng.randint(*rng.choice(bands))
        where = rng.randint(0, 2)
        if where == 0:  # the whole message
            text = Deep(depth).text() if rng.random() < 0.5 else '{"a":' * depth + "1" + "}" * depth
            return self._frame("deep_message", text, Raw(), INVALID_JSON)
        if where == 1:  # a sample number
            sample = self.sample(1, "JUNK-deep")
            sample["fusion"]["final_score"] = "@@DEEP@@"
            text = json.dumps(sample).replace('"@@DEEP@@"', "[" * depth + "]" * depth)
            return self._frame("deep_sample", text, Raw(), depth_expectation(depth, VALIDATION, INVALID_JSON))
        text = '{"type":"ping","ts":' + Deep(depth).text() + "}"
        expected = depth_expectation(depth, PONG, INVALID_JSON)
        return self._frame("deep_ping", text, Raw(), expected, pong_ts=Deep(depth))

    def _ping(self) -> FuzzFrame:
        rng, raw = self.rng, Raw()
        ts: Any = rng.choice([None, 0, -1.5, "t" * rng.randint(0, 20_000), unicode_junk(rng, 30), [True, False],
                              {"a": [1, {"b": None}]}, 2**63, int("9" * 4000), rng.choice(HOSTILE_TEXT)])  # fmt: skip
        frame: dict[str, Any] = {"type": "ping", "ts": ts, "extra": unicode_junk(rng, 5)}
        if rng.random() < 0.2:
            frame.pop("ts")
            ts = None
        if rng.random() < 0.25:  # not JSON values: must not be echoed, nor break the reply
            frame["ts"] = raw(rng.choice(["NaN", "Infinity", "-Infinity", "1e400"]))
            return self._frame("ping_nan", frame, raw, INVALID_JSON)
        return self._frame("ping", frame, raw, PONG, pong_ts=ts)

    def _oversize(self) -> FuzzFrame:
        rng = self.rng
        target = rng.randint(self.max_bytes + 1, 3 * self.max_bytes)
        # A valid sample padded by an ignored key: never stored.
        sample = self.sample(30_000_000, f"JUNK-big-{rng.randint(0, 10**6)}")
        filler = rng.choice(["x", "\u00e9", "\U0001f986"])
        sample["padding"] = filler * (target // len(filler.encode()))
        return self._frame("oversize", sample, Raw(), TOO_LARGE, as_bytes=rng.random() < 0.2)


# Relative weights: the closing kinds (oversize, invalid UTF-8) cost a reconnect each, so they are rarer.
JUNK_KINDS: dict[Callable[[FrameFactory], FuzzFrame], float] = {
    FrameFactory._junk_sample_frame: 30, FrameFactory._junk_batch: 8, FrameFactory._random_bytes: 8,
    FrameFactory._binary_json: 4, FrameFactory._invalid_utf8: 1.5, FrameFactory._truncated: 8,
    FrameFactory._not_an_object: 6, FrameFactory._unknown_type: 8, FrameFactory._deep_nesting: 8,
    FrameFactory._ping: 8, FrameFactory._oversize: 2.5,
}  # fmt: skip


def device_frames(rng: random.Random, device_id: str, count: int, max_bytes: int, first_index: int) -> list[FuzzFrame]:
    """`count` frames for one device: every 10th (by global index) carries valid samples, the rest is junk."""
    factory = FrameFactory(rng, device_id, max_bytes)
    return [factory.valid() if (first_index + i) % 10 == 9 else factory.junk() for i in range(count)]
