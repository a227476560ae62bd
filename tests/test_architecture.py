"""The layout rules of CONTRIBUTING.md, checked on the source: who may import whom, and how long a module may be.

Every import counts, at module level or inside a function. Layers of `backend/`, lowest first:
  base           backend.base.* (config, config_values, errors, orm, extension): import only each other
  observability  backend.observability.*: base and itself
  core           backend.core.*: base, observability and core
  domains        every other top-level package or module under backend/ (products, sqal, bugs, chaos...): the
                 layers below and their own modules, never another domain nor the factory. A sub-package of a
                 domain (backend/sqal/reads/) may import the domain's top-level modules (its shared vocabulary)
                 but a sibling sub-package only where SIBLING_IMPORTS allows it.
  factory        backend/__init__.py: anything.
backend.extensions holds the app's extension objects: it imports the classes of base, observability and core, and
core, the domains and the factory import it (base and observability never do). A core module it imports must not
import it back: test_no_import_cycles finds that, counting the packages a module's import runs first.
Outside: simulator/ imports nothing from backend/; backend/, scripts/ and bench/ import nothing from tests/; backend/
imports nothing from scripts/, bench/ or simulator/; migrations/ (frozen revisions) and observability/ (the Grafana
generators, run alone) import nothing from backend/ either; the root scripts (app.py, init_db.py, gunicorn.conf.py)
import backend/ but no test or tool code. Every module, tests included, stays within MAX_LINES lines.
Services (`service.py`) never read `flask.request`: routes pass them what they need. Core (above the base) names no
domain: no identifier or string of backend/core/ carries a domain's name.
Tests mirror backend/: a directory of tests/ is either a backend package's mirror (tests/sqal/ingest/ for
backend/sqal/ingest/), whose test modules are named test_<module>[_what].py after a module or sub-package there (or
listed in MAPPED), or one of the SUITES by concern; the root of tests/ holds the suites of the repository's root.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("backend", "simulator", "scripts", "bench", "migrations", "observability", "tests")
ROOT_SCRIPTS = ("app.py", "init_db.py", "gunicorn.conf.py")
MAX_LINES = 400
EXTENSIONS = "backend.extensions"  # the extension objects: above the lower layers' classes, below their users
LOWER = ("base", "observability", "core")  # the layers below the domains, lowest first: each a package
# Allowed imports between sub-packages of one domain: "sqal.live": {"sqal.reads"} lets backend/sqal/live/ import
# backend/sqal/reads/. Empty: sub-packages share only their domain's top-level modules.
SIBLING_IMPORTS: dict[str, frozenset[str]] = {}
# Top-level directories whose code must not depend on each of these (besides backend's layers above).
FORBIDDEN = {
    "backend": ("tests", "bench", "scripts", "simulator"),
    "simulator": ("backend", "tests"),
    "scripts": ("tests", "bench"),
    "bench": ("tests",),
    "migrations": ("backend", "tests", "bench", "scripts", "simulator"),
    "observability": ("backend", "tests", "bench", "scripts", "simulator"),
    "root": ("tests", "bench", "scripts", "simulator"),
    "tests": (),
}
# Suites by concern under tests/: they test the running stack, a tool or a whole surface, not one backend module.
SUITES = frozenset({"bench", "contract", "fuzz", "reference", "security", "simulator", "stack"})
# Test modules of a mirror directory that test no module of it: test file -> the path they test instead.
MAPPED = {
    "tests/observability/test_fast_paths.py": "backend/base/config.py",  # FAST_PATHS switches every replacement
    "tests/sqal/test_migration.py": "migrations/versions/0002_sqal.py",
    "tests/sqal/test_live_migration.py": "migrations/env.py",  # lock timeout and retries while devices stream
    "tests/sqal/lifecycle/test_backup.py": "README.md",  # the documented backup and restore procedure
}
# Words of backend/core/ that name the service (SQAL), not its domain package: API key prefix and auth realm.
SERVICE_NAME_IN_CORE = {"backend/core/auth.py": {"sqal_", 'Bearer realm="sqal"'}}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(root: Path, name: str) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path.is_dir() and any(path.glob("*.py")))


@functools.lru_cache(maxsize=1024)
def _statements(source: str) -> tuple[tuple[int, int, str, tuple[str, ...]], ...]:
    """(line, level, module, names) of every import statement; `import a.b` is (line, 0, "a.b", ())."""
    found: list[tuple[int, int, str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, 0, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.level, node.module or "", tuple(alias.name for alias in node.names)))
    return tuple(found)


def imported(root: Path, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file; `from pkg import mod` names pkg.mod."""
    name = module_name(root, path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: list[tuple[int, str]] = []
    for line, level, module, names in _statements(path.read_text()):
        anchor = package[: len(package) - level + 1] if level else []
        base = ".".join([*anchor, *(module.split(".") if module else [])])
        if not names:
            found.append((line, base))
        for alias in names:
            candidate = f"{base}.{alias}"
            found.append((line, candidate if is_module(root, candidate) else base))
    return found


def domain_packages(root: Path) -> dict[str, set[str]]:
    """Domain name → names of its sub-packages (directories holding Python modules)."""
    domains: dict[str, set[str]] = {}
    for entry in sorted((root / "backend").iterdir()):
        name = entry.stem
        if name in {*LOWER, "extensions", "__init__", "__pycache__"}:
            continue
        if entry.suffix == ".py":
            domains[name] = set()
        elif entry.is_dir() and any(entry.rglob("*.py")):
            domains[name] = {sub.name for sub in entry.iterdir() if sub.is_dir() and any(sub.glob("*.py"))}
    return domains


def layer(name: str, domains: dict[str, set[str]]) -> str:
    parts = name.split(".")
    if name == "backend":
        return "factory"
    if name == EXTENSIONS:
        return "extensions"
    if parts[1] in LOWER:
        return parts[1]
    return "domain" if parts[1] in domains else "factory"


def backend_violation(importer: str, target: str, domains: dict[str, set[str]]) -> str | None:
    """Why `importer` may not import `target` (both under backend), or None."""
    mine, theirs = layer(importer, domains), layer(target, domains)
    if mine == "factory":
        return None
    if mine == "extensions":
        return None if theirs in LOWER else "backend.extensions may import only base, observability and core"
    if theirs == "extensions":
        return None if mine not in LOWER[:2] else f"{mine} never imports backend.extensions"
    if mine in LOWER:
        allowed = LOWER[: LOWER.index(mine) + 1]
        return None if theirs in allowed else f"{mine} may import only {', '.join(allowed)}"
    if theirs in LOWER:
        return None
    if theirs == "factory":
        return "a domain never imports the factory"
    own, other = importer.split(".")[1:], target.split(".")[1:]
    if own[0] != other[0]:
        return "domains never import each other"
    subs = domains[own[0]]
    mine_sub = own[1] if len(own) > 1 and own[1] in subs else None
    their_sub = other[1] if len(other) > 1 and other[1] in subs else None
    if mine_sub and their_sub and mine_sub != their_sub:
        allowed_subs = SIBLING_IMPORTS.get(f"{own[0]}.{mine_sub}", frozenset())
        if f"{own[0]}.{their_sub}" not in allowed_subs:
            return "sub-packages of a domain share only its top-level modules (see SIBLING_IMPORTS)"
    return None


def checked_files(root: Path) -> list[tuple[str, Path]]:
    """(rule set, path) of every file the layout rules cover."""
    found = [(top, path) for top in CHECKED for path in sorted((root / top).rglob("*.py"))]
    return found + [("root", root / name) for name in ROOT_SCRIPTS if (root / name).is_file()]


def reads_flask_request(path: Path) -> int | None:
    """The line where `path` imports or uses `flask.request`, or None."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "flask" and any(a.name == "request" for a in node.names):
            return node.lineno
        if isinstance(node, ast.Attribute) and node.attr == "request" and ast.unparse(node.value) == "flask":
            return node.lineno
    return None


def domain_words_in_core(root: Path, path: Path, domains: dict[str, set[str]]) -> list[tuple[int, str]]:
    """(line, word) of each identifier or non-docstring string of a core module that names a domain."""
    names = {word for name in domains for word in (name, name.removesuffix("s"))}
    allowed = SERVICE_NAME_IN_CORE.get(path.relative_to(root).as_posix(), set())
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            word = node.id
        elif isinstance(node, ast.Attribute):
            word = node.attr
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            word = node.name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            word = node.value
        else:
            continue
        if word not in allowed and set(re.findall(r"[a-z]+", word.lower())) & names:
            found.append((getattr(node, "lineno", 0), word))
    return found


def violations(root: Path) -> list[str]:
    """Every broken rule under `root`, one line each."""
    domains = domain_packages(root)
    found: list[str] = []
    for top, path in checked_files(root):
        where = path.relative_to(root)
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            found.append(f"{where}: {lines} lines (at most {MAX_LINES})")
        importer = module_name(root, path)
        for line, target in imported(root, path):
            head = target.split(".")[0]
            if head in FORBIDDEN[top]:
                found.append(f"{where}:{line}: {importer} imports {target} ({top}/ never imports {head}/)")
            elif top == "backend" and head == "backend":
                reason = backend_violation(importer, target, domains)
                if reason:
                    found.append(f"{where}:{line}: {importer} imports {target} ({reason})")
        if top == "backend" and path.name == "service.py" and (at := reads_flask_request(path)):
            found.append(f"{where}:{at}: a service reads flask.request (routes pass it what it needs)")
        if top == "backend" and layer(importer, domains) == "core":
            named = domain_words_in_core(root, path, domains)
            found.extend(f"{where}:{at}: core names a domain ({word!r})" for at, word in named)
    return found


def mirror_violations(root: Path) -> list[str]:
    """Test modules not where the module they test is, one line each (see the docstring and MAPPED)."""
    found = [f"{test}: MAPPED to {target}, which does not exist" for test, target in MAPPED.items()
             if (root / test).is_file() and not (root / target).exists()]  # fmt: skip
    for directory in sorted({path.parent for path in (root / "tests").rglob("test_*.py")}):
        relative = directory.relative_to(root / "tests")
        if relative == Path():
            continue
        mirrored = root / "backend" / relative
        if not mirrored.is_dir():
            if relative.parts[0] not in SUITES:
                found.append(f"tests/{relative.as_posix()}/: neither mirrors a backend package nor is a suite (SUITES)")
            continue
        modules = {
            entry.stem for entry in mirrored.iterdir() if entry.suffix == ".py" or (entry / "__init__.py").is_file()
        }
        for path in sorted(directory.glob("test_*.py")):
            name = path.name.removeprefix("test_").removesuffix(".py")
            where = path.relative_to(root).as_posix()
            if where not in MAPPED and not any(name == module or name.startswith(f"{module}_") for module in modules):
                found.append(f"{where}: names no module of backend/{relative.as_posix()}/ (test_<module>[_what].py)")
    return found


def packages_run_first(root: Path, importer: str, target: str) -> set[str]:
    """The packages below `backend` whose `__init__` importing `target` runs first (those `importer` is not in)."""
    parts = target.split(".")
    parents = {".".join(parts[:end]) for end in range(2, len(parts))}
    outside = {package for package in parents if not f"{importer}.".startswith(f"{package}.")}
    return {package for package in outside if (root.joinpath(*package.split(".")) / "__init__.py").is_file()}


def import_cycles(root: Path) -> list[list[str]]:
    """Modules of backend/ that import each other, directly or through others (each cycle once, as a path)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((root / "backend").rglob("*.py")):
        name = module_name(root, path)
        targets = {target for _, target in imported(root, path) if target.startswith("backend.") and target != name}
        graph[name] = targets.union(*(packages_run_first(root, name, target) for target in targets))
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycles.append([*trail[trail.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return cycles


def test_the_code_follows_the_layout_rules() -> None:
    assert violations(ROOT) == []


def test_tests_mirror_the_source_tree() -> None:
    assert mirror_violations(ROOT) == []


def test_no_import_cycles() -> None:
    """A cycle (even under TYPE_CHECKING) means two modules are one: merge them or pass a protocol."""
    assert import_cycles(ROOT) == []


def _copy_tree(root: Path) -> None:
    for top in CHECKED:
        shutil.copytree(ROOT / top, root / top, ignore=shutil.ignore_patterns("__pycache__", "static"))
    for name in ROOT_SCRIPTS:
        shutil.copy(ROOT / name, root / name)


@pytest.mark.parametrize(
    ("relative", "text"),
    [
        ("backend/core/redis.py", "from backend.extensions import db\n"),  # backend.extensions imports it
        ("backend/observability/sql.py", "from backend.core import auth\n"),  # through backend/observability/__init__
    ],
)
def test_a_planted_cycle_is_reported(tmp_path: Path, relative: str, text: str) -> None:
    _copy_tree(tmp_path)
    assert import_cycles(tmp_path) == []
    _plant(tmp_path, relative, text)
    assert import_cycles(tmp_path) != []


def _plant(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(path.read_text() + text if path.exists() else text)


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        ("backend/products/plant.py", "from backend.bugs import service\n", "domains never import each other"),
        ("backend/core/plant.py", "def f():\n    from backend import sqal\n", "core may import only"),
        ("backend/core/plant.py", "import backend\n", "core may import only"),
        ("backend/observability/plant.py", "from backend.core import cache\n", "observability may import only"),
        ("backend/base/config.py", "from backend.observability import metrics\n", "base may import only"),
        ("backend/chaos.py", "from backend.products import service\n", "domains never import each other"),
        ("backend/bugs/plant.py", "from backend import create_app\n", "a domain never imports the factory"),
        ("backend/sqal/alpha/__init__.py", "from ..beta import thing\n", "sub-packages of a domain share only"),
        ("backend/core/plant.py", "import scripts.devservices\n", "backend/ never imports scripts/"),
        ("simulator/plant.py", "import backend.base.errors\n", "simulator/ never imports backend/"),
        ("bench/plant.py", "from tests.conftest import make_key\n", "bench/ never imports tests/"),
        ("scripts/plant.py", "from tests.support import server\n", "scripts/ never imports tests/"),
        ("scripts/plant.py", "x = 1\n" * (MAX_LINES + 1), f"{MAX_LINES + 1} lines (at most {MAX_LINES})"),
        ("tests/core/test_plant.py", "x = 1\n" * (MAX_LINES + 1), f"{MAX_LINES + 1} lines (at most {MAX_LINES})"),
        ("migrations/versions/plant.py", "from backend.sqal import models\n", "migrations/ never imports backend/"),
        ("observability/grafana/plant.py", "import backend\n", "observability/ never imports backend/"),
        ("app.py", "from tests.conftest import make_key\n", "root/ never imports tests/"),
        ("backend/bugs/service.py", "from flask import request\n", "a service reads flask.request"),
        ("backend/sqal/devices/service.py", "import flask\nx = flask.request\n", "a service reads flask.request"),
        ("backend/core/plant.py", "def f(app):\n    return app.extensions['bugs']\n", "core names a domain ('bugs')"),
        ("backend/core/plant.py", "products_cache = None\n", "core names a domain ('products_cache')"),
        ("backend/observability/plant.py", "from backend.extensions import db\n", "never imports backend.extensions"),
        ("backend/base/plant.py", "from backend import extensions\n", "base never imports backend.extensions"),
        ("backend/extensions.py", "from backend.sqal import websocket\n", "backend.extensions may import only"),
    ],
)
def test_a_planted_violation_is_reported(tmp_path: Path, relative: str, text: str, expected: str) -> None:
    _copy_tree(tmp_path)
    (tmp_path / "backend/sqal/beta").mkdir()
    (tmp_path / "backend/sqal/beta/__init__.py").write_text("thing = 1\n")
    (tmp_path / "backend/sqal/gamma.py").write_text("from backend.sqal.beta import thing\n")  # vocabulary: fine
    assert violations(tmp_path) == []
    _plant(tmp_path, relative, text)
    found = violations(tmp_path)
    assert len(found) == 1, found
    assert expected in found[0]
    assert found[0].startswith(relative), found


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        ("tests/core/test_cahce.py", "", "tests/core/test_cahce.py: names no module of backend/core/"),
        ("tests/sqal/ingest/test_widgets.py", "", "names no module of backend/sqal/ingest/"),
        ("tests/widgets/test_gadget.py", "", "tests/widgets/: neither mirrors a backend package nor is a suite"),
        ("backend/core/clock.py", None, "tests/core/test_clock.py: names no module of backend/core/"),
        ("migrations/env.py", None, "tests/sqal/test_live_migration.py: MAPPED to migrations/env.py, which does not"),
    ],
)
def test_a_planted_misplaced_test_is_reported(tmp_path: Path, relative: str, text: str | None, expected: str) -> None:
    """`text` None: the file is removed (a module renamed away from its tests)."""
    for top in ("backend", "tests", "migrations"):
        shutil.copytree(ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    assert mirror_violations(tmp_path) == []
    if text is None:
        (tmp_path / relative).unlink()
    else:
        _plant(tmp_path, relative, text)
    found = mirror_violations(tmp_path)
    assert len(found) == 1, found
    assert expected in found[0]
