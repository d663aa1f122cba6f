"""The import structure of ``encore/``: no cycles, and light serving and server processes.

Why parse instead of import: a cycle hidden behind a function-level import never shows at
import time, yet it still ties the two modules together (either one's change, fingerprint
or test reaches the other). Every ``import`` statement counts, wherever it sits, except
the ones under ``if TYPE_CHECKING:``, which never run.

Why a subprocess for the process checks: ``sys.modules`` of the test process already holds
whatever other tests imported; a fresh interpreter shows what one import really pulls in.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "encore"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: module level, in functions, in classes."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is an ``encore`` module (``a.b.func`` -> ``a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _edges(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``encore`` modules ``module`` imports; ``from pkg import sub`` counts ``pkg.sub``."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            if node.level:
                # Relative: level 1 is the module's own package (a package's own self).
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from pkg import sub` is an edge to pkg.sub; `from pkg import name` one to pkg.
            names = [f"{stem}.{alias.name}" for alias in node.names]
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                targets.add(target)
    # Importing a.b.c runs a/__init__ and a/b/__init__ first; those are edges too, except a
    # module's own ancestors, which are always initialised before it.
    for target in list(targets):
        parts = target.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in modules and parent != module and not module.startswith(parent + "."):
                targets.add(parent)
    return targets


def import_graph() -> dict[str, set[str]]:
    """``module -> modules it imports`` for every module under ``encore/``."""
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def strongconnect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                strongconnect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return [_cycle_in(graph, set(component)) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A concrete cycle through the component's first module (breadth-first, shortest)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & component):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if succ not in parents:
                    parents[succ] = node
                    following.append(succ)
        frontier = following
    return sorted(component)


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The parser itself: a hidden function-level import and a relative import are edges."""
    (tmp_path / "encore" / "pkg").mkdir(parents=True)
    (tmp_path / "encore" / "__init__.py").write_text("")
    (tmp_path / "encore" / "pkg" / "__init__.py").write_text("from . import low\n")
    (tmp_path / "encore" / "pkg" / "low.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from encore.pkg.high import X\n"
        "def f():\n    from .high import g\n    return g\n"
    )
    (tmp_path / "encore" / "pkg" / "high.py").write_text("from encore.pkg import low\ndef g(): ...\n")
    modules = {_module_name_under(tmp_path, p): p for p in sorted((tmp_path / "encore").rglob("*.py"))}
    graph = {name: _edges(name, path, modules) for name, path in modules.items()}
    assert graph["encore.pkg.low"] == {"encore.pkg.high"}
    assert "encore.pkg.low" in graph["encore.pkg.high"]
    assert "encore.pkg.low" in graph["encore.pkg"]
    cycles = find_cycles(graph)
    assert len(cycles) == 1 and {"encore.pkg.low", "encore.pkg.high"} <= set(cycles[0])


def _module_name_under(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_no_import_cycles() -> None:
    """No two ``encore`` modules import each other, directly or through others, at any level."""
    cycles = find_cycles(import_graph())
    shown = "\n".join(" -> ".join(cycle) for cycle in cycles)
    assert not cycles, f"{len(cycles)} import cycle(s) under encore/:\n{shown}"


#: What a serving or server process must not load: the training stack and its libraries.
TRAINING_MODULES = (
    "implicit",
    "sklearn",
    "catboost",
    "scipy.sparse.linalg",
    "encore.recommenders",
    "encore.ranking",
    "encore.evaluation",
    "encore.pipeline",
    "encore.components",
    "encore.config.experiment",
    "encore.data",
)

LIGHT_PROCESSES = {
    # The recommendation service: `python -m encore.serving` and what it loads to serve.
    "serving": ("encore.serving.app", "encore.serving.__main__", "encore.serving.blended_model",
                "encore.serving.pyfunc"),
    # The MLflow-server command line (start.sh & co.), every command's module included.
    "server CLI": ("encore.mlflow_server.__main__", "encore.mlflow_server.cli", "encore.mlflow_server.preflight",
                   "encore.mlflow_server.schema", "encore.mlflow_server.operations",
                   "encore.mlflow_server.auth_config", "encore.mlflow_server.auth_admin"),
    # What the MLflow server process itself imports: the authorization function of its auth config.
    "auth plug-in": ("encore.mlflow_server.auth_plugin",),
}


def _loaded_after_import(modules: tuple[str, ...]) -> list[str]:
    """``sys.modules`` of a fresh interpreter after importing ``modules`` (this worktree first)."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("process", sorted(LIGHT_PROCESSES))
def test_light_processes_import_no_training_code(process: str) -> None:
    """The service and the server tooling start without implicit, scikit-learn, CatBoost or any
    Encore training module: lighter processes, and no training change reaches them."""
    loaded = _loaded_after_import(LIGHT_PROCESSES[process])
    assert set(LIGHT_PROCESSES[process]) <= set(loaded)  # the check saw the imports happen
    heavy = sorted(m for m in loaded if any(m == t or m.startswith(t + ".") for t in TRAINING_MODULES))
    assert not heavy, f"the {process} process imports training code: {', '.join(heavy)}"


def test_the_light_process_check_sees_training_imports() -> None:
    """The check itself: importing the experiment config does load the kinds and implicit."""
    loaded = set(_loaded_after_import(("encore.config.experiment",)))
    assert {"encore.recommenders.als", "implicit", "encore.config.experiment"} <= loaded
