"""Imports point down only: entry points → http → core → backends → domain.

Read from the source (every import, TYPE_CHECKING ones included), so a new module or a new
import that breaks the rule fails here before a reader has to untangle it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"
# Highest first. A module may import from its own layer and those below it, except that the
# core's siblings (service, hub, reconcile) talk through the bus, never to each other.
LAYERS = [
    ("entry", ["app.__main__", "app.gunicorn", "app.web", "app.tools"]),
    ("http", ["app.http", "app.ops"]),
    ("core", ["app.service", "app.hub", "app.reconcile", "app.moderation", "app.snapshot", "app.streams",
              "app.leaderboards", "app.board_hubs", "app.pair_builds"]),
    ("backends", ["app.store", "app.live", "app.ratelimit", "app.auth.tokens"]),
    ("settings", ["app.config"]),
    ("domain", ["app.domain", "app.errors", "app.tasks", "app.batching", "app.auth.keyring", "app.auth", "app",
                "app.periods", "app.boards"]),
]
SIBLINGS = {"app.service", "app.hub", "app.reconcile"}
NO_WEB = ("app.store", "app.live")  # storage knows nothing of HTTP


def _name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _layer(module: str) -> int:
    """Index in LAYERS of the most specific prefix that holds the module."""
    matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS)
               for prefix in prefixes if _within(module, prefix)]
    assert matches, f"{module} belongs to no layer: add it to LAYERS"
    return max(matches)[1]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = sorted(_name(path) for path in APP.rglob("*.py"))


def _own(module: str, imported: set[str]) -> set[str]:
    """The app modules among `imported` (a `from app.x import Name` yields app.x, not app.x.Name)."""
    modules = set(MODULES)
    return {name for name in imported if name in modules and name != module}


@pytest.mark.parametrize("module", MODULES)
def test_imports_point_down(module: str) -> None:
    path = APP.parent / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    imported = _imports(path)
    layer = _layer(module)
    for target in _own(module, imported):
        assert _layer(target) >= layer, f"{module} ({LAYERS[layer][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        if module in SIBLINGS and target in SIBLINGS:
            pytest.fail(f"{module} imports its sibling {target}: siblings talk through the bus")
    if module.startswith(NO_WEB):
        assert "aiohttp.web" not in imported and "aiohttp" not in imported, f"{module} imports aiohttp"


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)
