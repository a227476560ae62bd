"""`/docs` without the internet: Swagger UI assets from the pinned `swagger-ui-py` wheel, and a strict CSP.

APIFlask's Swagger page loads its CSS and JS from a CDN by default, which both breaks on an offline plant network and
forbids a same-origin Content-Security-Policy. Here those assets are served from `/docs/assets/` and the page
gets a CSP whose only allowed inline script is the page's own initialiser, allowed by its SHA-256 hash.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
from pathlib import Path

from apiflask import APIFlask
from flask import Blueprint, Response, abort, request, send_from_directory

DOCS_ENDPOINT = "openapi.docs"
ASSETS_URL = "/docs/assets"
ASSETS = {
    "SWAGGER_UI_CSS": "swagger-ui.css",
    "SWAGGER_UI_BUNDLE_JS": "swagger-ui-bundle.js",
    "SWAGGER_UI_STANDALONE_PRESET_JS": "swagger-ui-standalone-preset.js",
    "DOCS_FAVICON": "favicon-32x32.png",
}
INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)

bp = Blueprint("docs_assets", __name__)


def assets_dir() -> Path:
    """The static folder of the installed `swagger-ui-py` package (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed; it provides the /docs assets (see requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@bp.get(f"{ASSETS_URL}/<name>")
def docs_asset(name: str) -> Response:
    """One of the Swagger UI files named in ASSETS; nothing else in the package is served."""
    if name not in ASSETS.values():
        abort(404)
    return send_from_directory(assets_dir(), name, max_age=86400)


def content_security_policy(page: bytes) -> str:
    """Same-origin assets; inline scripts only when they are exactly the ones in `page` (hash sources)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(page)
    )
    # Swagger UI sets style attributes at run time, hence 'unsafe-inline' for styles only (never for scripts).
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def init_app(app: APIFlask) -> None:
    """Point Swagger UI at the local assets and put a CSP on the docs page."""
    assets_dir()  # fail at startup, not on the first visit, when the package is missing
    app.config.update({setting: f"{ASSETS_URL}/{name}" for setting, name in ASSETS.items()})
    app.register_blueprint(bp)

    @app.after_request
    def docs_csp(response: Response) -> Response:
        if request.endpoint == DOCS_ENDPOINT and response.status_code == 200:
            response.headers["Content-Security-Policy"] = content_security_policy(response.get_data())
        return response
