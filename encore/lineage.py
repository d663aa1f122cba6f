"""What produced an output: the data files it read, the code that computed it, the packages.

Reuse of a component's output is keyed on all three (see :func:`encore.pipeline.reuse_keys.fingerprint`),
so pointing at another copy of the data, editing a data file in place, changing the code of a
component or a module it imports, or upgrading a key package never serves an old output.

* **Data**: the SHA-256 of each input file. Hashing a large file on every run would be slow,
  so digests are cached per file by (size, mtime, device, inode, ctime): a file none of which
  changed is not read again; any change re-hashes it. The inode and ctime catch a file replaced
  by one of the same size and a copied mtime (``cp -p``, ``rsync -a``, ``tar x``), which the
  kernel cannot forge: any write, rename or ``utime`` sets the ctime to the current time.
* **Code**: the SHA-256 of the code of a module and of every module it imports, transitively
  (found by parsing the imports, also those inside functions), that can change an output. The
  walk stops at code that records, runs or serves outputs without computing them — tracking,
  the MLflow server, the pipeline's own catalogue, keys, execution and CLI, the serving
  process (:data:`NOT_COMPUTING_PACKAGES`, :data:`NOT_COMPUTING_MODULES`) — so editing those
  recomputes nothing. Each module is hashed as its syntax tree without docstrings, so editing a
  comment, a docstring or the layout recomputes nothing either, while any code edit does.
  The list is declared, not inferred, and errs towards recomputing: ``encore.progress`` stays
  in (its ``batches`` sets batch bounds), as does ``encore.lineage`` (``prepare``
  records the data digests it computes).
* **Packages**: the versions of the packages that compute results (implicit, catboost, ...).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Mapping
from functools import cache, lru_cache
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

from encore.config.envfile import REPO_ROOT
from encore.data.fetching import sha256_file

log = logging.getLogger(__name__)

KEY_PACKAGES = ("implicit", "catboost", "scikit-learn", "mlflow", "pandas", "numpy", "scipy", "pydantic", "pyspark")
MISSING = "missing"
"""The digest recorded for an input file that does not exist (yet)."""

_memory: dict[str, tuple[int | str, ...]] = {}


def _stat_key(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    return (stat.st_size, stat.st_mtime_ns, stat.st_dev, stat.st_ino, stat.st_ctime_ns)


def file_digests(files: Mapping[str, Path], cache_file: Path | None = None) -> dict[str, str]:
    """``{role: sha256}`` of ``files`` (``"missing"`` for absent ones), hashing only files whose
    size, modification time, device, inode or change time changed since they were last hashed
    (in this process or, with ``cache_file``, in an earlier one).

    A cache entry is ``[size, mtime_ns, dev, inode, ctime_ns, sha256]``; entries of
    another form (older versions kept ``[size, mtime_ns, sha256]``) are ignored, so the file is
    hashed again.
    """
    stored = _read_cache(cache_file)
    digests: dict[str, str] = {}
    changed = False
    for role, path in sorted(files.items()):
        key = str(Path(path).resolve())
        try:
            stat = Path(path).stat()
        except OSError:
            digests[role] = MISSING
            continue
        now = _stat_key(stat)
        entry = _memory.get(key) or stored.get(key)
        if _valid(entry) and tuple(entry[:5]) == now:
            digest = str(entry[5])
        else:
            digest = sha256_file(path)
            changed = True
        _memory[key] = (*now, digest)
        stored[key] = list(_memory[key])
        digests[role] = digest
    if changed and cache_file is not None:
        _write_cache(cache_file, stored)
    return digests


def _valid(entry: object) -> bool:
    return (isinstance(entry, tuple | list) and len(entry) == 6
            and all(isinstance(v, int) and not isinstance(v, bool) for v in entry[:5])
            and isinstance(entry[5], str))


def _read_cache(cache_file: Path | None) -> dict[str, list]:
    if cache_file is None or not cache_file.is_file():
        return {}
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache only costs a re-hash
    return data if isinstance(data, dict) else {}


def _write_cache(cache_file: Path, data: dict[str, list]) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True))
    tmp.replace(cache_file)


NOT_COMPUTING_PACKAGES: tuple[str, ...] = ("encore.tracking", "encore.mlflow_server")
"""Packages whose code records, serves or administers outputs but never computes one: MLflow
runs, client and model registry; the MLflow server's settings, auth and CLI."""

