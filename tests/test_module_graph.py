"""The core's modules form no import cycle, counting every import: module level, function-local and
type-only (``if TYPE_CHECKING:``). Lower layers never name the agent: only the entry points do."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import tracedagent

ROOT = Path(tracedagent.__file__).parent
PACKAGE = "tracedagent"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: set[str]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                yield _longest_known(alias.name, known)
        return
    if node.level:
        base = importer.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
        return
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        yield sub if sub in known else _longest_known(target, known)


def _longest_known(name: str, known: set[str]) -> str:
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _resolve(name, is_package, node, known):
                    if target != name:
                        graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_core_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "tracedagent._loop" in graph  # the graph really covers the core
    assert cycles(graph) == []


def test_no_module_below_the_entry_points_names_the_agent() -> None:
    graph = import_graph()
    allowed = {"tracedagent", "tracedagent._agent", "tracedagent._cli", "tracedagent._demo", "tracedagent.engine"}
    naming = sorted(m for m, targets in graph.items() if "tracedagent._agent" in targets and m not in allowed)
    assert naming == []


def test_no_submodule_imports_the_package_root() -> None:
    graph = import_graph()
    assert sorted(m for m, targets in graph.items() if PACKAGE in targets) == []


REPO = ROOT.parents[1]
PUBLIC_SUBMODULES = {
    "testing",
    "models",
    "resilience",
    "tools",
    "hookspecs",
    "exceptions",
    "testing.event_log",
    "engine",
}


def test_plugins_and_examples_import_only_public_names() -> None:
    found: list[str] = []
    sources = [*REPO.glob("plugins/*/src/**/*.py"), *REPO.glob("examples/*/src/**/*.py")]
    assert sources
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                module = node.module
                if module == PACKAGE:
                    found += [f"{path.name}: {a.name}" for a in node.names if a.name not in tracedagent.__all__]
                elif module.startswith(PACKAGE + ".") and module[len(PACKAGE) + 1 :] not in PUBLIC_SUBMODULES:
                    found.append(f"{path.name}: {module}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    sub = alias.name[len(PACKAGE) + 1 :] if alias.name.startswith(PACKAGE + ".") else None
                    if sub is not None and sub not in PUBLIC_SUBMODULES:
                        found.append(f"{path.name}: {alias.name}")
    assert found == []
