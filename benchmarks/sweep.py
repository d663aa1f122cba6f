"""The ranker's result across values of one setting: its seed (the spread), its row budget, ...

    python -m benchmarks.sweep [--experiment experiments/lastfm2k_time.yaml]
                               [--key components.ranker.seed] [--values 42,43,44]
                               [--set KEY=VALUE ...] [--name NAME]

Runs the experiment's pipeline once per value of ``--key`` (default the ranker's own seed,
``components.ranker.seed``: the user sample, negatives, the policy's validation slice and
CatBoost; or e.g. ``components.ranker.train_max_rows``). Outputs that do not depend on the
key (the generators, for ranker settings) are computed once and reused. For each value and
segment it reads the ranker's primary metric and its paired uplift over the best single
generator with the CI, from the pooled folds when ``split.folds`` > 1, else from
``evaluate``, and the ranker's training diagnostics; then the mean, the standard deviation and
the range over the values. Written to ``benchmarks/results/<name>.json`` and ``.md``; a
benchmark, not a test.
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

from encore.config.experiment import REPO_ROOT, EncoreConfig, load_config
from encore.evaluation.segments import POOLED_SEGMENTS
from encore.io import read_json
from encore.outputs import EvaluateOutput, FoldsOutput, RankerOutput
from encore.pipeline import output_dir, run_pipeline, tuned
from encore.pipeline.cli import setup_logging
from encore.pipeline.folds import fold_configs, folds_dir, n_folds

RESULTS = REPO_ROOT / "benchmarks" / "results"
SEGMENTS = POOLED_SEGMENTS


def headline(config: EncoreConfig) -> dict[str, dict[str, Any]]:
    """Per segment: users, the ranker's primary metric, the best generator and the uplift with its CI."""
    if n_folds(config) > 1:
        summary = FoldsOutput(folds_dir(config)[1]).summary()
    else:
        summary = EvaluateOutput(output_dir(tuned(config), "evaluate")).significance()
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


DIAGNOSTICS = ("train_rows", "train_sampled_users", "train_target_users", "fit_seconds", "trees")
"""The ranker's training diagnostics shown beside each value (folds: the last fold's)."""


def spread(per_value: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    out = {}
    for segment in SEGMENTS:
        values = [r[segment] for r in per_value.values() if segment in r]
        if not values:
            continue
        ranker = [v["ranker"] for v in values]
        uplift = [v["uplift"] for v in values]
        out[segment] = {"ranker_mean": statistics.fmean(ranker), "ranker_sd": statistics.pstdev(ranker),
                        "ranker_min": min(ranker), "ranker_max": max(ranker),
                        "uplift_mean": statistics.fmean(uplift), "uplift_min": min(uplift), "uplift_max": max(uplift),
                        "ci_above_zero": sum(v["ci_low"] > 0 for v in values), "values": len(values)}
    return out


def markdown(name: str, key: str, per_value: dict[str, dict[str, dict[str, Any]]],
             ranker: dict[str, dict[str, float]], summary: dict[str, dict[str, float]], machine: str) -> str:
    label = key.rsplit(".", 1)[-1]
    lines = [f"# {name}: the ranker across `{key}`", "", f"Machine: {machine}", "",
             f"| {label} | segment | users | ranker | best generator | uplift | 95% CI |",
             "|---|---|---|---|---|---|---|"]
    for value, rows in per_value.items():
        for segment, r in rows.items():
            lines.append(f"| {value} | {segment} | {r['n_users']} | {r['ranker']:.4f} | {r['best_generator']} "
                         f"{r['best']:.4f} | {100 * r['uplift']:+.1f}% | {100 * r['ci_low']:+.1f}% .. "
                         f"{100 * r['ci_high']:+.1f}% |")
    lines += ["", f"| {label} | " + " | ".join(DIAGNOSTICS) + " |", "|---" * (len(DIAGNOSTICS) + 1) + "|"]
    lines += [f"| {value} | " + " | ".join(f"{diag.get(k, float('nan')):.6g}" for k in DIAGNOSTICS) + " |"
              for value, diag in ranker.items()]
    lines += ["", "| segment | ranker mean ± sd (min .. max) | uplift mean (min .. max) | CI above 0 |",
              "|---|---|---|---|"]
    for segment, s in summary.items():
        lines.append(f"| {segment} | {s['ranker_mean']:.4f} ± {s['ranker_sd']:.4f} ({s['ranker_min']:.4f} .. "
                     f"{s['ranker_max']:.4f}) | {100 * s['uplift_mean']:+.1f}% ({100 * s['uplift_min']:+.1f}% .. "
                     f"{100 * s['uplift_max']:+.1f}%) | {s['ci_above_zero']} of {s['values']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "experiments" / "lastfm2k_time.yaml")
    parser.add_argument("--key", default="components.ranker.seed", help="the dotted setting to vary")
    parser.add_argument("--values", default="42,43,44", help="comma-separated values (parsed as YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default=None, help="results file name (default <key's last part>-<experiment>)")
    args = parser.parse_args()
    setup_logging()
    values = [v.strip() for v in args.values.split(",")]
    label = args.key.rsplit(".", 1)[-1]
    per_value, seconds, ranker = {}, {}, {}
    for value in values:
        config = load_config(args.experiment, [*args.overrides, f"{args.key}={value}"])
        started = time.perf_counter()
        run_pipeline(config, note=f"{label}-{value}")
        seconds[value] = time.perf_counter() - started
        per_value[value] = headline(config)
        last = fold_configs(config)[-1]
        metrics = read_json(RankerOutput(output_dir(tuned(last), "ranker")).path / RankerOutput.METRICS)
        ranker[value] = {k: metrics[k] for k in DIAGNOSTICS if k in metrics}
    name = args.name or f"{label}-{config.experiment.name}"
    machine = f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    summary = spread(per_value)
    text = markdown(name, args.key, per_value, ranker, summary, machine)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"experiment": str(args.experiment), "key": args.key, "overrides": args.overrides, "values": per_value,
         "ranker": ranker, "spread": summary, "seconds": seconds, "machine": machine}, indent=2, default=str))
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
