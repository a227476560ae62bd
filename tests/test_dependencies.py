"""Runtime pins are what the shipped code imports: every third-party import is a direct pin, every pin is used.

The shipped code is backend/, migrations/, simulator/ and the root scripts (the Docker image's contents). A
package imported only because another one pulls it in can vanish with that package's next release, so each
distribution an `import` statement resolves to must be pinned in requirements.txt; a pin nothing imports is
dead weight in the image unless it is used by name (listed below with why).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path

from scripts.devservices import REPO_ROOT
from tests.test_lockfiles import normalise, pins

SHIPPED = ("backend", "migrations", "simulator", "app.py", "init_db.py", "gunicorn.conf.py")
FIRST_PARTY = {"backend", "migrations", "simulator", "scripts"}
# Pinned but reached without an import statement in the shipped code.
USED_BY_NAME = {
    "python-dotenv": "Flask's CLI loads .env / .flaskenv with it",
    "swagger-ui-py": "its static files are served from /docs (backend/core/docs.py looks it up by name)",
}


@cache
def _owners() -> dict[Path, str]:
    """Installed file -> the distribution that installed it."""
    found: dict[Path, str] = {}
    for distribution in metadata.distributions():
        for file in distribution.files or ():
            found[Path(str(distribution.locate_file(file))).resolve()] = distribution.metadata["Name"]
    return found


def imported_modules(paths: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
    """(dotted module, file) of each absolute import of a third-party module under `paths`."""
    for name in paths:
        root = REPO_ROOT / name
        for file in [root] if root.is_file() else sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        yield module, file


def distribution_of(module: str) -> str | None:
    """The installed distribution providing `module` (None for a bare namespace package such as `opentelemetry`)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin in (None, "namespace"):
        return None
    return _owners().get(Path(spec.origin).resolve())


def test_every_third_party_import_is_a_direct_runtime_pin() -> None:
    direct = set(pins(REPO_ROOT / "requirements.txt"))
    missing = {
        f"{module} ({file.relative_to(REPO_ROOT)}) -> {distribution}"
        for module, file in imported_modules(SHIPPED)
        if (distribution := distribution_of(module)) is not None and normalise(distribution) not in direct
    }
    assert not missing, f"imported but only transitive: pin them in requirements.txt: {sorted(missing)}"


def test_every_runtime_pin_is_imported_or_used_by_name() -> None:
    imported = {normalise(d) for module, _ in imported_modules(SHIPPED) if (d := distribution_of(module))}
    by_name = {normalise(name) for name in USED_BY_NAME}
    unused = set(pins(REPO_ROOT / "requirements.txt")) - imported - by_name
    assert not unused, f"pinned for runtime but never imported: move to requirements-dev.txt or drop: {unused}"
    assert not by_name & imported, f"imported after all: drop from USED_BY_NAME: {by_name & imported}"


def test_the_check_sees_a_transitive_import() -> None:
    # werkzeug's own dependency: installed, imported nowhere in the shipped code, pinned nowhere directly.
    assert distribution_of("markupsafe") == "MarkupSafe"
    assert normalise("MarkupSafe") not in pins(REPO_ROOT / "requirements.txt")
    assert distribution_of("opentelemetry") is None  # a namespace: its sub-packages name the distributions
