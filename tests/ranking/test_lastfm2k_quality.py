"""The real-data quality test: the whole pipeline on HetRec 2011 Last.fm 2K.

Protocol: per-user 20% holdout, seed 42, users with >= 5 artists, k = 10, seen items
filtered, full ranking. Reference values from a public implementation on this protocol:
ALS ~0.222, popularity ~0.075 NDCG@10; far off means a bug. The ranker must beat every
single model of the same run, with the uplift's bootstrap interval above zero, and a
ranker trained on shuffled labels must not.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from encore.config.experiment import EncoreConfig
from encore.data.prepared import PreparedData
from encore.evaluation.evaluator import Evaluator, lists_from_frame
from encore.evaluation.splits import pair_mask
from encore.io import ParquetSink, read_json
from encore.outputs import GeneratorOutput, RankerOutput
from encore.pipeline.component import Context
from encore.pipeline.runner import dependencies, output_dir, run_pipeline
from encore.ranking import stage as ranking_stage
from encore.ranking.model import train_ranker
from tests.conftest import REPO_ROOT, make_config

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def lastfm_run(tmp_path_factory: pytest.TempPathFactory, lastfm2k_dir: Path) -> EncoreConfig:
    lastfm2k = lastfm2k_dir
    tmp = tmp_path_factory.mktemp("lastfm2k")
    experiment = {"experiment": {"name": "lastfm2k", "seed": 42}, "dataset": {"kind": "lastfm2k", "path": str(lastfm2k),
                                                                           "download": False}}
    config = make_config(tmp, experiment)
    run_pipeline(config)
    return config


@pytest.fixture(scope="module")
def comparison(lastfm_run: EncoreConfig) -> pd.DataFrame:
    return pd.read_csv(output_dir(lastfm_run, "evaluate") / "comparison.csv", index_col="model")


def test_generators_match_the_public_reference(comparison: pd.DataFrame) -> None:
    ndcg = comparison["ndcg@10"]
    assert ndcg["als"] >= 0.21
    assert 0.07 <= ndcg["popular"] <= 0.08
    assert ndcg["ease"] >= 0.23
    assert ndcg["itemknn"] >= 0.22
    assert ndcg["bpr"] >= 0.15
    assert ndcg["item2item"] >= 0.11
    assert ndcg["userknn"] >= 0.20


def test_ranker_beats_every_single_model_with_a_confident_margin(lastfm_run: EncoreConfig,
                                                                  comparison: pd.DataFrame) -> None:
    ndcg = comparison["ndcg@10"]
    best = ndcg.drop("ranker").max()
    assert ndcg["ranker"] >= 0.25
    assert ndcg["ranker"] > best
    significance = read_json(output_dir(lastfm_run, "evaluate") / "significance.json")
    vs_best = significance["vs_best_generator"]
    assert vs_best["rel_ci_low"] > 0
    assert vs_best["rel_uplift"] >= 0.05
    assert (comparison["user_coverage@10"] == 1.0).loc[["ranker", "popular", "als", "ease"]].all()


def test_every_list_is_best_first_and_never_repeats_history(lastfm_run: EncoreConfig) -> None:
    prepared = PreparedData(output_dir(lastfm_run, "prepare"))
    train = prepared.part("train")
    for name in ("item2item", "als", "ease", "userknn"):
        candidates = GeneratorOutput(output_dir(lastfm_run, name)).candidates("train")
        ordered = candidates.sort_values(["user", "rank"])
        drops = ordered.groupby("user")["score"].diff().dropna()
        assert (drops <= 1e-6).all(), f"{name}: scores must not increase with rank"
        assert not pair_mask(candidates, train, prepared.n_items).any(), f"{name} recommends seen items"
    recs = RankerOutput(output_dir(lastfm_run, "ranker")).recommendations()
    assert not pair_mask(recs, train, prepared.n_items).any()


def test_held_out_pairs_never_reach_side_data(lastfm_run: EncoreConfig) -> None:
    prepared = PreparedData(output_dir(lastfm_run, "prepare"))
    test, target = prepared.part("test"), prepared.part("target")
    tags_train, tags_base = prepared.user_item_tags("train"), prepared.user_item_tags("base")
    assert tags_train is not None and tags_base is not None
    assert not pair_mask(tags_train, test, prepared.n_items).any()
    assert not pair_mask(tags_base, pd.concat([test, target]), prepared.n_items).any()
    summary = prepared.summary
    assert summary["user_item_tags_removed_for_test"] > 0
    # The base matrix the ranker's training features come from holds no target or test pair.
    base = prepared.user_items("base").tocoo()
    base_pairs = pd.DataFrame({"user": base.row, "item": base.col})
    assert not pair_mask(base_pairs, pd.concat([test, target]), prepared.n_items).any()


def test_a_ranker_on_shuffled_labels_does_not_beat_the_best_generator(lastfm_run: EncoreConfig,
                                                                      comparison: pd.DataFrame,
                                                                      tmp_path: Path) -> None:
    config = lastfm_run
    ctx = Context(config=config, output=tmp_path, inputs={d: output_dir(config, d) for d in
                                                          dependencies(config, "ranker")})
    prepared = PreparedData(ctx.inputs["prepare"])
    x, y, users, _ = ranking_stage.training_set(config, ctx.inputs, prepared)
    shuffled = np.random.default_rng(0).permutation(y)
    trained = train_ranker(x, shuffled, users, config.components.ranker, seed=0)
    with ParquetSink(tmp_path / "recs.parquet") as sink:
        ranking_stage.rank_users(trained, config, ctx.inputs, prepared, sink)
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    test = Evaluator(prepared, "train", (10,))
    shuffled_ndcg = test.evaluate(lists_from_frame(recs, test.users, 10))["ndcg@10"]
    best_generator = comparison["ndcg@10"].drop("ranker").max()
    assert shuffled_ndcg < best_generator - 0.02


def test_run_sh_prepare_finishes_and_is_reused(tmp_path: Path, lastfm2k_dir: Path) -> None:
    env = os.environ | {"ENCORE_DATA_DIR": str(lastfm2k_dir.parent), "ENCORE_OUTPUT_DIR": str(tmp_path / "out"),
                        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    command = [str(REPO_ROOT / "scripts/pipeline/run.sh"), "--components", "prepare"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "1892 users, 17632 items, 92834 interactions" in first.stderr
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and "prepare: reusing" in second.stderr
