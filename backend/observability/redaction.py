"""Masking of credentials before anything reaches a log line or a span attribute.

Two nets: values under a sensitive key (`Authorization`, `password`, `api_key`, ...) in any mapping, and
credential-looking fragments inside free text (`Bearer <token>`, `password=...` pairs, `user:pass@` in URLs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "[REDACTED]"

SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "x_api_key",
        "client_secret",
        "private_key",
        "secret_key",
        "credentials",
    }
)
_SENSITIVE_SUFFIXES = ("_token", "_secret", "_password", "_api_key", "_apikey")

_HINTS = re.compile(r"bearer|basic|apikey|token|passw|secret|api[_-]key|authorization|://", re.IGNORECASE)
_KEY_CHARS = r"[A-Za-z0-9_\-]*"
_PATTERNS = (
    # "Bearer abc.def", "Basic dXNlcjpw", "ApiKey xyz" (schemes of the Authorization header)
    (re.compile(r"\b(Bearer|Basic|ApiKey|Token)\s+[A-Za-z0-9\-._~+/=]+", re.IGNORECASE), r"\1 " + REDACTED),
    # key=value / key: value pairs whose key names a credential
    (
        re.compile(
            r"(?i)\b(" + _KEY_CHARS + r"(?:password|passwd|secret|token|api[_-]?key|authorization)"
            r"\"?\s*[=:]\s*\"?)([^\s&\"',;]+)"
        ),
        r"\1" + REDACTED,
    ),
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE), r"\1" + REDACTED + "@"),
)


@lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """True when a field, header or parameter with this name holds a credential."""
    normalized = key.strip().lower().replace("-", "_")
    return normalized in SENSITIVE_KEYS or normalized.endswith(_SENSITIVE_SUFFIXES)


def redact_text(text: str) -> str:
    """Mask credential-looking fragments inside free text."""
    if not _HINTS.search(text):
        return text  # the common case, without running the patterns
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with sensitive keys masked and strings scrubbed (mappings and sequences recursed)."""
    if isinstance(value, str):
        return redact_text(value)
    if depth > 8:
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_sensitive_key(key) else redact(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, depth + 1) for item in value]
    return value


def redact_query(query: str) -> str:
    """A raw query string with the values of sensitive parameters masked (everything else kept as sent)."""
    if not query:
        return query
    pairs = []
    for pair in query.split("&"):
        name, separator, _ = pair.partition("=")
        pairs.append(f"{name}={REDACTED}" if separator and is_sensitive_key(unquote_plus(name)) else pair)
    return redact_text("&".join(pairs))
