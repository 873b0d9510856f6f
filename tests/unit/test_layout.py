"""The house's plan, checked from the code itself: folders in layers, imports one way, no circles,
the stages alone at the top, small rooms, and no module named like the standard library's."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "mlpipe"
STAGES = {"simulate", "ingest", "validate", "preprocess", "train", "evaluate", "package"}
# The early-warning pipeline's stages, in a folder of their own: stages too, above every part.
WARNING = "early_warning"
WARNING_STAGES = {f"{WARNING}.{name}" for name in ("simulate", "preprocess", "train", "evaluate", "package")}
# Each part may import only the parts before it (and itself); the stages and cli come last.
LAYERS = [
    "core",
    "sources",
    "demo",
    "features",
    "training",
    "evaluation",
    "bundle",
    "serving",
    "registry",
    "monitoring",
    "cli",
]


def modules() -> dict[str, Path]:
    """Every module, dotted below ``mlpipe`` (a package by its folder's name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """Which modules each module imports, wherever the import stands (in a function too)."""
    known = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mlpipe":
                base = node.module.removeprefix("mlpipe").lstrip(".")
                for alias in node.names:
                    full = f"{base}.{alias.name}".lstrip(".")
                    graph[name].add(full if full in known else base)
            elif isinstance(node, ast.Import):
                graph[name] |= {
                    a.name.removeprefix("mlpipe.") for a in node.names if a.name.startswith("mlpipe.")
                }
        graph[name].discard(name)
    return graph


def part(module: str) -> str:
    return module.split(".")[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while (top := stack.pop()) != node:
                group.append(top)
            if group:
                found.append([node, *group])

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules_or_between_parts():
    graph = imports()
    assert cycles(graph) == []
    parts = defaultdict(set)
    for module, targets in graph.items():
        parts[part(module)] |= {part(t) for t in targets} - {part(module)}
    assert cycles(parts) == []


def test_a_part_imports_only_the_parts_below_it_and_no_library_module_imports_a_stage():
    rank = {name: i for i, name in enumerate(LAYERS)}
    for module, targets in imports().items():
        assert not targets & (STAGES | WARNING_STAGES), f"{module} imports a stage"
        if module in STAGES | WARNING_STAGES | {"", WARNING}:  # the stages stand above every part
            continue
        for target in targets:
            assert rank[part(target)] <= rank[part(module)], f"{module} imports {target}, a part above it"


def test_the_top_level_holds_the_stages_and_the_parts_only():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert top == STAGES
    assert folders == set(LAYERS) | {WARNING}
    warning = {f"{WARNING}.{p.stem}" for p in (PACKAGE / WARNING).glob("*.py")} - {f"{WARNING}.__init__"}
    assert warning == WARNING_STAGES
    assert len(top) + 1 <= 12
    for folder in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(folder.read_text()))
        assert doc and "\n" not in doc.strip(), f"{folder}: a one-line docstring says what the part is"


def test_rooms_are_small_and_no_module_is_named_like_the_standard_library():
    for path in modules().values():
        text = path.read_text()
        assert len(text.splitlines()) <= 300, f"{path.relative_to(PACKAGE)} is over 300 lines"
        assert path.stem not in sys.stdlib_module_names, f"{path.relative_to(PACKAGE)} shadows the stdlib"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path.relative_to(PACKAGE)}: {node.name} is {length} lines"


def test_the_checks_can_fail():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) != []
    assert cycles({"a": {"b"}, "b": set()}) == []
