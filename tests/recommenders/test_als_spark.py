"""``als_spark`` on a real standalone cluster: parity with implicit's ALS, the same factors on
``local[2]`` and on the cluster, a worker killed mid-fit, and the saved model's format.

One cluster for the session (``spark_cluster``), tiny data (300 users, 600 items), 5 iterations."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmarks.spark import cluster_settings, eval_lists, overlap_at, prepare_folder, session_on
from encore.data.prepared import PreparedData
from encore.data.spark_cluster import StandaloneCluster
from encore.data.spark_session import SparkSettings
from encore.recommenders import Recommender, recommender_class
from encore.recommenders.als import ALSRecommender
from encore.recommenders.als_spark import ALSSparkRecommender
from encore.testing import check_recommender
from tests.conftest import TINY_SYNTHETIC, make_config

PARAMS = {"factors": 16, "regularization": 20.0, "alpha": 1.0, "iterations": 5, "weighting": "log1p",
          "random_state": 3}
BASE = SparkSettings(driver_memory="1g", shuffle_partitions=2,
                     conf={"spark.ui.enabled": False, "spark.ui.showConsoleProgress": False})


@dataclass
class Fits:
    prepared: PreparedData
    local: ALSSparkRecommender
    cluster: ALSSparkRecommender
    session: object


def fit(prepared: PreparedData) -> ALSSparkRecommender:
    return ALSSparkRecommender(**PARAMS, blocks=2, num_threads=1).fit_stage(prepared.stage_view("train"))


@pytest.fixture(scope="module")
def fits(tmp_path_factory: pytest.TempPathFactory, spark_cluster: StandaloneCluster) -> object:
    """The train stage fitted on ``local[2]``, then on the cluster (whose session stays open for the module)."""
    folder = tmp_path_factory.mktemp("als_spark")
    prepared = prepare_folder(make_config(folder, TINY_SYNTHETIC), folder / "prepared")
    with session_on("local[2]", BASE):
        local = fit(prepared)
    with session_on(spark_cluster.master_url, cluster_settings(BASE)) as session:
        yield Fits(prepared, local, fit(prepared), session)


def test_parity_with_implicit_als(fits: Fits, record_property: object) -> None:
    """Same settings, two solvers (MLlib's confidence is 1 + alpha w, implicit's alpha w; MLlib
    scales the ridge per rating): most candidates agree and the quality is the same."""
    implicit = ALSRecommender(**PARAMS, num_threads=1).fit_stage(fits.prepared.stage_view("train"))
    reference, evaluator = eval_lists(implicit, fits.prepared, "train", 100)
    lists, _ = eval_lists(fits.cluster, fits.prepared, "train", 100)
    overlap = overlap_at(lists, reference, 100)
    ndcg_implicit = evaluator.evaluate(reference[:, :10])["ndcg@10"]
    ndcg_spark = evaluator.evaluate(lists[:, :10])["ndcg@10"]
    record_property("overlap@100", overlap)
    record_property("ndcg@10 implicit, als_spark", (ndcg_implicit, ndcg_spark))
    print(f"overlap@100 {overlap:.3f}; ndcg@10 implicit {ndcg_implicit:.4f}, als_spark {ndcg_spark:.4f}")
    assert overlap >= 0.6
    assert abs(ndcg_spark - ndcg_implicit) <= 0.05
    assert ndcg_spark > 0.05  # far above random on this data (~0.01)


def test_local_and_cluster_give_the_same_model(fits: Fits) -> None:
    """The seed and the blocks fix the factors; the master and the executors do not change them."""
    np.testing.assert_allclose(fits.cluster.user_factors, fits.local.user_factors, atol=1e-4)
    np.testing.assert_allclose(fits.cluster.item_factors, fits.local.item_factors, atol=1e-4)
    local, _ = eval_lists(fits.local, fits.prepared, "train", 100)
    cluster, _ = eval_lists(fits.cluster, fits.prepared, "train", 100)
    assert overlap_at(local, cluster, 100) >= 0.99


def test_saved_model_is_the_implicit_format(fits: Fits, tmp_path: Path) -> None:
    """Saved and loaded like any kind (no Spark needed to load or score), scoring as before."""
    assert recommender_class("als_spark") is ALSSparkRecommender
    fits.cluster.save(tmp_path / "model.npz")
    loaded = Recommender.load(tmp_path / "model.npz")
    assert type(loaded) is ALSSparkRecommender and loaded.get_params() == fits.cluster.get_params()
    users = np.arange(fits.prepared.n_users)
    before = fits.cluster.recommend(users, fits.prepared.user_items("train"), 20)
    after = loaded.recommend(users, fits.prepared.user_items("train"), 20)
    np.testing.assert_array_equal(after[0], before[0])
    ids, _ = loaded.similar_items(np.arange(5), 10)
    assert ids.shape == (5, 10) and (ids != np.arange(5)[:, None]).all()


def test_worker_killed_mid_fit_gives_the_same_model(fits: Fits, spark_cluster: StandaloneCluster) -> None:
    """SIGKILL one of the two workers (and its executor) while the fit runs: Spark reruns the lost
    tasks on the other and the fit completes with the same factors."""
    tracker = fits.session.sparkContext.statusTracker()  # type: ignore[attr-defined]
    first_job = max(tracker.getJobIdsForGroup(None) or [-1]) + 1
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(model=fit(fits.prepared)))
    thread.start()
    try:
        deadline = time.monotonic() + 120
        # a few of ALS's per-iteration jobs done: both executors hold cached blocks and shuffle files
        while not any(job >= first_job + 3 for job in tracker.getActiveJobsIds()) and thread.is_alive():
            assert time.monotonic() < deadline, "the fit never reached its fourth job"
            time.sleep(0.05)
        assert thread.is_alive(), "the fit ended before a worker could be killed; give it more iterations"
        assert spark_cluster.alive_workers() == 2
        spark_cluster.kill_worker(0)
        thread.join(timeout=300)
        assert not thread.is_alive()
    finally:
        spark_cluster.start_worker(0, wait=False)  # back to two workers for whoever runs next
    model = result["model"]
    assert isinstance(model, ALSSparkRecommender)
    np.testing.assert_allclose(model.user_factors, fits.cluster.user_factors, atol=1e-4)
    np.testing.assert_allclose(model.item_factors, fits.cluster.item_factors, atol=1e-4)


def test_keeps_the_recommender_contract(fits: Fits) -> None:
    """The contract every kind keeps (encore.testing), fitted on the cluster (small settings)."""
    check_recommender(ALSSparkRecommender, params={"factors": 4, "iterations": 2, "blocks": 2})
