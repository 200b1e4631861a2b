"""docs/architecture.md's rules, checked on the code: no import cycle in gaf/ (module-level imports,
followed transitively), and the modules meant to stay light import neither torch nor each other upwards."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gaf"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports() -> dict[str, set[str]]:
    """gaf module -> the gaf modules it imports at module level (what runs at import time)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # top level only
            if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks never run
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def test_no_import_cycle_in_gaf() -> None:
    graph = _module_level_imports()
    assert len(graph) > 50
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_annotation_formats_are_layered() -> None:
    graph = _module_level_imports()
    assert graph["gaf.data.annotation_core"] <= {"gaf.errors"}
    for fmt in ("activitynet", "thumos14", "predictions", "ucf101"):
        assert "gaf.data.annotations" not in graph[f"gaf.data.{fmt}"], fmt  # formats never import the face


# docs/architecture.md's layers, bottom first: a module imports (at module level or inside a function)
# only from its own layer or the ones below.
LAYERS = [
    ("gaf.errors", "gaf.io", "gaf.config", "gaf.losses", "gaf.postprocess", "gaf.progress"),
    ("gaf.models",),
    ("gaf.data",),
    ("gaf.metrics",),
    ("gaf.viz",),
    ("gaf.engine",),
    ("gaf.detect", "gaf.extraction", "gaf.export", "gaf.classification"),
    ("gaf.commands", "gaf.cli", "gaf.__main__"),
    ("gaf.api",),
]


def _layer(module: str) -> int | None:
    found = None
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            found = index
    return found


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    unplaced = sorted(m for m in modules if m != "gaf" and _layer(m) is None)
    assert not unplaced, f"modules in no layer of docs/architecture.md: {unplaced}"
    upward = []
    for name, path in modules.items():
        if name == "gaf":  # the package face re-exports the API lazily
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for target in targets:
                if target.startswith("gaf.") and _layer(target) is not None and _layer(target) > _layer(name):
                    upward.append(f"{name} -> {target}")
    assert not upward, f"imports that run up the layers: {upward}"
