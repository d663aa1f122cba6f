"""``als_spark`` on a real standalone cluster: parity with implicit's ALS, the same factors on
``local[2]`` and on the cluster, the executors' top-N equal to the driver's, a worker killed
mid-fit, and the saved model's format.

The models are the ``base`` fits of the session's shared pipelines (``spark_runs``, tests/conftest.py:
tiny synthetic data, 300 users, 600 items, 16 factors, 5 iterations), on the cluster and on
``local[2]``; only the worker-kill test fits again."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmarks.spark import cluster_settings, eval_lists, overlap_at, session_on
from encore.data.prepared import PreparedData
from encore.data.spark_cluster import StandaloneCluster
from encore.data.spark_session import SparkSettings
from encore.outputs import GeneratorOutput
from encore.pipeline.runner import output_dir
from encore.recommenders import Recommender, recommender_class
from encore.recommenders.als import ALSRecommender
from encore.recommenders.als_spark import ALSSparkRecommender
from encore.testing import check_recommender
from tests.conftest import SparkRuns

BASE = SparkSettings(driver_memory="1g", shuffle_partitions=2,
                     conf={"spark.ui.enabled": False, "spark.ui.showConsoleProgress": False})


@dataclass
class Fits:
    prepared: PreparedData
    local: ALSSparkRecommender
    cluster: ALSSparkRecommender
    candidates: tuple[np.ndarray, np.ndarray]  # (n_target_users, 100) ids, scores the cluster pipeline wrote
    session: object


def fit(prepared: PreparedData, params: dict) -> ALSSparkRecommender:
    return ALSSparkRecommender(**params).fit_stage(prepared.stage_view("base"))


def base_model(config: object) -> ALSSparkRecommender:
    model = GeneratorOutput(output_dir(config, "als_spark")).model("base")  # type: ignore[arg-type]
    assert isinstance(model, ALSSparkRecommender)
    return model


@pytest.fixture(scope="module")
def fits(spark_runs: SparkRuns, spark_cluster: StandaloneCluster) -> object:
    """The base fits of the cluster and local pipelines, and a cluster session open for the module."""
    prepared = PreparedData(output_dir(spark_runs.cluster, "prepare"))
    frame = GeneratorOutput(output_dir(spark_runs.cluster, "als_spark")).candidates("base")
    users = prepared.eval_users("base")
    assert np.array_equal(np.unique(frame["user"]), users)
    ids, scores = np.full((len(users), 100), -1, dtype=np.int64), np.full((len(users), 100), -np.inf, np.float32)
    at = (np.searchsorted(users, frame["user"]), frame["rank"].to_numpy() - 1)
    ids[at], scores[at] = frame["item"], frame["score"]
    candidates = (ids, scores)
    with session_on(spark_cluster.master_url, cluster_settings(BASE)) as session:
        yield Fits(prepared, base_model(spark_runs.local), base_model(spark_runs.cluster), candidates, session)


def test_parity_with_implicit_als(fits: Fits, record_property: object) -> None:
    """Same settings, two solvers (MLlib's confidence is 1 + alpha w, implicit's alpha w; MLlib
    scales the ridge per rating): most candidates agree and the quality is the same."""
    params = {k: v for k, v in fits.cluster.get_params().items()
              if k in ("factors", "regularization", "alpha", "iterations", "weighting", "random_state")}
    assert params["iterations"] == 5 and params["factors"] == 16
    implicit = ALSRecommender(**params, num_threads=1).fit_stage(fits.prepared.stage_view("base"))
    reference, evaluator = eval_lists(implicit, fits.prepared, "base", 100)
    lists, _ = eval_lists(fits.cluster, fits.prepared, "base", 100)
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
    local, _ = eval_lists(fits.local, fits.prepared, "base", 100)
    cluster, _ = eval_lists(fits.cluster, fits.prepared, "base", 100)
    assert overlap_at(local, cluster, 100) >= 0.99


def test_saved_model_is_the_implicit_format(fits: Fits, tmp_path: Path) -> None:
    """Saved and loaded like any kind (no Spark needed to load or score), scoring as before."""
    assert recommender_class("als_spark") is ALSSparkRecommender
    fits.cluster.save(tmp_path / "model.npz")
    loaded = Recommender.load(tmp_path / "model.npz")
    assert type(loaded) is ALSSparkRecommender and loaded.get_params() == fits.cluster.get_params()
    users = np.arange(fits.prepared.n_users)
    before = fits.cluster.recommend(users, fits.prepared.user_items("base"), 20)
    after = loaded.recommend(users, fits.prepared.user_items("base"), 20)
    np.testing.assert_array_equal(after[0], before[0])
    ids, _ = loaded.similar_items(np.arange(5), 10)
    assert ids.shape == (5, 10) and (ids != np.arange(5)[:, None]).all()


def assert_same_lists(executor: tuple[np.ndarray, np.ndarray], driver: tuple[np.ndarray, np.ndarray]) -> None:
    """Identical ids where the driver's scores are not tied within float noise; scores within float
    tolerance. ``driver`` has one column more than ``executor``: a tie across the list's end (two
    items with the same vector, one in, one out) is a tie too."""
    (ids, scores), (ref_ids, ref_scores) = executor, driver
    n = ids.shape[1]
    np.testing.assert_allclose(scores, ref_scores[:, :n], rtol=1e-5, atol=1e-5)
    gaps = np.abs(np.diff(ref_scores, axis=1)) < 1e-5
    tied = gaps[:, :n] | np.pad(gaps[:, : n - 1], ((0, 0), (1, 0)))
    wrong = np.argwhere((ids != ref_ids[:, :n]) & ~tied)
    assert len(wrong) == 0, [(r, c, ids[r, max(c - 2, 0):c + 3], ref_ids[r, max(c - 2, 0):c + 3],
                              ref_scores[r, max(c - 2, 0):c + 3]) for r, c in wrong[:3]]
    assert tied.mean() < 0.05  # the comparison is of real ids, not of ties
    assert (ids >= 0).all()


def stitch(blocks: object, n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ids, scores = np.full((n, width), -2), np.zeros((n, width), dtype=np.float32)
    for start, stop, block_ids, block_scores in blocks:  # type: ignore[attr-defined]
        ids[start:stop], scores[start:stop] = block_ids, block_scores
    return ids, scores


def test_executor_top_n_is_the_driver_top_n(fits: Fits) -> None:
    """On the cluster, in blocks of 128, the played items joined to each user block: the executors'
    lists equal the driver's (implicit's) on the same factors. Candidates: those the cluster pipeline
    wrote (MLlib's factor DataFrame; the ranker-target users, not an id range). Similar items: from
    the loaded model (factors sent from the driver as Parquet)."""
    prepared, model = fits.prepared, fits.cluster
    assert model.top_n_on == "executors" and model.block_users == 128
    driver = model.recommend(prepared.eval_users("base"), prepared.user_items("base"), 101)
    assert_same_lists(fits.candidates, driver)
    items = np.arange(prepared.n_items)
    similar = model.similar_items(items, 21)
    played = np.any(model.item_factors != 0, axis=1)
    assert played.mean() > 0.7  # items only in later parts have no factors
    executor = stitch(model.stage_similar_item_batches(20), len(items), 20)
    assert_same_lists((executor[0][played], executor[1][played]), (similar[0][played], similar[1][played]))
    assert (executor[0][~played] == -1).all()
    driver_side = ALSSparkRecommender(**(model.get_params() | {"top_n_on": "driver"}))
    driver_side.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    assert driver_side.stage_recommend_batches(prepared.eval_users("base"), prepared.stage_view("base").parts,
                                               100) is None


def test_worker_killed_mid_fit_gives_the_same_model(fits: Fits, spark_cluster: StandaloneCluster) -> None:
    """SIGKILL one of the two workers (and its executor) while the fit runs: Spark reruns the lost
    tasks on the other and the fit completes with the same factors."""
    tracker = fits.session.sparkContext.statusTracker()  # type: ignore[attr-defined]
    first_job = max(tracker.getJobIdsForGroup(None) or [-1]) + 1
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(model=fit(fits.prepared, fits.cluster.get_params())))
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
