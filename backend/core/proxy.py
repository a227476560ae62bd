"""Trusted proxies: which address is the client's.

Without configuration the TCP peer is the client, and X-Forwarded-* headers are dropped before the app sees them
(a client could otherwise choose its rate-limit bucket and the address in logs and spans). With
`FORWARDED_ALLOW_IPS`, a request whose peer is one of those proxies is read through Werkzeug's `ProxyFix`: the
client is the `PROXY_TRUSTED_HOPS`-th address from the right of X-Forwarded-For (what the nearest trusted proxies
appended, never what the client wrote before them) and the scheme comes from X-Forwarded-Proto. A peer outside the
list gets the no-proxy treatment, whatever headers it sends.

Rate limits (`request.remote_addr`), access logs and server spans (REMOTE_ADDR) all follow, as the middleware wraps
everything else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

FORWARDED_HEADERS = (
    "HTTP_FORWARDED",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_X_FORWARDED_PROTOCOL",
    "HTTP_X_FORWARDED_SSL",
    "HTTP_X_REAL_IP",
)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def _without_forwarded_headers(wsgi_app: WsgiApp) -> WsgiApp:
    """Drop the forwarding headers once the client address is settled: nothing downstream may read them again."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        for name in FORWARDED_HEADERS:
            environ.pop(name, None)
        return wsgi_app(environ, start_response)

    return app


class TrustedProxies:
    """WSGI middleware: `ProxyFix` for peers in `networks`, the peer address for everyone else."""

    def __init__(self, wsgi_app: WsgiApp, networks: Iterable[str], hops: int) -> None:
        inner = _without_forwarded_headers(wsgi_app)
        self.networks = tuple(ipaddress.ip_network(network) for network in networks)
        self.direct = inner
        self.proxied = ProxyFix(inner, x_for=hops, x_proto=1, x_host=0, x_port=0, x_prefix=0)
        # Peers repeat (the proxies, then a bounded set of direct clients): decide once per address.
        self.is_trusted: Callable[[str], bool] = lru_cache(maxsize=4096)(self._check)

    def _check(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
        return any(address in network for network in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.networks and self.is_trusted(environ.get("REMOTE_ADDR", "")):
            return self.proxied(environ, start_response)
        return self.direct(environ, start_response)


def init_app(app: Flask) -> None:
    """Wrap the app (call last: the outermost middleware sees the request first)."""
    settings = app.config["SETTINGS"]
    app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]
        app.wsgi_app, settings.forwarded_allow_ips, settings.proxy_trusted_hops
    )
