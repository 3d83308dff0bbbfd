"""Every relaybus module imports on its own, and the modules import each other without a cycle.

The graph is built from module-level imports (``if TYPE_CHECKING:`` blocks excluded: they never
run). Imports inside functions are allowed only for the stores, which load their optional
client libraries lazily (``relaybus.PostgresStore`` imports asyncpg on first use), and for the
dashboard (``relaybus dashboard`` imports ``relaybus.web``, the web extra, when it runs).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import relaybus

PACKAGE_DIR = Path(relaybus.__file__).resolve().parent
# function-local imports allowed only of these: the stores, the dashboard (the web extra) and
# the metrics (the prometheus extra), which load optional libraries
LAZY_OK = ("relaybus.stores.", "relaybus.web", "relaybus.prometheus")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def resolve(module: str, path: Path, node: ast.ImportFrom | ast.Import) -> Iterator[str]:
    """The relaybus modules one import statement names."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "relaybus":
                yield alias.name
        return
    if node.level:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if base.split(".")[0] != "relaybus":
        return
    yield base
    for alias in node.names:  # `from . import x` where x is a module
        if f"{base}.{alias.name}" in MODULES:
            yield f"{base}.{alias.name}"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        stmt = pending.pop()
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            yield stmt
        elif isinstance(stmt, ast.If):
            if not _is_type_checking(stmt):
                pending.extend(stmt.body)
            pending.extend(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody, *(h.body for h in stmt.handlers)):
                pending.extend(block)


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = {
            target
            for node in module_level_imports(tree)
            for target in resolve(module, path, node)
            if target in MODULES and target != module
        }
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_package_has_modules_to_check() -> None:
    assert {"relaybus", "relaybus._bus", "relaybus._runtime.worker"} <= set(MODULES)
    assert "relaybus._runtime.executor" in import_graph()["relaybus._runtime.worker"]


def test_the_import_graph_has_no_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one() -> None:  # the checker itself can fail
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_function_local_import_of_relaybus_modules() -> None:
    offenders = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    for target in resolve(module, path, node):
                        if not target.startswith(LAZY_OK):
                            offenders.append(f"{module}.{func.name} imports {target}")
    assert offenders == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_module_imports_on_its_own(module: str) -> None:
    # A __main__ module runs its command when imported: run it with --help instead.
    if module.endswith(".__main__"):
        args = ["-m", module.removesuffix(".__main__"), "--help"]
    else:
        args = ["-c", f"import {module}"]
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
