"""Notebooks hold no logic: their code cells run against a finished tiny pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from encore.config.experiment import EncoreConfig
from encore.pipeline.runner import run_pipeline
from tests.conftest import REPO_ROOT


def test_compare_notebook_runs(tiny_config: EncoreConfig, monkeypatch, tmp_path: Path) -> None:
    run_pipeline(tiny_config)
    run_pipeline(tiny_config)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tiny_config.tracking.tracking_uri)
    notebook = json.loads((REPO_ROOT / "notebooks/compare_runs.ipynb").read_text())
    namespace: dict = {"display": lambda obj: namespace.setdefault("shown", []).append(obj)}
    for cell in (c for c in notebook["cells"] if c["cell_type"] == "code"):
        source = "".join(cell["source"]).replace(
            'load_config(REPO_ROOT / "experiments" / "lastfm2k.yaml")', "TINY_CONFIG")
        exec(compile(source, "notebook", "exec"), namespace | {"TINY_CONFIG": tiny_config}, namespace)
    assert len(namespace["leaderboard"]) == 2
    assert isinstance(namespace["comparison"], pd.DataFrame) and "ranker" in namespace["comparison"].index
