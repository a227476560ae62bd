"""Secret tokens (API keys, client credentials): generation, storage digest and verification.

Tokens are 256-bit random strings, so a plain SHA-256 digest is enough to store them: there is nothing to
brute-force and no need for a slow password hash. Only the digest is stored; lookups go through the digest
(indexed) and the final comparison is constant-time. Never log a token, only its `fingerprint`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32
DIGEST_LENGTH = 64  # hex SHA-256


def generate_token(prefix: str = "") -> str:
    """A new URL-safe random token (256 bits), optionally prefixed (e.g. `sqal_`) for secret scanners."""
    return f"{prefix}{secrets.token_urlsafe(TOKEN_BYTES)}"


def hash_token(token: str) -> str:
    """The hex SHA-256 digest stored in place of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def verify_token(token: str, digest: str) -> bool:
    """True when `token` hashes to `digest`; constant-time comparison."""
    return hmac.compare_digest(hash_token(token), digest)


def fingerprint(token: str) -> str:
    """A short non-reversible identifier safe to log (first 8 hex chars of the digest)."""
    return hash_token(token)[:8]
