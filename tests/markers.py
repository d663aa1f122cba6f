"""Markers applied at collection, and a guard that fails a test whose behaviour needs a marker it lacks.

The markers are declared once, in ``pyproject.toml`` (``[tool.pytest.ini_options] markers``).
A test gets them without writing them:

* ``packaging``: it lives in ``tests/packaging/`` (builds and installs a wheel);
* ``browser``: it lives in ``tests/browser/`` (drives the MLflow UI in headless Chromium);
* ``integration``: it lives in ``tests/integration/``, uses a service fixture (``postgres``, ``s3``,
  ``mlflow_server``), or starts the recommendation service (``python -m encore.serving`` / uvicorn);
* ``realdata``: it (or a fixture it uses) takes ``lastfm2k_dir`` or reads ``LASTFM2K_DIR``;
* ``spark``: it (or a fixture it uses) takes the ``spark`` or ``spark_cluster`` fixture, calls ``spark_session``,
  configures ``engine: spark`` or hands a process ``ENCORE_SPARK_CONFIG``;
* ``pipeline``: it (or a fixture it uses, or a helper of its module they call) runs the pipeline:
  ``run_pipeline``, ``ran_pipeline``, the CLI in-process (``runner.main``), ``run.sh`` or
  ``python -m encore.pipeline…`` in a subprocess;
* ``unit``: none of the other markers declared in ``pyproject.toml`` fits. ``make test-fast`` runs
  ``-m unit``.

Detection reads the source (a test's function, the fixtures in its closure and the module-level
helpers they call, transitively), so moving a test or adding one needs no bookkeeping. Because a
source reading can miss an indirection, a runtime guard checks what a test actually did: an
audit hook sees every file a test writes and every process it starts, and a test that completed a
pipeline component (its ``_SUCCESS.json`` marker was renamed into place, or is found in the test's
``tmp_path`` afterwards, written by a process the test started), read the real Last.fm 2K
folder, launched Spark or started the service without the matching marker fails with one line
naming the marker. So ``-m unit`` can never quietly run a pipeline.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

# A folder (a path part under tests/) whose every test carries the marker.
FOLDER_MARKERS = {"integration": "integration", "packaging": "packaging", "browser": "browser"}

# A fixture anywhere in a test's closure that implies the marker.
FIXTURE_MARKERS = {
    "lastfm2k_dir": "realdata",
    "spark": "spark",
    "spark_cluster": "spark",
    "postgres": "integration",
    "s3": "integration",
    "mlflow_server": "integration",
}

# Names whose use in a test, fixture or module helper implies the marker.
NAME_MARKERS = {
    "run_pipeline": "pipeline",
    "ran_pipeline": "pipeline",
    "pipeline_main": "pipeline",
    "RUN_SH": "pipeline",
    "LASTFM2K_DIR": "realdata",
    "REAL_LASTFM2K": "realdata",
    "spark_session": "spark",
}

# ``python -m <module>`` in a command list: the module's prefix implies the marker (unless --help).
MODULE_MARKERS = {"encore.pipeline": "pipeline", "encore.serving": "integration", "uvicorn": "integration"}

GUARD_KEY = pytest.StashKey[set[str]]()


# ---------------------------------------------------------------- reading the source


class _Uses(ast.NodeVisitor):
    """The markers one function's body implies by itself, and the module functions it calls."""

    def __init__(self) -> None:
        self.markers: set[str] = set()
        self.calls: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in NAME_MARKERS:
            self.markers.add(NAME_MARKERS[node.id])
        self.calls.add(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # runner.main(...) is the pipeline CLI run in-process
        if node.attr == "main" and isinstance(node.value, ast.Name) and node.value.id == "runner":
            self.markers.add("pipeline")
        if node.attr in NAME_MARKERS:
            self.markers.add(NAME_MARKERS[node.attr])
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            if node.value.endswith("run.sh"):  # scripts/pipeline/run.sh, or a path built from its parts
                self.markers.add("pipeline")
            if "run_module(" in node.value and "encore.pipeline" in node.value:  # python -c "...runpy..."
                self.markers.add("pipeline")
            if "engine=spark" in node.value:
                self.markers.add("spark")

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            if _const(key) == "engine" and _const(value) == "spark":
                self.markers.add("spark")
            if _const(key) == "ENCORE_SPARK_CONFIG":  # Spark settings handed to a process it starts
                self.markers.add("spark")
        self.generic_visit(node)

    def visit_List(self, node: ast.List) -> None:
        self.markers |= _command_markers([_const(element) for element in node.elts])
        self.generic_visit(node)


def _const(node: ast.AST | None) -> Any:
    return node.value if isinstance(node, ast.Constant) else None


def _command_markers(args: list[Any]) -> set[str]:
    """Markers of a command line that runs ``python -m <module>`` (nothing for ``--help``)."""
    if "--help" in args or "-h" in args:
        return set()
    found = set()
    for flag, module in itertools.pairwise(args):
        if flag == "-m" and isinstance(module, str):
            found |= {marker for prefix, marker in MODULE_MARKERS.items()
                      if module == prefix or module.startswith(prefix + ".")}
    return found


@functools.cache
def _module_markers(filename: str) -> dict[str, set[str]]:
    """For every function defined in ``filename`` (by name): the markers it implies, transitively."""
    tree = ast.parse(Path(filename).read_text(), filename)
    uses: dict[str, _Uses] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            visitor = _Uses()
            for statement in node.body:
                visitor.visit(statement)
            if node.name in uses:  # same name twice (methods of two classes): keep both readings
                visitor.markers |= uses[node.name].markers
                visitor.calls |= uses[node.name].calls
            uses[node.name] = visitor
    markers = {name: set(visitor.markers) for name, visitor in uses.items()}
    changed = True
    while changed:  # a helper that calls a helper that runs the pipeline runs the pipeline
        changed = False
        for name, visitor in uses.items():
            inherited = set().union(*(markers[c] for c in visitor.calls if c in markers and c != name))
            if not inherited <= markers[name]:
                markers[name] |= inherited
                changed = True
    return markers


def _function_markers(function: Any, root: Path) -> set[str]:
    """The markers a test or fixture function implies, when it is defined under ``root`` (not pytest's own)."""
    function = inspect.unwrap(function)
    try:
        filename = inspect.getsourcefile(function)
    except TypeError:
        return set()
    if filename is None or not Path(filename).resolve().is_relative_to(root):
        return set()
    return _module_markers(str(Path(filename).resolve())).get(function.__name__, set())


def implied_markers(item: pytest.Item) -> set[str]:
    """Every heavy marker a collected test needs, by folder, fixture and source."""
    root = item.config.rootpath.resolve()
    path = Path(str(item.path)).resolve()
    found = {FOLDER_MARKERS[part] for part in path.relative_to(root).parts[:-1]
             if part in FOLDER_MARKERS} if path.is_relative_to(root) else set()
    fixturenames = getattr(item, "fixturenames", ())
    found |= {FIXTURE_MARKERS[name] for name in fixturenames if name in FIXTURE_MARKERS}
    function = getattr(item, "function", None)
    if function is not None:
        found |= _function_markers(function, root)
    info = getattr(item, "_fixtureinfo", None)
    for name in fixturenames:
        for definition in (info.name2fixturedefs.get(name, ()) if info is not None else ()):
            found |= _function_markers(definition.func, root)
    return found


def heavy_markers(config: pytest.Config) -> set[str]:
    """Every declared marker but ``unit`` (the declarations in pyproject.toml are the one list)."""
    return {line.split(":")[0].strip() for line in config.getini("markers")} - {"unit"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each test the heavy markers its folder, fixtures and source imply; the rest are ``unit``."""
    heavy = heavy_markers(config)
    for item in items:
        for name in sorted(implied_markers(item) - {mark.name for mark in item.iter_markers()}):
            item.add_marker(name)
        if not {mark.name for mark in item.iter_markers()} & heavy:
            item.add_marker("unit")


# ---------------------------------------------------------------- the runtime guard

_current: list[pytest.Item] = []


def _real_data_dir() -> str:
    from tests.paths import LASTFM2K_DIR

    return str(LASTFM2K_DIR.resolve())


def observed_markers(event: str, args: tuple[Any, ...], real_data: str) -> set[str]:
    """The markers one audited event proves a test needs (see :func:`sys.addaudithook`)."""
    if event == "os.rename" and isinstance(args[1], str | os.PathLike):
        # io.write_json writes a component's marker to a temp file, then renames it into place
        return {"pipeline"} if Path(os.fsdecode(args[1])).name == "_SUCCESS.json" else set()
    if event == "open" and isinstance(args[0], str | os.PathLike):
        path = os.path.abspath(os.fsdecode(args[0]))
        return {"realdata"} if path == real_data or path.startswith(real_data + os.sep) else set()
    if event == "subprocess.Popen":
        command = args[1] if isinstance(args[1], list | tuple) else [args[1]]
        command = [os.fsdecode(a) if isinstance(a, str | bytes | os.PathLike) else a for a in command]
        found = _command_markers(command)
        words = [a for a in command if isinstance(a, str)]
        if any(Path(a).name == "spark-submit" for a in words):
            found.add("spark")
        if "--help" not in words and any(Path(a).name == "run.sh" and "pipeline" in a for a in words):
            found.add("pipeline")
        if any(Path(a).name in ("initdb", "pg_ctl", "moto_server") for a in words):
            found.add("integration")
        if any(real_data in a for a in words):
            found.add("realdata")
        return found
    return set()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _current or event not in ("open", "os.rename", "subprocess.Popen"):
        return
    item = _current[-1]
    try:
        needed = observed_markers(event, args, item.config.stash[_REAL_DATA])
    except Exception:  # an audit hook must never break the code it watches
        return
    if needed:
        item.stash.setdefault(GUARD_KEY, set()).update(needed)


_REAL_DATA = pytest.StashKey[str]()
_hook_added: list[bool] = []


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REAL_DATA] = _real_data_dir()
    if not _hook_added:  # audit hooks cannot be removed: add one per process
        sys.addaudithook(_audit)
        _hook_added.append(True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _current.append(item)
    try:
        yield
    finally:
        _current.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if call.when != "call":
        return
    observed = item.stash.get(GUARD_KEY, set())
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if isinstance(tmp_path, Path) and next(tmp_path.rglob("_SUCCESS.json"), None) is not None:
        observed = observed | {"pipeline"}  # a component completed, maybe in a process the test started
    missing = sorted(observed - {mark.name for mark in item.iter_markers()})
    if missing and report.outcome != "skipped":
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} needs the marker(s) {', '.join(missing)} (it did what they mark) "
                           "but lacks them: teach tests/markers.py to see why, or mark it")
