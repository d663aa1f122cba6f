"""The pipeline package: its entry points, its public names, and no import cycle inside it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import encore.pipeline
from encore.pipeline import catalogue, cli, component, execution, reuse_keys
from tests.conftest import REPO_ROOT, TINY_SYNTHETIC, make_config

PIPELINE = REPO_ROOT / "encore" / "pipeline"


def tiny_experiment(tmp_path: Path) -> list[str]:
    """CLI arguments for the tiny synthetic experiment, writing only under ``tmp_path``."""
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump(TINY_SYNTHETIC))
    return ["-e", str(experiment), "--set", f"output_dir={tmp_path / 'outputs'}",
            "--set", f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"]


ENTRY_POINTS = {
    "encore.pipeline": [sys.executable, "-m", "encore.pipeline"],
    "encore.pipeline.runner": [sys.executable, "-m", "encore.pipeline.runner"],
    "scripts.pipeline.runner": [sys.executable, "-m", "scripts.pipeline.runner"],
    "run.sh": ["bash", "scripts/pipeline/run.sh"],
}


@pytest.mark.pipeline  # starts the pipeline CLI in a new interpreter
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_pipeline_entry_point_reaches_the_cli(entry: str) -> None:
    shown = subprocess.run([*ENTRY_POINTS[entry], "--help"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "--components" in shown.stdout and "--force" in shown.stdout


@pytest.mark.pipeline  # starts the pipeline CLI in a new interpreter
def test_run_sh_passes_its_arguments_and_a_bad_name_is_one_line(tmp_path: Path) -> None:
    wrong = subprocess.run([*ENTRY_POINTS["run.sh"], *tiny_experiment(tmp_path), "-c", "prepare,nonesuch"],
                           cwd=REPO_ROOT, capture_output=True, text=True)
    known = ", ".join(catalogue.all_components(make_config(tmp_path, TINY_SYNTHETIC)))
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [f"error: unknown component(s) nonesuch; known: {known}"]
    assert not (tmp_path / "outputs").exists()  # names are checked before any work


@pytest.mark.pipeline  # starts the pipeline CLI in a new interpreter
def test_a_component_run_as_a_program_writes_the_output_the_pipeline_keys(tmp_path: Path) -> None:
    """``python -m scripts.components.prepare`` (a shim running ``encore.components.prepare``
    as ``__main__``) computes the key the in-process pipeline computes."""
    args = tiny_experiment(tmp_path)
    ran = subprocess.run([sys.executable, "-m", "scripts.components.prepare", *args], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    config = make_config(tmp_path, TINY_SYNTHETIC)
    expected = reuse_keys.output_dir(config, "prepare")
    assert [p.name for p in (tmp_path / "outputs" / "tiny").iterdir() if not p.name.startswith(".")] == [expected.name]
    assert (expected / "summary.json").is_file()


def test_the_public_api_names_the_defining_objects() -> None:
    defined = {"run_pipeline": execution, "run_component": execution, "fingerprint": reuse_keys,
               "output_dir": reuse_keys, "tuned": reuse_keys, "pipeline_components": catalogue,
               "all_components": catalogue, "generator_names": catalogue, "dependencies": catalogue,
               "enabled": catalogue, "component_main": cli, "main": cli, "Result": component,
               "Context": component, "ComponentFailed": component}
    assert set(encore.pipeline.__all__) == set(defined)
    for name, module in defined.items():
        assert getattr(encore.pipeline, name) is getattr(module, name), name
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        _ = encore.pipeline.nonesuch


def _pipeline_imports(path: Path) -> set[str]:
    """The ``encore.pipeline.*`` modules ``path`` imports, inside functions too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "encore.pipeline":
                names |= {f"encore.pipeline.{alias.name}" for alias in node.names
                          if (PIPELINE / f"{alias.name}.py").is_file()}
    return {n for n in names if n.startswith("encore.pipeline.")}


def test_the_pipeline_package_has_no_import_cycle() -> None:
    graph = {f"encore.pipeline.{p.stem}": _pipeline_imports(p) for p in PIPELINE.glob("*.py") if p.stem != "__init__"}
    assert "encore.pipeline.runner" not in graph["encore.pipeline.folds"]  # the cycle there was
    assert not _pipeline_imports(PIPELINE / "__init__.py")  # its names load on first use
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
    # The layers inside: execution and the CLI above the keys, the keys above the catalogue.
    assert not graph["encore.pipeline.catalogue"] - {"encore.pipeline.component"}
    assert not {"encore.pipeline.execution", "encore.pipeline.cli"} & graph["encore.pipeline.reuse_keys"]
    assert not {"encore.pipeline.execution", "encore.pipeline.cli"} & graph["encore.pipeline.folds"]
