"""What the WebSocket fuzz knows of a frame: the outcome labels docs/protocol.md allows, `FuzzFrame` (a message and its
required outcome) and the paths into the protocol's example sample that the generators (`fuzz_frames`) mutate.

Outcome labels: the reply's type (and `:code` / `:status`), `+close:N` when the server closed right after it,
`close:N` for a close without a reply.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from tests.sqal.helpers import EXAMPLE

STORED = "ack:stored"
DUPLICATE = "ack:duplicate"
BATCH_ACK = "batch_ack"
PONG = "pong"
INVALID_JSON = "error:invalid_json"
UNKNOWN_TYPE = "error:unknown_type"
VALIDATION = "error:validation_error"
RATE_LIMITED = "error:rate_limited"
TOO_LARGE = "error:message_too_large+close:1009"  # §2: error frame, then close 1009
TRANSPORT_TOO_BIG = "close:1009"  # over the limit in characters the transport closes before the handler sees it
INVALID_UTF8 = "close:1007"  # RFC 6455 §8.1: a text message that is not UTF-8 fails the connection
DOCUMENTED = frozenset(
    {STORED, DUPLICATE, BATCH_ACK, PONG, INVALID_JSON, UNKNOWN_TYPE, VALIDATION, RATE_LIMITED}
    | {TOO_LARGE, TRANSPORT_TOO_BIG, INVALID_UTF8}
)
# Every level parses up to SAFE_DEPTH in a worker; deeper, the outcome depends on the interpreter's recursion limit
# (CPython 3.11: json.loads gives up near 1000 levels), so either documented reply is accepted.
SAFE_DEPTH, PARSE_FAILS_DEPTH = 400, 1200
FREE_FORM = frozenset({"bins_analysis", "reflectance_analysis", "spectral_analysis", "color_analysis"})
MATRICES = ("distance_matrix", "reflectance_matrix", "amplitude_matrix", "target_status_matrix")
# Log-injection and terminal-escape payloads: valid in free text, never allowed to break a log line.
HOSTILE_TEXT = ("line1\nline2", '\r\n{"level":"CRITICAL","message":"forged"}', "\x1b[31mred\x1b[0m", '"}{"x":1',
                "\u202etxet\u200b\ufeff", "caf\u00e9 \U0001f986 \u4e2d\u6587", "tab\there\x07\x08")  # fmt: skip


@dataclass(frozen=True)
class FuzzFrame:
    """One message to send and what the protocol says must come back."""

    kind: str
    message: str | bytes
    expected: frozenset[str]
    as_text: bool = False  # send `bytes` as a text frame (invalid UTF-8)
    acks: tuple[tuple[str, int, str], ...] = ()  # (sample_id, seq, status) of an ack or a batch_ack, in order
    batch_errors: tuple[int, ...] = ()  # indexes a batch_ack must list in `errors`
    pong_ts: Any = None  # a `Deep` for nesting too deep to compare as objects


@dataclass(frozen=True)
class Deep:
    """The `ts` `[[...[1]...]]` nested `depth` times, checked on the reply's text."""

    depth: int

    def text(self) -> str:
        return "[" * self.depth + "1" + "]" * self.depth


@dataclass
class Raw:
    """JSON text spliced in after encoding: numbers and literals `json.dumps` cannot write (1e400, NaN...)."""

    texts: list[str] = field(default_factory=list)

    def __call__(self, text: str) -> str:
        self.texts.append(text)
        return f"@@RAW-{len(self.texts) - 1}@@"

    def encode(self, obj: Any) -> str:
        encoded = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)  # raw UTF-8 junk on the wire
        try:
            encoded.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates only as \u escapes
            encoded = json.dumps(obj, separators=(",", ":"))
        for index, text in enumerate(self.texts):
            encoded = encoded.replace(f'"@@RAW-{index}@@"', text)
        return encoded


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every value below `obj`, `type` left out; free-form objects are leaves."""
    found: list[tuple[tuple[Any, ...], Any]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        if key != "type":
            found.append(((*path, key), value))
            found.extend([] if key in FREE_FORM else _leaves(value, (*path, key)))
    return found


LEAVES = _leaves(EXAMPLE)
NUMBER_PATHS = [p for p, v in LEAVES if isinstance(v, int | float) and not isinstance(v, bool)]
STRING_PATHS = [p for p, v in LEAVES if isinstance(v, str)]
CONTAINER_PATHS = [p for p, v in LEAVES if isinstance(v, dict | list)]
INT_FIELDS = frozenset({"atime", "astep", "integration_time", "seq", "channels", "target_status_matrix"})
# Without `seq` a sample is a valid version-1 sample (docs/protocol.md §0), so deleting it is no junk.
REQUIRED_KEYS = [p for p, _ in LEAVES if isinstance(p[-1], str) and p not in {("seq",), ("meta", "processing_time_ms")}]
STORED_TEXT_PATHS = [("meta", "firmware_version"), ("meta", "config_profile")]


def get_path(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def set_path(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    get_path(obj, path[:-1])[path[-1]] = value


def unicode_junk(rng: random.Random, length: int) -> str:
    alphabet = '\x00\x01\x1b\n\r\t"\\{}[]\u00e9\u200b\u202e\ufeff\U0001f986\u4e2d\ud800\udfff\uffff'
    return "".join(rng.choice(alphabet) for _ in range(length))


def nested(depth: int, leaf: Any = 1, as_list: bool = True) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


def depth_expectation(depth: int, shallow: str, deep: str) -> frozenset[str]:
    return frozenset({shallow} if depth <= SAFE_DEPTH else {shallow, deep})
