"""The cost and the parity of ``als_spark`` (MLlib ALS) beside ``als`` (implicit), on one machine and a cluster.

    python -m benchmarks.spark [--experiments lastfm2k,synthetic_1m] [--masters local,1,2]

For each experiment, ``prepare`` runs once (in-process, into a temporary folder); then the
``train`` stage is fitted with implicit's ALS and with MLlib's ALS on every master: ``local``
(``local[*]``), ``1`` and ``2`` (a loopback standalone cluster of that many 1-core workers,
:mod:`encore.data.spark_cluster`). Same factors, iterations, regularization, alpha, weighting
and seed (the experiment's ``als`` instance). Per run: fit seconds (session start excluded),
NDCG@10 on test, and against implicit's lists the overlap@100 of the candidate ids.
Written to ``benchmarks/results/spark.json``; a benchmark, not a test.

    python -m benchmarks.spark --top-n [--experiments lastfm2k,synthetic_1m] [--masters local,2]

measures where ``als_spark`` computes its lists instead (``benchmarks/results/spark_topn.json``):
on the same factors (implicit's ALS fit, copied into an ``als_spark`` model, as a loaded model
is), the top-100 of every user and the 20 similar items of every item on the driver (implicit's
batched ``recommend``, the ``top_n_on: driver`` path) and on the executors (``top_n_on:
executors``), with the share of identical ids. Every wall time has the load average beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.docs_figures import git_commit, machine
from encore.components.prepare import prepare
from encore.config.experiment import REPO_ROOT, EncoreConfig, load_config
from encore.data import load_dataset
from encore.data.prepared import PreparedData, Stage
from encore.data.spark_cluster import StandaloneCluster
from encore.data.spark_session import SparkSettings, load_spark_settings, spark_session
from encore.evaluation.evaluator import Evaluator
from encore.evaluation.splits import split_interactions
from encore.recommenders import Recommender
from encore.recommenders.als import ALSRecommender
from encore.recommenders.als_spark import ALSSparkRecommender

RESULTS = REPO_ROOT / "benchmarks" / "results"


def prepare_folder(config: EncoreConfig, out: Path) -> PreparedData:
    """``config``'s data split and written in the prepared layout (as ``prepare`` does), in ``out``."""
    dataset = load_dataset(config.dataset, data_dir=config.data_dir)
    split = split_interactions(dataset.interactions, config.split, seed=config.experiment.seed)
    out.mkdir(parents=True, exist_ok=True)
    prepare(dataset, split, out, data_sha256={})
    return PreparedData(out)


