"""The package layout is the pipeline: each stage imports only the stages below it, and no module
imports itself back through another.

Every import counts, including those inside functions and under TYPE_CHECKING: a lazy import
that goes upward is still a dependency a newcomer would trip over.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tuneform

PACKAGE = Path(tuneform.__file__).parent

# Bottom to top. A module may import its own package and any package listed before it.
LAYERS = ["core", "runfile", "evals", "data", "estimate", "registry", "train", "plan", "job", "backends", "github", "cli"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of the tuneform modules (or packages) that `path` imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tuneform":
                continue
            for alias in node.names:  # `from tuneform.x import y` may name a module y
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "tuneform")
    return found


FILES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
MODULES = set(FILES)
GRAPH = {name: imports_of(path) for name, path in FILES.items()}


def layer_of(module: str) -> int | None:
    """The layer index of a module; None for the root package (its version), which any layer may read."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return None
    return LAYERS.index(parts[1])


def test_every_package_is_a_known_layer_with_a_docstring_that_says_its_job() -> None:
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(LAYERS), "a new package needs its place in LAYERS (and in README.md's Architecture)"
    for name in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"tuneform/{name}/__init__.py must say its job and what it may import"
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == [], f"modules outside a stage package: {loose}"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    upward = []
    for module, targets in sorted(graph.items()):
        here = layer_of(module)
        for target in sorted(targets):
            there = layer_of(target)
            if here is not None and there is not None and there > here:
                upward.append(f"{module} -> {target} ({LAYERS[here]} may not import {LAYERS[there]})")
    return upward


def test_no_stage_imports_a_stage_above_it() -> None:
    assert upward_imports(GRAPH) == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    # A package's __init__ re-exporting its own module is not a cycle of design.
    graph = {m: {t for t in targets if not (FILES[m].name == "__init__.py" and t.startswith(m + "."))} for m, targets in GRAPH.items()}
    assert cycles(graph) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_the_layer_check_sees_an_upward_import() -> None:
    planted = dict(GRAPH)
    planted["tuneform.runfile.spec"] = GRAPH["tuneform.runfile.spec"] | {"tuneform.plan.planner"}
    assert upward_imports(planted) == ["tuneform.runfile.spec -> tuneform.plan.planner (runfile may not import plan)"]
    assert upward_imports({"tuneform.cli.commands": {"tuneform.core.hub", "tuneform"}}) == []
