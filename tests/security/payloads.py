"""Hostile strings shared by the security tests."""

from __future__ import annotations

PG_SLEEP = "1; SELECT pg_sleep(5)--"

# Classic SQL injection and quoting tricks, LIKE wildcards, a NUL byte, look-alike quotes and an oversized value.
SQL_PAYLOADS: dict[str, str] = {
    "or_true": "' OR '1'='1",
    "drop_products": "'; DROP TABLE products; --",
    "pg_sleep": PG_SLEEP,
    "like_or": "%' OR 1=1 --",
    "backslash_quote": "\\'",
    "double_quotes": '" OR ""="',
    "dollar_quoted": "$$; DROP TABLE bugs; $$",
    "union_select": "x' UNION SELECT key_hash, NULL FROM api_keys --",
    "stacked_sleep": "'); SELECT pg_sleep(5); --",
    "e_string": "E'\\x27' || pg_sleep(5) || '",
    "nul_byte": "nul\x00'; DROP TABLE products; --",
    "unicode_quotes": "\u2018 OR \u20181\u2019=\u20191 \u201c\u201d \u02bc OR 1=1 \uff07",
    "like_wildcard": "%",
    "like_underscore": "_",
    "long": "' OR 1=1 -- " * 1000,
}

# JSON can carry what a URL cannot: a lone UTF-16 surrogate (PostgreSQL's UTF-8 text refuses it).
BODY_ONLY_PAYLOADS: dict[str, str] = {"lone_surrogate": "\ud800' OR '1'='1"}
