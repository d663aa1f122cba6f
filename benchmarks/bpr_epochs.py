"""BPR's fit cost against its quality: epochs (``iterations``) on a synthetic scale experiment.

    python -m benchmarks.bpr_epochs [--experiment experiments/synthetic_1m.yaml]
                                    [--values 25,50,100] [--reference 100] [--instance bpr]

Runs ``prepare`` and the BPR instance once per value of ``components.<instance>.iterations``
(``prepare`` computed once and reused), as the pipeline does (both stages' fits, candidates,
evaluation on test). Per value: the fit seconds of each stage, the test NDCG@10 and candidate
recall of its lists, its paired difference (bootstrap 95% CI over test users) against
``--reference`` epochs, and the target-part candidate recall of the base fit (what an early stop
on the ranker-target part would watch; never test). The experiment's ``num_threads`` is kept:
with more than one thread implicit's BPR updates race, so the same seed gives results that
differ in the last digits (stated in the result). Written to
``benchmarks/results/bpr-epochs-<experiment>.json``; a benchmark, not a test.
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
from encore.data.prepared import PreparedData
from encore.evaluation.evaluator import Evaluator, lists_from_frame
from encore.evaluation.significance import paired_comparison
from encore.lineage import git_commit
from encore.outputs import GeneratorOutput
from encore.pipeline import output_dir, run_pipeline
from encore.pipeline.cli import setup_logging

RESULTS = REPO_ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bpr_epochs", description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "experiments" / "synthetic_1m.yaml")
    parser.add_argument("--values", default="25,50,100")
    parser.add_argument("--reference", type=int, default=100)
    parser.add_argument("--instance", default="bpr")
    args = parser.parse_args(argv)
    setup_logging()
    values = sorted({int(v) for v in args.values.split(",") if v.strip()} | {args.reference})
    rows: dict[str, dict[str, Any]] = {}
    per_user: dict[int, np.ndarray] = {}
    experiment, threads = "", 0
    for value in values:
        config = load_config(args.experiment, [f"components.{args.instance}.iterations={value}"])
        experiment = config.experiment.name
        threads = int(getattr(config.components.generator(args.instance), "num_threads", 1))
        load_before = os.getloadavg()
        started = time.perf_counter()
        run_pipeline(config, ["prepare", args.instance], note=f"bpr iterations={value}")
        seconds = time.perf_counter() - started
        out = GeneratorOutput(output_dir(config, args.instance))
        metrics = out.metrics()
        prepared = PreparedData(output_dir(config, "prepare"))
        evaluator = Evaluator(prepared, "train", tuple(config.evaluation.ks))
        lists = lists_from_frame(out.candidates("train"), evaluator.users, max(config.evaluation.ks))
        per_user[value] = evaluator.per_user(lists, "ndcg@10")
        rows[str(value)] = {
            "fit_base_seconds": round(metrics["fit_base_seconds"], 1),
            "fit_train_seconds": round(metrics["fit_train_seconds"], 1),
            "ndcg@10": metrics["ndcg@10"], "candidate_recall": metrics["candidate_recall"],
            "target_candidate_recall": metrics.get("target_candidate_recall"),
            "component_seconds": round(seconds, 1), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        }
    for value in values:
        diff = paired_comparison(per_user[args.reference], per_user[value], random_state=0)
        rows[str(value)]["ndcg@10_vs_reference"] = {"diff": diff.diff, "ci_low": diff.ci_low,
                                                    "ci_high": diff.ci_high, "p_value": diff.p_value}
    report = {"experiment": experiment, "instance": args.instance, "reference": args.reference,
              "num_threads": threads, "reproducible": threads == 1, "commit": git_commit(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "values": rows}
    out_file = RESULTS / f"bpr-epochs-{experiment}.json"
    out_file.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({v: (r["fit_train_seconds"], r["ndcg@10"], r["ndcg@10_vs_reference"]) for v, r in rows.items()},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
