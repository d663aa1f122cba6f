"""The spread of the ranker's result over its own seeds.

    python -m benchmarks.seeds [--experiment experiments/lastfm2k_time.yaml] [--seeds 42,43,44]
                               [--set KEY=VALUE ...] [--name NAME]

Runs the experiment's pipeline once per ranker seed (``components.ranker.seed``: the user
sample, negatives, the policy's validation slice and CatBoost). The generators do not depend
on it, so their outputs are computed once and reused. For each seed and segment it reads the
ranker's primary metric and its paired uplift over the best single generator with the CI,
from the pooled folds when ``split.folds`` > 1, else from ``evaluate``; then the mean, the
standard deviation and the range over seeds. Written to ``benchmarks/results/<name>.json``
and ``.md``; a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from scripts.core.config import REPO_ROOT, EncoreConfig, load_config
from scripts.core.outputs import EvaluateOutput, FoldsOutput
from scripts.pipeline.folds import folds_dir, n_folds
from scripts.pipeline.runner import output_dir, run_pipeline, setup_logging

RESULTS = REPO_ROOT / "benchmarks" / "results"
SEGMENTS = ("all", "warm", "cold")


def headline(config: EncoreConfig) -> dict[str, dict[str, Any]]:
    """Per segment: users, the ranker's primary metric, the best generator and the uplift with its CI."""
    if n_folds(config) > 1:
        summary = FoldsOutput(folds_dir(config)[1]).summary()
    else:
        summary = EvaluateOutput(output_dir(config, "evaluate")).significance()
    primary = summary["primary_metric"]
    rows = {}
    for segment in SEGMENTS:
        entry = summary["segments"].get(segment)
        if not entry or primary not in entry or "vs_best_generator" not in entry:
            continue
        vs = entry["vs_best_generator"]
        rows[segment] = {"n_users": entry["n_users"], "ranker": entry[primary]["ranker"],
                         "best_generator": entry["best_generator"], "best": entry[primary][entry["best_generator"]],
                         "uplift": vs["rel_uplift"], "ci_low": vs["rel_ci_low"], "ci_high": vs["rel_ci_high"]}
    return rows


def spread(per_seed: dict[int, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    out = {}
    for segment in SEGMENTS:
        values = [r[segment] for r in per_seed.values() if segment in r]
        if not values:
            continue
        ranker = [v["ranker"] for v in values]
        uplift = [v["uplift"] for v in values]
        out[segment] = {"ranker_mean": statistics.fmean(ranker), "ranker_sd": statistics.pstdev(ranker),
                        "ranker_min": min(ranker), "ranker_max": max(ranker),
                        "uplift_mean": statistics.fmean(uplift), "uplift_min": min(uplift), "uplift_max": max(uplift),
                        "ci_above_zero": sum(v["ci_low"] > 0 for v in values), "seeds": len(values)}
    return out


def markdown(name: str, per_seed: dict[int, dict[str, dict[str, Any]]], summary: dict[str, dict[str, float]],
             machine: str) -> str:
    lines = [f"# Ranker seeds: {name}", "", f"Machine: {machine}", "",
             "| seed | segment | users | ranker | best generator | uplift | 95% CI |", "|---|---|---|---|---|---|---|"]
    for seed, rows in per_seed.items():
        for segment, r in rows.items():
            lines.append(f"| {seed} | {segment} | {r['n_users']} | {r['ranker']:.4f} | {r['best_generator']} "
                         f"{r['best']:.4f} | {100 * r['uplift']:+.1f}% | {100 * r['ci_low']:+.1f}% .. "
                         f"{100 * r['ci_high']:+.1f}% |")
    lines += ["", "| segment | ranker mean ± sd (min .. max) | uplift mean (min .. max) | CI above 0 |",
              "|---|---|---|---|"]
    for segment, s in summary.items():
        lines.append(f"| {segment} | {s['ranker_mean']:.4f} ± {s['ranker_sd']:.4f} ({s['ranker_min']:.4f} .. "
                     f"{s['ranker_max']:.4f}) | {100 * s['uplift_mean']:+.1f}% ({100 * s['uplift_min']:+.1f}% .. "
                     f"{100 * s['uplift_max']:+.1f}%) | {s['ci_above_zero']} of {s['seeds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "experiments" / "lastfm2k_time.yaml")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default=None, help="results file name (default seeds-<experiment name>)")
    args = parser.parse_args()
    setup_logging()
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed, seconds = {}, {}
    for seed in seeds:
        config = load_config(args.experiment, [*args.overrides, f"components.ranker.seed={seed}"])
        started = time.perf_counter()
        run_pipeline(config, note=f"ranker-seed-{seed}")
        seconds[seed] = time.perf_counter() - started
        per_seed[seed] = headline(config)
    name = args.name or f"seeds-{config.experiment.name}"
    machine = (f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")
    summary = spread(per_seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"experiment": str(args.experiment), "overrides": args.overrides, "seeds": per_seed, "spread": summary,
         "seconds": seconds, "machine": machine}, indent=2, default=str))
    (RESULTS / f"{name}.md").write_text(markdown(name, per_seed, summary, machine))
    print(markdown(name, per_seed, summary, machine))


if __name__ == "__main__":
    main()