def overlap_at(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Mean share of the first ``k`` ids two ``(n_users, >= k)`` lists have in common (-1 slots ignored)."""
    shares = [len(set(x[:k][x[:k] >= 0]) & set(y[:k][y[:k] >= 0])) / k for x, y in zip(a, b, strict=True)]
    return float(np.mean(shares)) if shares else 1.0


def eval_lists(model: Recommender, prepared: PreparedData, stage: Stage, n: int) -> tuple[np.ndarray, Evaluator]:
    """Top-``n`` of the users ``stage`` is scored on, already-played items filtered, and their evaluator."""
    evaluator = Evaluator(prepared, stage, (10, n))
    ids, _ = model.recommend(evaluator.users, prepared.user_items(stage), n)
    return ids, evaluator


def als_params(config: EncoreConfig) -> dict[str, Any]:
    """The ``als`` instance's settings both kinds share (implicit's BM25 has no Spark counterpart)."""
    section = config.components.generator("als")
    params = {key: getattr(section, key) for key in ("factors", "regularization", "alpha", "iterations", "weighting")}
    return params | {"random_state": config.experiment.seed}


@contextlib.contextmanager
def session_on(master: str, base: SparkSettings) -> Iterator[Any]:
    """A Spark session on ``master`` (any running one is stopped first), stopped on exit."""
    stop_active_session()
    session = spark_session(base.model_copy(update={"master": master}))
    try:
        yield session
    finally:
        session.stop()


def stop_active_session() -> None:
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


def cluster_settings(base: SparkSettings) -> SparkSettings:
    """``base`` made to fit 1-core / 1g loopback workers (driver on loopback, 512m executors)."""
    conf = base.conf | {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                        "spark.executor.memory": "512m", "spark.executor.cores": 1}
    return base.model_copy(update={"conf": conf, "driver_memory": "2g"})


@contextlib.contextmanager
def on_master(master: str, base: SparkSettings) -> Iterator[str]:
    """A session on ``master`` ("local": ``local[*]``; a number: a loopback standalone cluster of
    that many 1-core workers, stopped on exit); yields how the result files name the master."""
    with contextlib.ExitStack() as stack:
        if master == "local":
            url, settings, where = "local[*]", base, "local[*]"
        else:
            cluster = stack.enter_context(StandaloneCluster(n_workers=int(master), cores=1, memory="1g"))
            url, settings, where = cluster.master_url, cluster_settings(base), f"standalone, {master} x 1 core"
        stack.enter_context(session_on(url, settings))
        yield where


def run_experiment(name: str, masters: list[str], workdir: Path) -> dict[str, Any]:
    config = load_config(REPO_ROOT / "experiments" / f"{name}.yaml")
    started = time.perf_counter()
    prepared = prepare_folder(config, workdir / name)
    print(f"{name}: prepared in {time.perf_counter() - started:.0f} s", flush=True)
    stage: Stage = "train"
    params = als_params(config)
    implicit = ALSRecommender(**params)
    started = time.perf_counter()
    implicit.fit_stage(prepared.stage_view(stage))
    implicit_seconds = time.perf_counter() - started
    implicit_load = round(os.getloadavg()[0], 2)
    reference, evaluator = eval_lists(implicit, prepared, stage, 100)
    implicit_ndcg = evaluator.evaluate(reference[:, :10])["ndcg@10"]
    print(f"{name}: implicit {implicit_seconds:.1f} s, ndcg@10 {implicit_ndcg:.4f}", flush=True)
    runs: dict[str, Any] = {}
    base = load_spark_settings()
    spark_params = {k: v for k, v in params.items() if k != "weighting"} | {
        "weighting": params["weighting"] if params["weighting"] in ("log1p", "none") else "log1p"}
    for master in masters:
        with on_master(master, base) as where:
            model = ALSSparkRecommender(**spark_params)
            started = time.perf_counter()
            model.fit_stage(prepared.stage_view(stage))
            seconds = time.perf_counter() - started
        lists, _ = eval_lists(model, prepared, stage, 100)
        runs[master] = {"master": where, "fit_seconds": seconds, "load_after_fit": round(os.getloadavg()[0], 2),
                        "ndcg@10": evaluator.evaluate(lists[:, :10])["ndcg@10"],
                        "overlap@100_vs_implicit": overlap_at(lists, reference, 100)}
        print(f"{name}: als_spark on {master}: {runs[master]}", flush=True)
    summary = prepared.summary
    return {"experiment": f"experiments/{name}.yaml", "n_interactions": int(summary["n_interactions"]),
            "n_users": int(summary["n_users"]), "n_items": int(summary["n_items"]), "params": spark_params,
            "implicit": {"fit_seconds": implicit_seconds, "load_after_fit": implicit_load, "ndcg@10": implicit_ndcg},
            "als_spark": runs}


def _timed(run: Any) -> tuple[Any, dict[str, float]]:
    """``run()``'s value, and its seconds with the 1-minute load average before and after."""
    before = os.getloadavg()[0]
    started = time.perf_counter()
    value = run()
    return value, {"seconds": time.perf_counter() - started, "load_before": round(before, 2),
                   "load_after": round(os.getloadavg()[0], 2)}


