"""The cost of the ranking stage's scoring and of evaluate, pandas vs Spark, on one machine and a cluster.

    python -m benchmarks.spark_stages [--experiment lastfm2k] [--masters local,1,2]

Runs ``prepare + popular + als + ranker + evaluate`` of the experiment with two proposing
generators (every other instance disabled: the stage's cost, not the generators', is measured)
with the pandas engines, then the ranker and evaluate again with ``components.ranker.engine:
spark`` and ``evaluation.engine: spark`` on every master: ``local`` (``local[*]``), ``1`` and
``2`` (a loopback standalone cluster of that many 1-core workers). The ranker's training is the
same single-machine fit in every run; what differs is the scoring (``rank_seconds``) and
evaluate's metric computation. Per run: seconds, the load average beside them, the bytes each
stage reads (candidate / list Parquet) and writes (``recommendations.parquet``), the broadcast's
size, and whether the lists and figures equal the pandas run's. Written to
``benchmarks/results/spark_stages.json``; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.docs_figures import git_commit, machine
from benchmarks.spark import cluster_settings, session_on
from encore.config.experiment import REPO_ROOT, EncoreConfig, load_config
from encore.config.machine import MachineSettings
from encore.data.spark_cluster import StandaloneCluster
from encore.data.spark_session import load_spark_settings
from encore.outputs import EvaluateOutput, GeneratorOutput, RankerOutput
from encore.pipeline.runner import output_dir, run_pipeline

RESULTS = REPO_ROOT / "benchmarks" / "results"
KEEP = ("popular", "als")
SPARK = ["components.ranker.engine=spark", "evaluation.engine=spark"]


def config_for(name: str, workdir: Path, extra: list[str]) -> EncoreConfig:
    base = load_config(REPO_ROOT / "experiments" / f"{name}.yaml")
    off = [f"components.{g}.enabled=false" for g in base.components.generators if g not in KEEP]
    settings = MachineSettings(mlflow_tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                               encore_output_dir=workdir / "outputs")
    return load_config(REPO_ROOT / "experiments" / f"{name}.yaml", [*off, "evaluation.n_bootstrap=200", *extra],
                       settings=settings)


def timed(config: EncoreConfig, component: str) -> float:
    started = time.perf_counter()
    run_pipeline(config, [component], force=[component], note=f"bench {component}")
    return time.perf_counter() - started


def size(path: Path) -> int:
    return path.stat().st_size


def stage_run(config: EncoreConfig) -> dict[str, Any]:
    """ranker and evaluate of ``config`` (upstream reused), timed; their reads and writes."""
    load = round(os.getloadavg()[0], 1)
    ranker_seconds = timed(config, "ranker")
    evaluate_seconds = timed(config, "evaluate")
    ranker = RankerOutput(output_dir(config, "ranker"))
    metrics = ranker.metrics()
    return {"load_average": load, "ranker_seconds": ranker_seconds, "rank_seconds": metrics["rank_seconds"],
            "features_train_seconds": metrics["features_train_seconds"], "fit_seconds": metrics["fit_seconds"],
            "evaluate_seconds": evaluate_seconds,
            "recommendations_bytes": size(ranker.path / ranker.RECOMMENDATIONS),
            "broadcast_bytes": metrics.get("spark_broadcast_bytes"), "buckets": metrics["rank_batches"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="lastfm2k")
    parser.add_argument("--masters", default="local,1,2", help="local and/or numbers of cluster workers")
    parser.add_argument("--out", type=Path, default=RESULTS / "spark_stages.json")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"commit": git_commit(), "machine": machine(), "experiment": args.experiment,
                              "generators": list(KEEP), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="encore-bench-spark-stages-") as tmp:
        workdir = Path(tmp)
        pandas_config = config_for(args.experiment, workdir, [])
        run_pipeline(pandas_config, ["prepare", *KEEP], note="bench upstream")
        report["runs"]["pandas"] = stage_run(pandas_config) | {"master": "this process (pandas)"}
        print(f"pandas: {report['runs']['pandas']}", flush=True)
        reference = RankerOutput(output_dir(pandas_config, "ranker")).recommendations()
        reference_table = EvaluateOutput(output_dir(pandas_config, "evaluate")).comparison()
        prepared = output_dir(pandas_config, "prepare")
        reads = {g: size(GeneratorOutput(output_dir(pandas_config, g)).path / GeneratorOutput.candidates_file("train"))
                 for g in KEEP}
        summary = json.loads((prepared / "summary.json").read_text()) if (prepared / "summary.json").exists() else {}
        report |= {"candidate_bytes": reads, "test_part_bytes": size(prepared / "test.parquet"),
                   "n_interactions": summary.get("n_interactions"), "n_users": summary.get("n_users"),
                   "n_items": summary.get("n_items")}
        spark_config = config_for(args.experiment, workdir, SPARK)
        base = load_spark_settings()
        for master in args.masters.split(","):
            with contextlib.ExitStack() as stack:
                if master == "local":
                    url, settings, where = "local[*]", base, "local[*]"
                else:
                    cluster = stack.enter_context(StandaloneCluster(n_workers=int(master), cores=1, memory="1g"))
                    url, settings = cluster.master_url, cluster_settings(base)
                    where = f"standalone, {master} x 1 core"
                stack.enter_context(session_on(url, settings))
                run = stage_run(spark_config) | {"master": where}
            recs = RankerOutput(output_dir(spark_config, "ranker")).recommendations()
            table = EvaluateOutput(output_dir(spark_config, "evaluate")).comparison()
            exact = [c for c in recs.columns if c != "score"]
            run["same_lists_as_pandas"] = bool(recs[exact].equals(reference[exact]) and np.allclose(
                recs["score"], reference["score"], rtol=1e-6, atol=1e-7, equal_nan=True))
            run["max_metric_difference"] = float(np.abs(table.to_numpy() - reference_table.to_numpy()).max())
            report["runs"][master] = run
            print(f"{master}: {run}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v))
                        + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    sys.exit(main())
