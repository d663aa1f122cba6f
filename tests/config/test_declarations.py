"""One declaration per concept: component, segment and ranking-metric names, the number aliases
and the strict base are each written once and imported everywhere else; moving a kind's
defaults into its config class left every shipped experiment's resolved config unchanged."""

from __future__ import annotations

import ast
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from encore.config import component_names, types
from encore.config.experiment import REPO_ROOT, MachineSettings, PromoteConfig, TuningConfig, load_config
from encore.evaluation import evaluator, fold_pooling, metric_names, segments
from encore.evaluation.metrics.accuracy import RANKING_METRICS
from encore.pipeline import runner
from encore.ranking import segment_policy

SNAPSHOT = Path(__file__).with_name("resolved_experiments.json")
NO_ENV = MachineSettings(_env_file=None, mlflow_tracking_uri=None, encore_data_dir=None, encore_output_dir=None)
SCANNED = ("encore", "benchmarks", "scripts")
"""Where a copy would matter. Tests are left out: their literals are expected values."""
SERVING = REPO_ROOT / "encore" / "serving"
"""Left out of the scan for number bounds and strict models: the service's limits are the API's
(ports, batch sizes), not config sections, and the serving process imports no config code."""


def _resolved(path: Path | None) -> dict:
    config = load_config(path, settings=NO_ENV)
    text = json.dumps(config.model_dump(mode="json")).replace(str(REPO_ROOT), "<repo>")
    return {"fingerprint": config.fingerprint(), "resolved": json.loads(text)}


@pytest.mark.parametrize("name", json.loads(SNAPSHOT.read_text()))
def test_shipped_experiments_resolve_as_before(name: str) -> None:
    """The snapshot is what the code before the move resolved: same values, same instance order
    (the ranker's feature columns follow it), same fingerprint (existing outputs are reused).
    A deliberate change of an experiment or a default regenerates the snapshot in its commit."""
    expected = json.loads(SNAPSHOT.read_text())[name]
    actual = _resolved(None if name == "<defaults>" else REPO_ROOT / "experiments" / name)
    assert actual == expected
    assert list(actual["resolved"]["components"]) == list(expected["resolved"]["components"])


def test_every_shipped_experiment_is_in_the_snapshot() -> None:
    shipped = {path.name for path in (REPO_ROOT / "experiments").glob("*.yaml")}
    assert shipped == set(json.loads(SNAPSHOT.read_text())) - {"<defaults>"}


# --------------------------------------------------------------------------------------- the names
def test_component_names_are_the_runners_and_have_modules() -> None:
    for name in ("FIRST", "TUNE", "UNTUNED", "LAST", "ON_DEMAND"):
        assert getattr(runner, name) is getattr(component_names, name), name
    modules = {path.stem for path in (REPO_ROOT / "encore" / "components").glob("*.py")}
    # Every reserved name is a component module; every component module but the generator
    # template (which runs the instances) has a reserved name.
    assert set(component_names.RESERVED_NAMES) == modules - {"__init__", "generator"}
    assert len(set(component_names.RESERVED_NAMES)) == len(component_names.RESERVED_NAMES)


def test_segment_names_are_declared_once_and_shared() -> None:
    assert segments.SEGMENTS == ("all", "warm", "cold", "cold_items")
    assert evaluator.SEGMENTS is segments.SEGMENTS
    assert fold_pooling.POOLED_SEGMENTS is segments.POOLED_SEGMENTS
    assert segment_policy.SEGMENTS is segments.USER_SEGMENTS
    assert set(get_args(PromoteConfig.model_fields["segment"].annotation)) == set(segments.SEGMENTS)
    assert set(get_args(TuningConfig.model_fields["segment"].annotation)) == set(segments.POOLED_SEGMENTS)
    with pytest.raises(ValidationError):
        TuningConfig(segment="cold_items")


def test_ranking_metric_names_are_declared_once_and_shared() -> None:
    assert tuple(RANKING_METRICS) == metric_names.RANKING_METRIC_NAMES
    sweep = importlib.import_module("benchmarks.sweep")
    assert sweep.SEGMENTS is segments.POOLED_SEGMENTS


# --------------------------------------------------------------------------------------- no copies
def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for folder in SCANNED:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            yield path, ast.parse(path.read_text(), filename=str(path))


def _strings(node: ast.AST) -> set[str] | None:
    """The strings of a tuple / list / set display, or of a Literal[...] subscript; None otherwise."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
        node = node.slice
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        items = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return set(items) if len(items) == len(node.elts) else None
    return None


DECLARED_IN = {
    "segment names": (segments, {frozenset(s) for s in (segments.SEGMENTS, segments.POOLED_SEGMENTS,
                                                        segments.USER_SEGMENTS)}),
    "ranking-metric names": (metric_names, {frozenset(metric_names.RANKING_METRIC_NAMES)}),
    "component names": (component_names, {frozenset(component_names.RESERVED_NAMES),
                                          frozenset(component_names.LAST), frozenset(component_names.ON_DEMAND),
                                          frozenset(component_names.STANDALONE)}),
}


@pytest.mark.parametrize("concept", list(DECLARED_IN))
def test_no_copy_of_a_name_list(concept: str) -> None:
    """A tuple, list, set or Literal spelling out one of the declared name lists, anywhere but in
    its declaration, is a copy that can drift."""
    module, lists = DECLARED_IN[concept]
    home = Path(module.__file__)
    copies = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
        for path, tree in _sources() if path != home
        for node in ast.walk(tree)
        if (found := _strings(node)) is not None and len(found) > 1 and frozenset(found) in lists
    ]
    assert not copies, f"{concept} copied instead of imported from {module.__name__}: {', '.join(copies)}"


ALIAS_BOUNDS = {frozenset({("gt", 0)}), frozenset({("ge", 0)}), frozenset({("gt", 0), ("lt", 1)}),
                frozenset({("ge", 0), ("le", 1)})}


def test_no_copy_of_a_number_alias_or_the_strict_base() -> None:
    """``Field(gt=0)`` & co. are ``PositiveInt`` & co. of :mod:`encore.config.types`, and a model
    config forbidding extra keys is its ``Strict``: written anywhere else, they are copies."""
    home = Path(types.__file__)
    copies = []
    for path, tree in _sources():
        if path == home or path.is_relative_to(SERVING):
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            keywords = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            if node.func.id == "Field" and not node.args:
                bounds = frozenset((k, v) for k, v in keywords.items() if k in {"gt", "ge", "lt", "le"})
                if bounds in ALIAS_BOUNDS:
                    copies.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} Field({dict(bounds)})")
            if node.func.id == "ConfigDict" and keywords.get("extra") == "forbid":
                copies.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} ConfigDict(extra='forbid')")
    assert not copies, f"use encore.config.types instead: {', '.join(copies)}"
