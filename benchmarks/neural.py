"""The neural kinds (sasrec, twotower) against tuned EASE: NDCG@10 on test, training time, peak memory.

    python -m benchmarks.neural [--experiment experiments/lastfm2k_time.yaml] [--workdir DIR]
                                [--name neural-lastfm2k_time]

Runs the experiment's last split (``split.folds`` dropped: one fold, the experiment's own cut
points) with ``prepare``, ``tune`` (EASE's grid only, on the experiment's tuning segment), ``ease``
and a ``sasrec`` and a ``twotower`` instance at their defaults (one torch thread) (each stops early on the
ranker-target part, then refits on base + target for its best epoch count). Each instance's train
lists are scored on test, over all test users and over warm ones, with the paired bootstrap CI of
the difference against EASE; training seconds (base + train fits) and the component's peak RSS
come from the run (wall time: the 1-minute load average before and after is recorded).
Results go to ``benchmarks/results/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.docs_figures import neural_table
from encore.config.experiment import REPO_ROOT, MachineSettings, load_config
from encore.data.prepared import PreparedData
from encore.evaluation.evaluator import Evaluator, lists_from_frame
from encore.evaluation.significance import paired_comparison
from encore.lineage import git_commit
from encore.outputs import GeneratorOutput
from encore.pipeline.runner import output_dir, run_pipeline, tuned

RESULTS = REPO_ROOT / "benchmarks" / "results"
INSTANCES = ("ease", "sasrec", "twotower")
METRIC = "ndcg@10"


def experiment_file(source: Path, workdir: Path) -> Path:
    """The experiment with one fold, EASE's grid only, and the two neural instances added."""
    experiment = yaml.safe_load(source.read_text())
    experiment["split"].pop("folds", None)
    experiment["split"].pop("fold_days", None)
    tuning = experiment.get("tuning", {})
    tuning["grid"] = {"ease": tuning.get("grid", {}).get("ease", {"l2": [50.0, 500.0, 3000.0]})}
    tuning["segments"] = {}
    experiment["tuning"] = tuning
    # One torch thread: on shared cores two threads wait for each other (docs/neural.md).
    experiment.setdefault("components", {}).update({"sasrec": {"kind": "sasrec", "num_threads": 1},
                                                     "twotower": {"kind": "twotower", "num_threads": 1}})
    path = workdir / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


def peak_mib(config: Any, name: str) -> float | None:
    import mlflow

    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[config.experiment.name], output_format="list",
                              filter_string=f"attributes.run_name = '{name}'")
    values = [r.data.metrics.get("peak_rss_mib") for r in runs if "peak_rss_mib" in r.data.metrics]
    return max(values) if values else None


def measure(experiment: Path, workdir: Path) -> dict[str, Any]:
    commit = git_commit()  # the code measured, before anything is edited during the run
    load_before = os.getloadavg()[0]
    settings = MachineSettings(_env_file=None, mlflow_tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                               encore_output_dir=workdir / "outputs")  # data: ENCORE_DATA_DIR, as for a run
    config = load_config(experiment_file(experiment, workdir), settings=settings)
    run_pipeline(config, ["prepare", "tune", *INSTANCES])
    config = tuned(config)
    prepared = PreparedData(output_dir(config, "prepare"))
    evaluator = Evaluator(prepared, "train", (10,))
    k = 10
    per_user: dict[str, dict[str, Any]] = {}
    rows = []
    for name in INSTANCES:
        out = GeneratorOutput(output_dir(config, name))
        lists = lists_from_frame(out.candidates("train"), evaluator.users, k)
        metrics = out.metrics()
        per_user[name] = {segment: evaluator.per_user(lists, METRIC, segment) for segment in ("all", "warm")}
        rows.append({"instance": name, "kind": config.components.generator(name).kind,
                     "settings": config.components.generator(name).params(),
                     "ndcg@10": float(per_user[name]["all"].mean()),
                     "ndcg@10_warm": float(per_user[name]["warm"].mean()),
                     "fit_seconds": metrics["fit_base_seconds"] + metrics["fit_train_seconds"],
                     "best_epoch": metrics.get("best_epoch"), "peak_rss_mib": peak_mib(config, name)})
    for row in rows:
        for segment, suffix in (("all", ""), ("warm", "_warm")):
            if row["instance"] == "ease":
                continue
            comparison = paired_comparison(per_user["ease"][segment], per_user[row["instance"]][segment],
                                           metric=METRIC, random_state=config.experiment.seed)
            row[f"diff_ci{suffix}"] = [comparison.ci_low, comparison.ci_high]
    summary = json.loads((output_dir(config, "prepare") / "summary.json").read_text())
    return {"experiment": config.experiment.name, "commit": commit, "n_users": summary["n_users"],
            "n_items": summary["n_items"], "base_rows": summary.get("base_rows"),
            "test_users": len(evaluator.users), "warm_test_users": int(evaluator.segments["warm"].n_users),
            "load_average": [load_before, os.getloadavg()[0]], "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    return "\n".join([f"Commit {report['commit'][:7]}.", "", *neural_table(report)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.neural", description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "experiments" / "lastfm2k_time.yaml")
    parser.add_argument("--workdir", type=Path, default=None, help="outputs and MLflow store (default: a temp dir)")
    parser.add_argument("--name", default=None, help="results file name (default: neural-<experiment name>)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="encore-neural-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = measure(args.experiment, workdir)
    name = args.name or f"neural-{report['experiment']}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
