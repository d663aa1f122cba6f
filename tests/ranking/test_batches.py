"""The ranking stage in batches: the same model and lists however users are batched, a seeded
row budget, and a memory-budgeted pipeline that stays under its budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from encore.arrays import hashed_uniform
from encore.components import ranker as ranker_component
from encore.config.experiment import EncoreConfig
from encore.outputs import RankerOutput
from encore.pipeline.component import Context
from encore.pipeline.runner import dependencies, output_dir, run_pipeline
from encore.ranking import stage as ranking_stage
from tests.conftest import REPO_ROOT, TINY_SYNTHETIC, make_config


def test_user_batches_cover_users_in_order_within_the_row_limit() -> None:
    users = np.array([0, 2, 3, 5, 6, 9])
    rows = np.array([3, 0, 4, 2, 0, 5, 1, 0, 0, 9])
    batches = list(ranking_stage.user_batches(users, rows, max_rows=6))
    assert np.concatenate(batches).tolist() == users.tolist()
    assert [b.tolist() for b in batches] == [[0], [2, 3], [5, 6], [9]]  # 9 rows > 6: a batch alone
    assert all(rows[b].sum() <= 6 for b in batches[:-1])


def test_training_sample_is_seeded_and_within_budget() -> None:
    users = np.arange(1000)
    rows = np.full(1000, 10)
    sample = ranking_stage.training_users(users, rows, budget=2500, seed=7)
    assert len(sample) == 250 and rows[sample].sum() <= 2500
    assert np.array_equal(sample, ranking_stage.training_users(users, rows, budget=2500, seed=7))
    assert not np.array_equal(sample, ranking_stage.training_users(users, rows, budget=2500, seed=8))
    assert np.array_equal(ranking_stage.training_users(users, rows, budget=None, seed=7), users)


def test_hashed_uniform_depends_on_key_and_seed_only() -> None:
    keys = np.arange(100_000, dtype=np.int64)
    values = hashed_uniform(keys, seed=3)
    assert values.min() >= 0.0 and values.max() < 1.0 and abs(values.mean() - 0.5) < 0.01
    assert np.array_equal(hashed_uniform(keys[::-1], seed=3), values[::-1])
    assert not np.array_equal(hashed_uniform(keys, seed=4), values)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> EncoreConfig:
    tmp = tmp_path_factory.mktemp("batches")
    experiment = TINY_SYNTHETIC | {"components": TINY_SYNTHETIC["components"] | {
        "ranker": {"iterations": 40, "negatives_per_positive": 3}}}
    config = make_config(tmp, experiment)
    run_pipeline(config, dependencies(config, "ranker"))
    return config


def _ranker(config: EncoreConfig, out: Path, overrides: dict[str, object]) -> tuple[dict, pd.DataFrame]:
    """Run the ranker alone into ``out`` on ``config``'s upstream outputs, with dotted overrides."""
    values = config.model_dump()
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = values
        for part in parents:
            node = node[part]
        node[key] = value
    updated = EncoreConfig.model_validate(values)
    out.mkdir()
    ctx = Context(config=updated, output=out, inputs={d: output_dir(config, d) for d in dependencies(config, "ranker")})
    result = ranker_component.run(updated, ctx)
    return result.metrics, RankerOutput(out).recommendations()


def test_batched_ranking_stage_equals_one_batch(upstream: EncoreConfig, tmp_path: Path) -> None:
    whole, whole_recs = _ranker(upstream, tmp_path / "whole", {})
    # 1e-5 GiB gives the minimum batch (1,024 candidate rows): a few users per batch.
    batched, batched_recs = _ranker(upstream, tmp_path / "batched", {"resources.memory_gib": 1e-5})
    assert whole["rank_batches"] == 1 and batched["rank_batches"] > 10 and batched["train_batches"] > 10
    for key in ("train_rows", "train_positives", "target_candidate_recall", "candidate_recall"):
        assert batched[key] == whole[key], key
    pd.testing.assert_frame_equal(batched_recs, whole_recs)


@pytest.mark.parametrize("cores", [1, 3])
def test_ranking_lists_do_not_depend_on_the_threads_batches_run_on(
        upstream: EncoreConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int) -> None:
    few = {"resources.memory_gib": 1e-5}
    default, default_recs = _ranker(upstream, tmp_path / "default", few)
    monkeypatch.setattr(ranking_stage, "available_cores", lambda: cores)
    other, other_recs = _ranker(upstream, tmp_path / "other", few)
    assert other["rank_batches"] > 10
    for key in ("candidate_recall", "fallback_users"):
        assert other[key] == default[key], key
    pd.testing.assert_frame_equal(other_recs, default_recs)


def test_row_budget_samples_users_and_is_logged(upstream: EncoreConfig, tmp_path: Path) -> None:
    metrics, recs = _ranker(upstream, tmp_path / "budget", {"components.ranker.train_max_rows": 3000})
    assert metrics["train_sampled_users"] < metrics["train_target_users"]
    assert metrics["train_rows"] <= 3000
    assert recs.groupby("user").size().eq(upstream.components.ranker.top_k).all()


def test_memory_budgeted_pipeline_stays_under_its_budget(tmp_path: Path) -> None:
    """The tiny pipeline in a fresh process with a 1 GiB budget: its peak RSS stays below it."""
    config = make_config(tmp_path, TINY_SYNTHETIC)
    env = os.environ | {"ENCORE_OUTPUT_DIR": str(config.output_dir),
                        "MLFLOW_TRACKING_URI": str(config.tracking.tracking_uri)}
    # Its own peak, read in the process itself: VmHWM (the high-water mark of its own address
    # space), kept across the runner's per-component resets by process_peak_bytes. Not ru_maxrss:
    # Linux carries that over exec, so a child spawned from a big pytest process (vfork shares the
    # parent's memory until exec) reports the parent's peak.
    measure = ("import runpy, sys\n"
               "try:\n    runpy.run_module('encore.pipeline.runner', run_name='__main__')\n"
               "finally:\n    from encore.resources import process_peak_bytes\n"
               "    print('PEAK', process_peak_bytes() // 1024, file=sys.stderr)")
    command = [sys.executable, "-c", measure, "--experiment", str(tmp_path / "experiment.yaml"),
               "--components", ",".join([*dependencies(config, "ranker"), "ranker"]), "--set", "resources.memory_gib=1"]
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    peak_bytes = int(result.stderr.rsplit("PEAK", 1)[1].split()[0]) * 1024
    assert peak_bytes < 2**30, f"peak RSS {peak_bytes / 2**20:.0f} MiB over the 1 GiB budget"
