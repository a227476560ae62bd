"""Every private name of another library that backend/ touches is in docs/private-internals.md (the register).

Found by reading the code: `from x import _name` / `import x._y` of a third-party module, and `obj._name`,
`getattr/setattr/hasattr(obj, "_name")` where `_name` is not defined anywhere in backend/ (so the attribute
belongs to another library's object)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REGISTER = ROOT / "docs" / "private-internals.md"
ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _third_party(module: str) -> bool:
    top = module.split(".")[0]
    return bool(top) and top != "backend" and top not in sys.stdlib_module_names


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted((ROOT / "backend").rglob("*.py"))}


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _defined_here(trees: dict[Path, ast.Module]) -> tuple[set[str], set[str]]:
    """Private attributes backend/ defines itself: (on its own classes: methods, class attributes, `self._x = `;
    on other objects it annotates: `obj._x = `, `setattr(obj, "_x", ...)`)."""
    on_self: set[str] = set()
    on_others: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                        on_self.add(item.name)
                    elif isinstance(item, ast.Assign | ast.AnnAssign):
                        targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                        on_self.update(target.id for target in targets if isinstance(target, ast.Name))
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                (on_self if _is_self(node.value) else on_others).add(node.attr)
            elif (call := _attribute_call(node)) is not None and call[0] == "setattr":
                (on_self if _is_self(call[1]) else on_others).add(call[2])
    return on_self, on_others


def _attribute_call(node: ast.AST) -> tuple[str, ast.expr, str] | None:
    """(function, obj, name) of getattr/setattr/hasattr/delattr(obj, "_private", ...)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ATTRIBUTE_FUNCTIONS):
        return None
    if len(node.args) < 2 or not isinstance(node.args[1], ast.Constant) or not isinstance(node.args[1].value, str):
        return None
    name = node.args[1].value
    return (node.func.id, node.args[0], name) if _private(name) else None


def _backend_aliases(tree: ast.Module) -> set[str]:
    """Names under which a module imports backend modules (`from backend.x import y`, `import backend.x as y`)."""
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "backend":
            aliases.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            aliases.update(alias.asname or alias.name for alias in node.names if alias.name.startswith("backend"))
    return aliases


def foreign_private_names() -> dict[str, set[str]]:
    """{private name: modules of backend/ touching it} for names that belong to other libraries."""
    trees = _trees()
    on_self, on_others = _defined_here(trees)
    found: dict[str, set[str]] = {}
    for path, tree in trees.items():
        where = str(path.relative_to(ROOT))
        ours = _backend_aliases(tree)
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _third_party(node.module):
                names += [part for part in node.module.split(".") if _private(part)]
                names += [alias.name for alias in node.names if _private(alias.name)]
            elif isinstance(node, ast.Import):
                names += [
                    part
                    for alias in node.names
                    if _third_party(alias.name)
                    for part in alias.name.split(".")
                    if _private(part)
                ]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                receiver = node.value
                if isinstance(receiver, ast.Name) and receiver.id in ours:
                    continue  # a backend module's or class's own name
                known = on_self if _is_self(receiver) else on_others
                if node.attr not in known:
                    names.append(node.attr)
            elif (call := _attribute_call(node)) is not None and call[2] not in (
                on_self if _is_self(call[1]) else on_others
            ):
                names.append(call[2])
            for name in names:
                found.setdefault(name, set()).add(where)
    return found


def test_the_scan_finds_the_known_internals() -> None:
    found = foreign_private_names()
    assert {"_batch_processor", "_queue", "_lock", "_handle_error", "_client", "_semconv"} <= set(found)
    assert "_lock_free" not in found  # ours (Breaker)


def test_every_private_name_touched_is_in_the_register() -> None:
    register = REGISTER.read_text()
    missing = {
        name: sorted(modules)
        for name, modules in foreign_private_names().items()
        if not re.search(rf"[`.]{re.escape(name)}\b", register)  # `_name`, `obj._name()`, `module._name`
    }
    assert missing == {}, f"private names of other libraries missing from {REGISTER.name}: {missing}"
