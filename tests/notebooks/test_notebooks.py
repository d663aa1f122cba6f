"""Both notebooks run top to bottom in a real Jupyter kernel against a tiny pipeline run: a cell
error fails. The kernel has no ``ENCORE_DATA_DIR`` and starts in ``notebooks/`` (Jupyter's
default) for one notebook and in the repository root for the other: runs are found by their
MLflow tags. The committed notebooks hold no outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO_ROOT, TinyRegistry

NOTEBOOKS = REPO_ROOT / "notebooks"


def execute(name: str, cwd: Path) -> str:
    """Run ``notebooks/<name>`` in a fresh python3 kernel started in ``cwd``; every text output, joined."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + output.get("data", {}).get("text/plain", ""))
            assert output.get("output_type") != "error", output
    return "\n".join(texts)


@pytest.fixture
def kernel_env(tiny_registry: TinyRegistry, monkeypatch: pytest.MonkeyPatch) -> TinyRegistry:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tiny_registry.uri)
    monkeypatch.delenv("ENCORE_DATA_DIR", raising=False)
    # The checkout under test, as `pip install -e .` gives a user; a relative PYTHONPATH the test
    # run may carry would point elsewhere from notebooks/.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return tiny_registry


def test_compare_runs_notebook_runs_from_its_own_folder(kernel_env: TinyRegistry) -> None:
    text = execute("compare_runs.ipynb", cwd=NOTEBOOKS)
    assert "tiny-registry" in text  # the run was found by its note
    assert "ranker ndcg@10" in text and "paired t-test" in text  # the per-segment comparison
    assert "artist_" in text  # users' histories and lists by name
    assert text.count("<Figure") == 3  # every model at every k, feature importance, accuracy vs novelty


def test_eda_notebook_runs_from_the_repository_root(kernel_env: TinyRegistry) -> None:
    text = execute("eda.ipynb", cwd=REPO_ROOT)
    assert "synthetic, 300 users" in text
    assert "top 1% items" in text and "cold test users" in text and "items with a tag" in text
    assert text.count("<Figure") == 2  # long tails, listening over time (synthetic data has timestamps)


@pytest.mark.parametrize("name", ["compare_runs.ipynb", "eda.ipynb"])
def test_committed_notebooks_hold_no_outputs(name: str) -> None:
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
