"""The import rules of docs/ARCHITECTURE.md, checked on the source: which layer may import
which, no import cycle, and no import inside a function except in the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gateway"

#: Layer of each top-level part of gateway/ (a module or a sub-package).
LAYERS = {
    "protocol": "protocol", "errors": "base", "__init__": "base", "failpoints": "base",
    "formats": "formats", "wire_schemas": "service",
    "config": "config", "config_escalation": "config", "config_templates": "config",
    "config_exercise": "config", "config_operations": "config",
    "keyfiles": "config",
    "metrics": "config", "logging": "config",
    "service": "service",
    "adapters": "adapters",
    "web": "web",
    "app": "app", "federation": "app", "demo": "app", "demo_mail": "app",
    "cli": "cli", "cli_bench": "cli", "cli_exercise": "cli", "cli_evidence": "cli",
    "cli_federation": "cli",
    "cli_ledger": "cli",
    "__main__": "cli", "bench": "cli",
}
#: What each layer may import (besides itself).
ALLOWED = {
    "base": set(),
    "protocol": {"base"},
    "formats": {"base", "protocol"},
    "config": {"base", "protocol"},
    "service": {"base", "protocol", "formats", "config"},
    "adapters": {"base", "protocol", "formats", "config", "service"},
    "web": {"base", "protocol", "formats", "config", "service"},
    "app": {"base", "protocol", "formats", "config", "service", "adapters", "web"},
    "cli": {"base", "protocol", "formats", "config", "service", "adapters", "web", "app"},
}
#: Modules whose imports inside functions keep `crisisgw --help` and each command fast.
LAZY_ALLOWED = {"cli", "cli_bench", "cli_evidence", "cli_federation", "cli_ledger", "__main__",
                "bench"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The gateway module an import names (``a.b.c`` may be module ``a.b`` plus a name)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]
             ) -> list[tuple[str, int, bool, bool]]:
    """(imported gateway module, line, inside a function, has a comment) per import."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    found: list[tuple[str, int, bool, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module.split(".")
                    if path.name != "__init__.py":
                        package = package[:-1]
                    package = package[:len(package) - child.level + 1]
                    base = ".".join([*package, base] if base else package)
                names = [f"{base}.{a.name}" for a in child.names] + [base]
            for name in names:
                target = _resolve(name, modules) if name.startswith("gateway") else None
                if target is not None and target != module:
                    comment = "#" in lines[child.lineno - 1]
                    found.append((target, child.lineno, in_function, comment))
            visit(child, nested)

    visit(tree, False)
    return found


def _layer(module: str) -> str:
    part = module.split(".")[1] if "." in module else "__init__"
    return LAYERS[part]


def _graph() -> dict[str, dict[str, list[tuple[int, bool, bool]]]]:
    modules = _modules()
    graph: dict[str, dict[str, list[tuple[int, bool, bool]]]] = {}
    for module, path in modules.items():
        edges: dict[str, list[tuple[int, bool, bool]]] = {}
        for target, line, lazy, comment in _imports(module, path, modules):
            edges.setdefault(target, []).append((line, lazy, comment))
        graph[module] = edges
    return graph


def test_every_part_of_the_package_has_a_layer() -> None:
    """A new module or sub-package is placed in a layer before it is used."""
    parts = {m.split(".")[1] if "." in m else "__init__" for m in _modules()}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


def test_layers_import_only_what_they_may() -> None:
    """protocol is pure, web never reaches into adapters or app, adapters never into web."""
    broken = [f"{m} -> {t} (line {uses[0][0]})"
              for m, edges in _graph().items() for t, uses in edges.items()
              if _layer(t) != _layer(m) and _layer(t) not in ALLOWED[_layer(m)]]
    assert broken == []


def test_no_import_inside_a_function_except_in_the_cli() -> None:
    """Imports are at the top of modules; the CLI's lazy ones say why in a comment."""
    lazy = [(m, t, line, comment) for m, edges in _graph().items() for t, uses in edges.items()
            for line, inside, comment in uses if inside]
    assert [f"{m} -> {t} (line {line})" for m, t, line, _ in lazy
            if m.split(".")[1] not in LAZY_ALLOWED] == []
    assert [f"{m} -> {t} (line {line})" for m, t, line, comment in lazy if not comment] == []


def test_no_import_cycle() -> None:
    """The module graph (every import, type-checking ones too) has no cycle."""
    graph = {m: set(edges) for m, edges in _graph().items()}
    # A package's __init__ is imported with each of its modules: not an edge that matters.
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                walk(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert cycles == []


def test_no_library_is_imported_inside_a_function_outside_the_cli() -> None:
    """Not a third-party or standard module either: only the CLI defers imports."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if module.partition(".")[2].split(".")[0] in LAZY_ALLOWED:
            continue
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                found += [f"{module}:{n.lineno}" for n in ast.walk(fn)
                          if isinstance(n, ast.Import | ast.ImportFrom)]
    assert found == []


@pytest.mark.parametrize("layer", ["protocol"])
def test_the_protocol_core_needs_no_io_library(layer: str) -> None:
    """gateway.protocol imports no asyncio, aio_pika, aiohttp, sqlite3, socket or os."""
    forbidden = {"asyncio", "aio_pika", "aiormq", "aiohttp", "sqlite3", "socket", "os",
                 "subprocess", "pathlib"}
    found = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert found == []
