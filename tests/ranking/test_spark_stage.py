"""The ranking stage and evaluate on Spark (``components.ranker.engine: spark``,
``evaluation.engine: spark``) against the session's two-worker standalone cluster.

One module fixture runs ``prepare + popular + als_spark + ranker + evaluate`` on the cluster with
the pandas ranking stage and evaluation, then the same pipeline with both engines on Spark (the
runner reuses prepare and the generators: same candidates, same trained model), then the whole
Spark pipeline again from scratch on ``local[2]``. Tiny synthetic data (300 users, 600 items)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.spark import cluster_settings, session_on
from encore.config.experiment import EncoreConfig
from encore.data.spark_cluster import StandaloneCluster
from encore.data.spark_session import SparkSettings
from encore.outputs import EvaluateOutput, RankerOutput
from encore.pipeline.runner import output_dir, run_pipeline
from tests.conftest import TINY_SYNTHETIC, make_config

COMPONENTS = ["prepare", "popular", "als_spark", "ranker", "evaluate"]
OFF = ("als", "bpr", "item2item", "itemknn", "friends", "ease", "userknn", "als128", "als32", "bpr128", "ease500",
       "knncos")
EXPERIMENT = TINY_SYNTHETIC | {"components": {
    **{name: {"enabled": False} for name in OFF},
    "als_spark": {"kind": "als_spark", "factors": 16, "iterations": 3, "blocks": 2, "num_threads": 1},
    "ranker": {"iterations": 30, "similar_items_from": "als_spark", "fallback": "popular"}},
    "evaluation": {"n_bootstrap": 200}}
ON_SPARK = {"ranker": {"engine": "spark"}, "evaluation": {"engine": "spark"}}
BASE = SparkSettings(driver_memory="1g", shuffle_partitions=2,
                     conf={"spark.ui.enabled": False, "spark.ui.showConsoleProgress": False})


def spark_experiment() -> dict:
    components = EXPERIMENT["components"]
    return EXPERIMENT | {"components": components | {"ranker": components["ranker"] | ON_SPARK["ranker"]},
                         "evaluation": EXPERIMENT["evaluation"] | ON_SPARK["evaluation"]}


@dataclass
class Runs:
    pandas: EncoreConfig
    cluster: EncoreConfig
    local: EncoreConfig


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, spark_cluster: StandaloneCluster) -> Runs:
    folder = tmp_path_factory.mktemp("spark_stage")
    pandas_config = make_config(folder, EXPERIMENT)
    cluster_config = make_config(folder, spark_experiment())
    local_folder = tmp_path_factory.mktemp("spark_stage_local")
    local_config = make_config(local_folder, spark_experiment())
    with session_on(spark_cluster.master_url, cluster_settings(BASE)):
        run_pipeline(pandas_config, COMPONENTS, note="pandas stage")
        run_pipeline(cluster_config, COMPONENTS, note="spark stage")
    with session_on("local[2]", BASE):
        run_pipeline(local_config, COMPONENTS, note="spark stage, local")
    return Runs(pandas_config, cluster_config, local_config)


def recommendations(config: EncoreConfig) -> pd.DataFrame:
    return RankerOutput(output_dir(config, "ranker")).recommendations()


def assert_same_lists(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Identical rows (user, item, rank, names) and dtypes; scores within float32 tolerance."""
    assert list(a.columns) == list(b.columns)
    assert dict(a.dtypes) == dict(b.dtypes)
    exact = [c for c in a.columns if c != "score"]
    pd.testing.assert_frame_equal(a[exact].reset_index(drop=True), b[exact].reset_index(drop=True))
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=1e-6, atol=1e-7, equal_nan=True)


def test_spark_ranking_stage_gives_the_pandas_lists(runs: Runs) -> None:
    """Same candidates, same model: identical top-k (with the fallback and the popular completion)."""
    pandas_recs, spark_recs = recommendations(runs.pandas), recommendations(runs.cluster)
    assert output_dir(runs.pandas, "als_spark") == output_dir(runs.cluster, "als_spark")  # the same candidates
    assert output_dir(runs.pandas, "ranker") != output_dir(runs.cluster, "ranker")  # really scored twice
    assert len(pandas_recs) == 300 * 50  # every user, top_k each
    assert_same_lists(pandas_recs, spark_recs)
    pandas_metrics = RankerOutput(output_dir(runs.pandas, "ranker")).metrics()
    spark_metrics = RankerOutput(output_dir(runs.cluster, "ranker")).metrics()
    for key in ("candidate_recall", "fallback_users", "ndcg@10", "recall@20"):
        assert spark_metrics[key] == pytest.approx(pandas_metrics[key], abs=1e-12), key
    assert spark_metrics["spark_broadcast_bytes"] > 0


def comparison(config: EncoreConfig) -> pd.DataFrame:
    return EvaluateOutput(output_dir(config, "evaluate")).comparison()


def test_spark_evaluation_gives_the_pandas_figures(runs: Runs) -> None:
    """Every metric of every model and segment, the per-user table and the paired tests agree."""
    pandas_eval = EvaluateOutput(output_dir(runs.pandas, "evaluate"))
    spark_eval = EvaluateOutput(output_dir(runs.cluster, "evaluate"))
    a, b = pandas_eval.comparison(), spark_eval.comparison()
    assert list(a.columns) == list(b.columns) and list(a.index) == list(b.index)
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-9, atol=1e-12)
    a_seg = pd.read_csv(pandas_eval.path / pandas_eval.SEGMENTS_CSV)
    b_seg = pd.read_csv(spark_eval.path / spark_eval.SEGMENTS_CSV)
    pd.testing.assert_frame_equal(a_seg, b_seg, rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(pandas_eval.per_user(), spark_eval.per_user(), rtol=1e-9, atol=1e-12)
    vs_best = (pandas_eval.significance()["vs_best_generator"], spark_eval.significance()["vs_best_generator"])
    assert vs_best[1]["mean_b"] == pytest.approx(vs_best[0]["mean_b"], abs=1e-12)
    assert vs_best[1]["p_value"] == pytest.approx(vs_best[0]["p_value"], rel=1e-6)
    assert a.loc["ranker", "ndcg@10"] > a.loc["popular", "ndcg@10"]  # a real ranker, not an empty table


def test_local_and_cluster_give_the_same_outputs(runs: Runs) -> None:
    """The whole Spark pipeline (prepare, als_spark, ranker and evaluate on Spark) run from scratch
    on local[2] gives the cluster's lists and figures: the seed and the blocks fix MLlib's factors,
    the buckets fix nothing the lists depend on."""
    assert Path(output_dir(runs.local, "ranker")).parent != Path(output_dir(runs.cluster, "ranker")).parent
    assert_same_lists(recommendations(runs.cluster), recommendations(runs.local))
    np.testing.assert_allclose(comparison(runs.local).to_numpy(), comparison(runs.cluster).to_numpy(),
                               rtol=1e-9, atol=1e-12)
