"""Reuse keys cover the code that computes an output, and nothing else.

Every edit here is made to a copy of a module's source (``lineage._source`` is patched to
return the edited text), never to the repository: the keys are then computed as a run would.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from encore import lineage
from encore.config.experiment import EncoreConfig
from encore.pipeline.catalogue import GENERATOR_MODULE, all_components, component_module, dependencies, run_order
from encore.pipeline.reuse_keys import fingerprint
from tests.conftest import TINY_SYNTHETIC, make_config

Edit = Callable[[bytes], bytes]


def comment(source: bytes) -> bytes:
    """A comment added before the first top-level definition and one at the end: no code changes."""
    tree = ast.parse(source)
    first = next(n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))
    line = min([first.lineno, *(d.lineno for d in first.decorator_list)]) - 1
    lines = source.splitlines(keepends=True)
    return b"".join([*lines[:line], b"# a note on what follows\n", *lines[line:], b"\n# edited\n"])


def docstring(source: bytes) -> bytes:
    """The module docstring rewritten and the layout changed: still no code change."""
    tree = ast.parse(source)
    first = tree.body[0]
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant), "module has no docstring"
    lines = source.splitlines(keepends=True)
    rest = b"".join(lines[first.end_lineno:])
    return b'"""Rewritten: says something else."""\n\n\n' + rest.replace(b"\n\n\n", b"\n\n\n\n", 1)


def function_body(source: bytes) -> bytes:
    """A statement added to the first function's body: a code change."""
    tree = ast.parse(source)
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    function.body.insert(0, ast.parse("_edited = 1").body[0])
    return ast.unparse(tree).encode()


@pytest.fixture
def fresh_digests() -> Iterator[None]:
    """Code digests recomputed from (possibly patched) sources, and forgotten afterwards."""
    lineage.code_digest.cache_clear()
    lineage.module_closure.cache_clear()
    yield
    lineage.code_digest.cache_clear()
    lineage.module_closure.cache_clear()


def keys(config: EncoreConfig) -> dict[str, str]:
    lineage.code_digest.cache_clear()
    lineage.module_closure.cache_clear()
    return {name: fingerprint(config, name) for name in all_components(config)}


def keys_after(config: EncoreConfig, monkeypatch: pytest.MonkeyPatch, module: str, edit: Edit) -> dict[str, str]:
    """Every component's key with ``module``'s source edited by ``edit``."""
    original = lineage._source

    def edited(name: str) -> bytes:
        return edit(original(name)) if name == module else original(name)

    with monkeypatch.context() as patch:
        patch.setattr(lineage, "_source", edited)
        assert edited(module) != original(module)
        return keys(config)


def consumers(config: EncoreConfig, names: set[str]) -> set[str]:
    """``names`` and every component that reads their outputs, directly or not."""
    found = set(names)
    changed = True
    while changed:
        more = {c for c in all_components(config) if c not in found and set(dependencies(config, c)) & found}
        found |= more
        changed = bool(more)
    return found


NOT_COMPUTING = ["encore.mlflow_server.cli", "encore.mlflow_server.auth_admin", "encore.tracking.runs",
                 "encore.tracking.client", "encore.pipeline.cli", "encore.pipeline.execution",
                 "encore.pipeline.catalogue", "encore.pipeline.folds", "encore.serving.app"]


@pytest.mark.parametrize("module", NOT_COMPUTING)
@pytest.mark.parametrize("edit", [comment, function_body], ids=["comment", "function_body"])
def test_editing_tracking_server_or_cli_code_recomputes_nothing(tiny_config: EncoreConfig, fresh_digests: None,
                                                                monkeypatch: pytest.MonkeyPatch, module: str,
                                                                edit: Edit) -> None:
    before = keys(tiny_config)
    assert keys_after(tiny_config, monkeypatch, module, edit) == before


@pytest.mark.parametrize("edit", [comment, docstring], ids=["comment", "docstring"])
def test_editing_a_comment_or_docstring_of_computing_code_recomputes_nothing(
        tiny_config: EncoreConfig, fresh_digests: None, monkeypatch: pytest.MonkeyPatch, edit: Edit) -> None:
    before = keys(tiny_config)
    for module in ("encore.recommenders.als", "encore.components.ranker", "encore.evaluation.splits"):
        assert keys_after(tiny_config, monkeypatch, module, edit) == before, module


def test_editing_als_recomputes_its_instances_and_what_consumes_them_only(
        tiny_config: EncoreConfig, fresh_digests: None, monkeypatch: pytest.MonkeyPatch) -> None:
    before = keys(tiny_config)
    after = keys_after(tiny_config, monkeypatch, "encore.recommenders.als", function_body)
    changed = {name for name in before if after[name] != before[name]}
    als = {name for name, own in tiny_config.components.generators.items() if own.kind == "als"}
    assert als == {"als", "als128", "als32"}
    assert changed == consumers(tiny_config, als)
    assert {"ranker", "evaluate", "register", "promote"} <= changed
    assert not changed & {"prepare", "popular", "bpr", "ease", "ease500", "itemknn", "userknn", "friends"}


