"""The package's layout is its data flow: every import points down the layers below, none
climbs back up, and no modules import each other in a cycle (README "Architecture")."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "listener"

# Lowest first: a module may import its own package's modules and anything in a layer below
# its own, never a layer above. A top-level module or a subpackage is one layer.
LAYERS = (
    "listener",  # __init__: the version
    "shipped",  # where the model, corpus and default config live (checkout or wheel)
    "errors",
    "whole_file",  # files replaced whole or not at all (outbox, model files, caches)
    "domain",
    "store",  # SQLite: translates rows and domain types, imports no feature
    "feeds",
    "classify",
    "watches",
    "digest",
    "render",
    "logs",
    "mail",
    "webhook",
    "daemon",
    "config",
    "jobs",
    "app",
    "cli",
    "__main__",
)
# Third-party I/O that one place wraps (STYLE: pure modules never import them).
WRAPPED = {
    "httpx": ("listener.feeds.fetch",),
    "sqlite_utils": ("listener.store",),
    "smtplib": ("listener.mail",),
    "apscheduler": ("listener.daemon",),
    "jinja2": ("listener.render.parts",),
    "feedparser": ("listener.feeds.parse",),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str) -> Iterator[str]:
    """Every module `name` imports (TYPE_CHECKING and function-level imports included)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in MODULES else base


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        targets = set()
        for target in _imports(name):
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def _layer(name: str) -> str:
    return name.split(".")[1] if "." in name else name


def test_every_module_is_in_a_layer() -> None:
    assert {_layer(name) for name in MODULES} <= set(LAYERS)


def test_no_import_climbs_a_layer() -> None:
    rank = {layer: index for index, layer in enumerate(LAYERS)}
    climbing = sorted(
        f"{name} -> {target}"
        for name, targets in _graph().items()
        for target in targets
        if _layer(target) != _layer(name) and rank[_layer(target)] > rank[_layer(name)]
    )
    assert climbing == []


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert cycles == []


@pytest.mark.parametrize("library", sorted(WRAPPED))
def test_third_party_io_is_wrapped_in_one_place(library: str) -> None:
    users = sorted(
        name
        for name in MODULES
        if any(target.split(".")[0] == library for target in _imports(name))
    )
    allowed = WRAPPED[library]
    assert [name for name in users if not name.startswith(allowed)] == []
