"""Fixtures of the components tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def time_split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder (outputs and MLflow store) for the runs on the tiny synthetic time split: their
    ``prepare`` output is computed once and reused by fingerprint, whichever module runs first."""
    return tmp_path_factory.mktemp("time_split")