NOT_COMPUTING_MODULES: frozenset[str] = frozenset({
    # How components are chosen, keyed, run and driven from the command line. What they decide
    # enters the reuse key as data instead: the config sections, the upstream fingerprints, the
    # input files' digests. The fingerprint code changes the keys by itself when it changes them.
    "encore.pipeline",
    "encore.pipeline.__main__",
    "encore.pipeline.catalogue",
    "encore.pipeline.cli",
    "encore.pipeline.execution",
    "encore.pipeline.folds",
    "encore.pipeline.reuse_keys",
    "encore.pipeline.runner",
    # The serving process: it loads a registered bundle; only the bundle's writer
    # (encore.serving.pyfunc, used by ``register``) shapes an output.
    "encore.serving.__main__",
    "encore.serving.app",
    "encore.serving.events",
    "encore.serving.settings",
})
"""Modules whose code cannot change a component's output, so the import walk of
:func:`module_closure` neither hashes them nor follows their imports."""


def computes(module: str) -> bool:
    """Whether ``module`` can change an output (it is not declared as :data:`NOT_COMPUTING_MODULES`
    or inside :data:`NOT_COMPUTING_PACKAGES`)."""
    if module in NOT_COMPUTING_MODULES:
        return False
    return not any(module == p or module.startswith(f"{p}.") for p in NOT_COMPUTING_PACKAGES)


@cache
def code_digest(module: str) -> str:
    """SHA-256 over the code of ``module`` and of every module of its :func:`module_closure`.

    Each module enters as its syntax tree without docstrings (:func:`code_text`): an edit of a
    comment, a docstring or the layout keeps the digest, any edit of code changes it.
    """
    digest = hashlib.sha256()
    for name in sorted(module_closure(module)):
        digest.update(name.encode() + b"\0" + code_text(name).encode() + b"\0")
    return digest.hexdigest()


@cache
def module_closure(module: str) -> frozenset[str]:
    """``module`` and the modules it imports, transitively, that can change an output: those of
    ``encore`` and of ``module``'s own top-level package (a user's plug-in package), less what
    :func:`computes` rules out (neither hashed nor followed)."""
    roots = tuple(dict.fromkeys(("encore", module.partition(".")[0])))
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(n for n in _imports(name, roots) - seen if computes(n))
    return frozenset(seen)


def code_text(module: str) -> str:
    """The code of ``module`` as :func:`ast.dump` of its syntax tree, every string statement
    (docstrings, attribute docstrings: no effect at run time) left out. Comments and layout are
    not in a syntax tree; line numbers are not dumped. The dump's format is Python's own, so a
    new Python version may change every digest, as a new package version does."""
    return _code_text(_source(module))


@lru_cache(maxsize=1024)
def _code_text(source: bytes) -> str:
    # Keyed on the source itself: an edited file is parsed anew, an unchanged one only once.
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            node.body = [stmt for stmt in body if not _is_string_statement(stmt)]  # type: ignore[attr-defined]
    return ast.dump(tree)


def _is_string_statement(stmt: ast.AST) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _source(module: str) -> bytes:
    spec = find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot find module {module}")
    return Path(spec.origin).read_bytes()


def _is_module(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _imports(module: str, roots: tuple[str, ...] = ("encore",)) -> set[str]:
    """The modules under ``roots`` that ``module`` imports, at module level or inside functions
    (parents included: importing ``encore.data.parsing`` runs ``encore/__init__.py`` and
    ``encore/data/__init__.py`` too)."""
    spec = find_spec(module)
    is_package = spec is not None and spec.submodule_search_locations is not None
    package = module if is_package else module.rpartition(".")[0]
    prefixes = tuple(f"{root}." for root in roots)
    names, imported_from = _imported_names(_source(module), package)
    names = set(names)
    for source, alias in imported_from:
        # ``from encore import tracking``: the imported name may be a module itself.
        # Only asked under roots: find_spec imports the parent package (mlflow.server: ~4 s).
        if (source.startswith(prefixes) or source in roots) and _is_module(f"{source}.{alias}"):
            names.add(f"{source}.{alias}")
    found: set[str] = set()
    for name in names:
        if not name.startswith(prefixes):
            continue
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {name for name in found if _is_module(name)}


@lru_cache(maxsize=1024)
def _imported_names(source: bytes, package: str) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """The module names ``source`` imports (relative ones resolved against ``package``), and the
    ``(module, name)`` pairs of its ``from module import name`` statements."""
    names: set[str] = set()
    imported_from: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # ``from .als import X`` inside a package
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            imported_from |= {(module, alias.name) for alias in node.names}
    return frozenset(names), frozenset(imported_from)


@cache
def package_versions() -> dict[str, str]:
    """Versions of the packages that compute Encore's results (recorded on every run)."""
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """Current commit, with ``-dirty`` when the work tree has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