def test_tune_is_keyed_on_the_kinds_it_fits(tmp_path: Path, fresh_digests: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path, TINY_SYNTHETIC | {"tuning": {"grid": {"als": {"factors": [8, 16]}}}})
    before = fingerprint(config, "tune"), fingerprint(config, "prepare")
    with monkeypatch.context() as patch:
        original = lineage._source
        patch.setattr(lineage, "_source", lambda name: function_body(original(name)) if name.endswith(".als")
                      else original(name))
        lineage.code_digest.cache_clear()
        lineage.module_closure.cache_clear()
        after = fingerprint(config, "tune"), fingerprint(config, "prepare")
    assert after[0] != before[0] and after[1] == before[1]


def test_editing_shared_computing_code_recomputes_what_uses_it(
        tiny_config: EncoreConfig, fresh_digests: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk follows imports: the split code is part of prepare's key (so of every key), the
    ranking model's part of the ranker's (and of what reads the ranker), not of a generator's."""
    before = keys(tiny_config)
    after = keys_after(tiny_config, monkeypatch, "encore.evaluation.splits", function_body)
    assert all(after[name] != before[name] for name in before)
    after = keys_after(tiny_config, monkeypatch, "encore.ranking.model", function_body)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == consumers(tiny_config, {"ranker"})


NOT_COMPUTING = ("encore.tracking", "encore.mlflow_server", "encore.serving", "encore.pipeline.runner",
                 "encore.pipeline.cli", "encore.pipeline.execution", "encore.pipeline.folds",
                 "encore.pipeline.catalogue", "encore.pipeline.reuse_keys", "encore.pipeline.__main__")
BUNDLE_WRITER = {"encore.serving", "encore.serving.pyfunc", "encore.serving.rerank"}
"""What ``register`` needs to write the serving bundle (its output: the pyfunc model and the re-ranking
setting and side data), and nothing more of serving."""


def test_no_components_key_covers_tracking_server_serving_or_cli_code(tiny_config: EncoreConfig,
                                                                     fresh_digests: None) -> None:
    modules = {component_module(tiny_config, name).__name__ for name in run_order(tiny_config)}
    assert GENERATOR_MODULE in modules and len(modules) == 8  # prepare, tune, generator, ranker, rerank, evaluate, ...
    for module in sorted(modules):
        closure = lineage.module_closure(module)
        assert {"encore.pipeline.component", "encore.config.experiment"} <= closure, module
        allowed = BUNDLE_WRITER if module == "encore.components.register" else set()
        wrong = {m for m in closure - allowed if m.startswith(NOT_COMPUTING)}
        assert not wrong, f"{module}'s reuse key covers {sorted(wrong)}"


def test_only_rerank_and_register_keys_cover_the_re_ranking_steps(tiny_config: EncoreConfig,
                                                                   fresh_digests: None) -> None:
    """The config model holds ``components.rerank``'s settings, not its steps: editing a step
    re-runs rerank (and register, which writes them into the serving bundle), not the generators."""
    for name in run_order(tiny_config):
        module = component_module(tiny_config, name).__name__
        covers = "encore.reranking.steps" in lineage.module_closure(module)
        assert covers == (module in {"encore.components.rerank", "encore.components.register"}), module


def test_importing_a_component_loads_no_cli_or_execution_code() -> None:
    """The CLI is imported only when a component runs as a program (one interpreter for all:
    what the union of the imports loads, none of them loads)."""
    code = ("import sys\n"
            "def loaded(*modules):\n"
            "    for module in modules:\n"
            "        __import__(f'encore.components.{module}')\n"
            "    return sorted(m for m in sys.modules if m.startswith(('encore.pipeline.', 'encore.mlflow_server')))\n"
            "print(loaded('prepare', 'generator', 'tune', 'ranker', 'rerank', 'evaluate', 'register'))\n"
            "print(loaded('promote'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    computing, with_promote = out.splitlines()
    for name in ("encore.pipeline.cli", "encore.pipeline.execution", "encore.pipeline.runner", "encore.pipeline.folds"):
        assert f"'{name}'" not in with_promote, f"a component imports {name}"
    assert "'encore.pipeline.component'" in computing
    # promote checks the caller's MLflow-server credentials itself; no other component needs the server
    assert "encore.mlflow_server" not in computing


def test_a_plugin_kinds_key_covers_its_own_package(tmp_path: Path, fresh_digests: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's kind module and the modules of its own package it imports (here: a helper) are
    in its key; Encore's modules it imports too."""
    package = tmp_path / "my_kinds"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scoring.py").write_text("def score(x):\n    return x * 2\n")
    (package / "model.py").write_text("from encore.recommenders.kernels import topk\n"
                                      "from my_kinds.scoring import score\n\n"
                                      "def recommend(x):\n    return topk(score(x), 10)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    closure = lineage.module_closure("my_kinds.model")
    assert {"my_kinds", "my_kinds.scoring", "encore.recommenders.kernels"} <= closure
    before = lineage.code_digest("my_kinds.model")
    (package / "scoring.py").write_text("def score(x):\n    # twice as loud\n    return x * 2\n")
    lineage.code_digest.cache_clear()
    assert lineage.code_digest("my_kinds.model") == before
    (package / "scoring.py").write_text("def score(x):\n    return x * 3\n")
    lineage.code_digest.cache_clear()
    assert lineage.code_digest("my_kinds.model") != before
