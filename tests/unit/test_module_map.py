"""The package's map stays readable: imports go one way (no cycles), and long modules say why they are long."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "evaluator"
MAX_LINES = 400
LONG_MODULE_MARK = "Long module:"  # the docstring sentence that states why a module is over MAX_LINES


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))
            if "images" not in path.relative_to(PACKAGE).parts}  # the in-image program is not imported


def top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports when it is imported (imports inside functions are deferred)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue  # typing-only imports do not run
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue  # imported when called, not when the module is imported
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                found |= {alias.name for alias in sub.names}
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    anchor = package.rsplit(".", sub.level - 1)[0] if sub.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in sub.names}
    return {target for target in found if target in known and target != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_package_imports_have_no_cycles():
    known = modules()
    graph = {name: top_level_imports(name, path, set(known)) - _parents(name) for name, path in known.items()}
    assert sum(map(len, graph.values())) > len(graph)  # the parser sees the real edges
    assert cycles(graph) == []


def _parents(name: str) -> set[str]:
    """A module imports its package's __init__ first anyway; that edge is not a design choice."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_long_modules_say_why():
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_LINES and LONG_MODULE_MARK not in (ast.get_docstring(ast.parse(source)) or ""):
            unexplained.append(f"{path.relative_to(PACKAGE)} ({lines} lines)")
    assert unexplained == [], (f"over {MAX_LINES} lines: split them, or say why in the docstring "
                               f"with a sentence starting {LONG_MODULE_MARK!r}")
