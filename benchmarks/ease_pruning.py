"""What EASE's saved ``B`` costs on disk against what the ranker gets from it.

    python -m benchmarks.ease_pruning [--experiment experiments/lastfm2k.yaml]
                                      [--values 32,128,512,null] [--instances ease,ease500]

Runs the experiment's pipeline once per value of ``saved_top_k`` (set on every EASE instance
named by ``--instances``; ``null`` = the dense matrix), reusing every output that does not
depend on it (all but those instances, the ranker and evaluate). Per value: the instances'
saved model bytes, the ranker's primary metric on test and its paired difference (bootstrap
95% CI over test users) against the dense value's ranker, the ranker's uplift over the best
generator; and how much of each column's squared weight the kept entries hold (the first
instance's train fit). Written to ``benchmarks/results/ease-pruning-<experiment>.json``; a benchmark, not
a test (it measures what docs/benchmarks.md, "Outputs", chooses ``saved_top_k`` by).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from encore.config.experiment import REPO_ROOT, load_config
from encore.evaluation.significance import paired_comparison
from encore.lineage import git_commit
from encore.outputs import EvaluateOutput, GeneratorOutput
from encore.pipeline import output_dir, run_pipeline
from encore.pipeline.cli import setup_logging

RESULTS = REPO_ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ease_pruning", description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "experiments" / "lastfm2k.yaml")
    parser.add_argument("--values", default="32,128,512,null")
    parser.add_argument("--instances", default="ease,ease500")
    args = parser.parse_args(argv)
    setup_logging()
    instances = [name.strip() for name in args.instances.split(",") if name.strip()]
    values = [value.strip() for value in args.values.split(",")]
    if "null" not in values:
        values.append("null")  # the dense reference every value is paired with
    rows: dict[str, dict[str, Any]] = {}
    per_user: dict[str, np.ndarray] = {}
    experiment = ""
    for value in values:
        config = load_config(args.experiment, [f"components.{name}.saved_top_k={value}" for name in instances])
        experiment = config.experiment.name
        load_before = os.getloadavg()
        started = time.perf_counter()
        run_pipeline(config, note=f"ease saved_top_k={value}")
        seconds = time.perf_counter() - started
        evaluated = EvaluateOutput(output_dir(config, "evaluate"))
        primary = config.evaluation.primary_metric
        table = evaluated.per_user(["user_id", "ranker"]).sort_values("user_id")
        per_user[value] = table["ranker"].to_numpy(np.float64)
        vs_best = evaluated.significance()["vs_best_generator"]
        rows[value] = {
            "model_bytes": {name: sum(f.stat().st_size for f in output_dir(config, name).glob("model_*.npz"))
                            for name in instances},
            f"ranker_{primary}": float(evaluated.comparison().loc["ranker", primary]),
            "ranker_vs_best_generator": {k: vs_best[k] for k in ("rel_uplift", "rel_ci_low", "rel_ci_high")},
            "pipeline_seconds": round(seconds, 1), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        }
    dense = load_config(args.experiment, [f"components.{name}.saved_top_k=null" for name in instances])
    B = GeneratorOutput(output_dir(dense, instances[0])).model("train").B_.astype(np.float64)
    mass = np.maximum((B ** 2).sum(axis=0), np.finfo(np.float64).tiny)
    for value in values:
        if value != "null":
            # How much of each column's squared weight the kept entries hold (the rest scores 0).
            top = -np.partition(-np.abs(B), int(value) - 1, axis=0)[: int(value)]
            rows[value][f"{instances[0]}_train_column_mass_kept"] = {
                "median": float(np.median((top ** 2).sum(axis=0) / mass)),
                "p10": float(np.quantile((top ** 2).sum(axis=0) / mass, 0.1))}
        diff = paired_comparison(per_user["null"], per_user[value], random_state=0)
        rows[value]["ranker_vs_dense"] = {"diff": diff.diff, "ci_low": diff.ci_low, "ci_high": diff.ci_high,
                                          "p_value": diff.p_value}
    report = {"experiment": experiment, "instances": instances, "commit": git_commit(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "note": "pipeline_seconds of a value include only what it recomputed (the EASE instances, "
                      "ranker, evaluate); the first value may also compute the rest",
              "values": rows}
    out = RESULTS / f"ease-pruning-{experiment}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({v: (r["model_bytes"], r["ranker_vs_dense"]) for v, r in rows.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
