"""Offset pagination headers shared by list endpoints: `X-Total-Count` and an RFC 8288 `Link`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode


def pagination_headers(path: str, args: Mapping[str, Any], total: int, limit: int, offset: int) -> dict[str, str]:
    """Headers for a page: total count and first/prev/next/last links that keep the other query arguments."""

    def link(page_offset: int, rel: str) -> str:
        query = {key: value for key, value in args.items() if value is not None and key not in ("limit", "offset")}
        query.update(limit=limit, offset=page_offset)
        return f'<{path}?{urlencode(query)}>; rel="{rel}"'

    links = [link(0, "first")]
    if offset > 0:
        links.append(link(max(offset - limit, 0), "prev"))
    if offset + limit < total:
        links.append(link(offset + limit, "next"))
    last = max(((total - 1) // limit) * limit, 0) if total else 0
    links.append(link(last, "last"))
    return {"X-Total-Count": str(total), "Link": ", ".join(links)}