def _stitched(blocks: Any, n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ids, scores = np.full((n, width), -1, dtype=np.int64), np.full((n, width), -np.inf, dtype=np.float32)
    for start, stop, block_ids, block_scores in blocks:
        ids[start:stop], scores[start:stop] = block_ids, block_scores
    return ids, scores


def agreement(ids: np.ndarray, ref_ids: np.ndarray, ref_scores: np.ndarray, tolerance: float = 1e-5
              ) -> dict[str, float]:
    """How far ``(n, N)`` lists agree with reference lists of ``N + 1`` columns: the share of identical
    ids, the share among slots whose reference score is not tied (within ``tolerance``) with a
    neighbour's (the extra column catches a tie across the list's end), and that tied share."""
    n = ids.shape[1]
    gaps = np.abs(np.diff(ref_scores, axis=1)) < tolerance
    tied = gaps[:, :n] | np.pad(gaps[:, : n - 1], ((0, 0), (1, 0)))
    same = ids == ref_ids[:, :n]
    return {"identical": float(same.mean()), "identical_where_not_tied": float(same[~tied].mean()),
            "tied": float(tied.mean())}


def run_top_n(name: str, masters: list[str], workdir: Path, n: int = 100, n_similar: int = 20) -> dict[str, Any]:
    """Driver against executor top-N (and similar items) on the same factors, per master."""
    config = load_config(REPO_ROOT / "experiments" / f"{name}.yaml")
    prepared = prepare_folder(config, workdir / name)
    params = als_params(config)
    implicit = ALSRecommender(**params).fit_stage(prepared.stage_view("train"))
    spark_params = {k: v for k, v in params.items() if k != "weighting"}
    model = ALSSparkRecommender(**spark_params)
    model.model_, model.n_users_, model.n_items_ = implicit.model_, implicit.n_users_, implicit.n_items_
    model.set_retrieval("exact")
    users = np.arange(prepared.n_users, dtype=np.int64)
    heard = prepared.user_items("train")
    parts = prepared.stage_view("train").parts
    # one slot more than asked: it tells a tie across the list's end (agreement); timed with it
    (driver_ids, driver_scores), driver_time = _timed(lambda: model.recommend(users, heard, n + 1))
    (driver_similar, similar_scores), driver_similar_time = _timed(
        lambda: model.similar_items(np.arange(prepared.n_items), n_similar + 1))
    has_vector = np.any(model.item_factors != 0, axis=1)
    print(f"{name}: driver top-{n} {driver_time}, similar {driver_similar_time}", flush=True)
    runs: dict[str, Any] = {}
    base = load_spark_settings()
    for master in masters:
        with on_master(master, base) as where:
            (ids, _), top_time = _timed(lambda: _stitched(model.stage_recommend_batches(users, parts, n),
                                                          len(users), n))
            (similar, _), similar_time = _timed(lambda: _stitched(model.stage_similar_item_batches(n_similar),
                                                                  prepared.n_items, n_similar))
        runs[master] = {"master": where, f"top{n}": top_time, f"similar{n_similar}": similar_time,
                        "candidates": agreement(ids, driver_ids, driver_scores),
                        # items with a zero vector: -1 rows on the executors, implicit's arbitrary lists on the driver
                        "similar_items": agreement(similar[has_vector], driver_similar[has_vector],
                                                   similar_scores[has_vector]),
                        "items_without_vector": int((~has_vector).sum())}
        print(f"{name}: executors on {master}: {runs[master]}", flush=True)
    summary = prepared.summary
    k = params["factors"]
    return {"experiment": f"experiments/{name}.yaml", "n_users": int(summary["n_users"]),
            "n_items": int(summary["n_items"]), "factors": k, "block_users": model.block_users,
            "item_broadcast_bytes": int(summary["n_items"]) * k * 4,
            "driver": {f"top{n}": driver_time, f"similar{n_similar}": driver_similar_time,
                       "threads": "implicit, every core", "note": f"timed with {n + 1} and {n_similar + 1} slots"},
            "executors": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", default="lastfm2k", help="comma-separated experiments/<name>.yaml")
    parser.add_argument("--masters", default="local,1,2", help="local and/or numbers of cluster workers")
    parser.add_argument("--top-n", action="store_true", help="driver against executor top-N (spark_topn.json)")
    parser.add_argument("--out", type=Path, default=None, help="result file (default: spark.json / spark_topn.json)")
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / ("spark_topn.json" if args.top_n else "spark.json")
    report: dict[str, Any] = {"commit": git_commit(), "machine": machine(),
                              "load_average_at_start": round(os.getloadavg()[0], 1), "experiments": {}}
    with tempfile.TemporaryDirectory(prefix="encore-bench-spark-") as workdir:
        for name in args.experiments.split(","):
            run = run_top_n if args.top_n else run_experiment
            report["experiments"][name] = run(name, args.masters.split(","), Path(workdir))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
