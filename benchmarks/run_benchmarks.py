"""Encore's benchmarks: generator overhead over ``implicit``, and the whole pipeline.

    python -m benchmarks.run_benchmarks [--only generators|pipeline] [--datasets lastfm2k,synthetic_1m]

1. Generators: each generator's fit + batched top-100 recommendation for every user on
   the training matrix, through Encore's wrapper and, for ALS, BPR and item-kNN, by
   calling ``implicit`` directly on the same matrix with the same parameters. The ratio
   wrapper / direct is the framework's overhead (target < 1.2). Best of ``--repeats``.
2. Pipeline: the runner that ``scripts/pipeline/run.sh`` starts (prepare to evaluate, fresh output folder and
   MLflow store) in a child process: wall time, peak memory (the child's own VmHWM, :mod:`benchmarks.peak`) and
   each component's time as logged in MLflow.

Results are printed and written to ``benchmarks/results/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks.docs_figures import git_commit
from benchmarks.peak import measured_command, read_peak_bytes
from encore.candidates import build_recommender, fit_recommender
from encore.config.experiment import REPO_ROOT, MachineSettings, load_config
from encore.data.prepared import PreparedData
from encore.io import is_complete
from encore.pipeline import fingerprint, generator_names, output_dir, run_component

RESULTS = REPO_ROOT / "benchmarks" / "results"
EXPERIMENTS = {"lastfm2k": REPO_ROOT / "experiments/lastfm2k.yaml",
               "synthetic_1m": REPO_ROOT / "experiments/synthetic_1m.yaml"}
N = 100


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def direct_implicit(name: str, model: Any, user_items: sp.csr_matrix) -> Callable[[], Any] | None:
    """The same fit + recommend by calling implicit itself, or None for non-implicit models."""
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender, TFIDFRecommender
    from threadpoolctl import threadpool_limits

    from encore.recommenders.weighting import weight_user_items

    users = np.arange(user_items.shape[0])
    if name == "als":
        def als() -> Any:
            with threadpool_limits(1, "blas"):
                direct = AlternatingLeastSquares(factors=model.factors, regularization=model.regularization,
                                                 alpha=model.alpha, iterations=model.iterations,
                                                 num_threads=model.num_threads, random_state=model.random_state)
                # The same confidence transform the wrapper applies: part of the work, not overhead.
                direct.fit(weight_user_items(user_items, model.weighting, K1=model.bm25_K1, B=model.bm25_B),
                           show_progress=False)
                return direct.recommend(users, user_items, N=N, filter_already_liked_items=True)
        return als
    if name == "bpr":
        def bpr() -> Any:
            with threadpool_limits(1, "blas"):
                direct = BayesianPersonalizedRanking(factors=model.factors, learning_rate=model.learning_rate,
                                                     regularization=model.regularization,
                                                     iterations=model.iterations, num_threads=model.num_threads,
                                                     random_state=model.random_state)
                direct.fit(user_items, show_progress=False)
                return direct.recommend(users, user_items, N=N, filter_already_liked_items=True)
        return bpr
    if name == "itemknn":
        cls = {"cosine": CosineRecommender, "bm25": BM25Recommender, "tfidf": TFIDFRecommender}[model.similarity]

        def knn() -> Any:
            params = {"K1": model.K1, "B": model.B} if model.similarity == "bm25" else {}
            direct = cls(K=model.K, num_threads=model.num_threads, **params)
            weighted = weight_user_items(user_items, model.weighting)
            direct.fit(weighted, show_progress=False)
            return direct.recommend(users, weighted, N=N, filter_already_liked_items=True)
        return knn
    return None


def prepared_for(experiment: Path, workdir: Path) -> tuple[Any, PreparedData]:
    settings = MachineSettings(mlflow_tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                               encore_output_dir=workdir / "outputs")
    config = load_config(experiment, settings=settings)
    if not is_complete(output_dir(config, "prepare"), fingerprint(config, "prepare")):
        run_component(config, "prepare")
    return config, PreparedData(output_dir(config, "prepare"))


def bench_generators(name: str, workdir: Path, repeats: int, only: list[str] | None = None) -> dict[str, Any]:
    config, prepared = prepared_for(EXPERIMENTS[name], workdir)
    user_items = prepared.user_items("train")
    users = np.arange(prepared.n_users)
    rows = {}
    for generator in only or [g for g in generator_names(config) if config.components.generator(g).propose]:
        model = build_recommender(config, generator)

        def wrapped(generator: str = generator, model: Any = model) -> Any:
            fit_recommender(model, prepared, "train", name=generator)
            return model.recommend(users, user_items, N, filter_already_liked_items=True)

        row = {"encore_seconds": best_time(wrapped, repeats)}
        direct = direct_implicit(generator, model, user_items)
        if direct is not None:
            row["implicit_seconds"] = best_time(direct, repeats)
            row["overhead_ratio"] = row["encore_seconds"] / row["implicit_seconds"]
        rows[generator] = row
        print(f"  {name:13s} {generator:10s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return {"users": prepared.n_users, "items": prepared.n_items, "train_interactions": int(user_items.nnz),
            "generators": rows}


def bench_pipeline(name: str, workdir: Path) -> dict[str, Any]:
    import mlflow

    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'pipeline.db'}",
                        "ENCORE_OUTPUT_DIR": str(workdir / "pipeline-outputs")}
    peak_file = workdir / ".peak-pipeline"
    started = time.perf_counter()
    subprocess.run(measured_command("encore.pipeline", ["--experiment", str(EXPERIMENTS[name])], peak_file),
                   env=env, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    peak_mb = read_peak_bytes(peak_file) / 2**20
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=[load_config(EXPERIMENTS[name]).experiment.name])
    components = runs[runs["tags.encore.component"].notna()]
    seconds = dict(zip(components["tags.encore.component"], components["metrics.time_run_seconds"], strict=True))
    ndcg = runs[runs["tags.mlflow.parentRunId"].isna()]["metrics.ndcg_at_10"].iloc[0]
    print(f"  {name}: pipeline {wall:.1f} s, peak RSS {peak_mb:.0f} MB, ranker ndcg@10 {ndcg:.4f}", flush=True)
    return {"wall_seconds": wall, "peak_rss_mb": peak_mb, "component_seconds": seconds, "ndcg@10": ndcg}


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Machine: {results['machine']}", ""]
    for name, data in results.get("generators", {}).items():
        lines += [f"Generators on {name} ({data['users']} users, {data['items']} items, "
                  f"{data['train_interactions']} training interactions; fit + top-{N} for every user, best of "
                  f"{results['repeats']}):", "",
                  "| generator | Encore (s) | implicit direct (s) | overhead ratio |", "|---|---|---|---|"]
        for generator, row in data["generators"].items():
            direct = f"{row['implicit_seconds']:.2f}" if "implicit_seconds" in row else "–"
            ratio = f"{row['overhead_ratio']:.3f}" if "overhead_ratio" in row else "–"
            lines.append(f"| {generator} | {row['encore_seconds']:.2f} | {direct} | {ratio} |")
        lines.append("")
    for name, data in results.get("pipeline", {}).items():
        parts = ", ".join(f"{c} {s:.1f}" for c, s in data["component_seconds"].items())
        lines += [f"Pipeline on {name}: {data['wall_seconds']:.1f} s wall, peak RSS {data['peak_rss_mb']:.0f} MB, "
                  f"ranker NDCG@10 {data['ndcg@10']:.4f}; per component (s): {parts}", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--only", choices=["generators", "pipeline"])
    parser.add_argument("--datasets", default="lastfm2k,synthetic_1m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generators", help="comma-separated subset of generators to time (default: all)")
    parser.add_argument("--name", default="benchmark", help="results file name")
    args = parser.parse_args()
    results: dict[str, Any] = {"commit": git_commit(),
                               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                                          f"Python {platform.python_version()}", "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in args.datasets.split(","):
            if args.only in (None, "generators"):
                only = args.generators.split(",") if args.generators else None
                results.setdefault("generators", {})[name] = bench_generators(name, workdir, args.repeats, only)
            if args.only in (None, "pipeline"):
                results.setdefault("pipeline", {})[name] = bench_pipeline(name, workdir)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2, default=float))
    (RESULTS / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
