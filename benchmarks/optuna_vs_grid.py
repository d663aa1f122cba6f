"""Optuna's TPE against the full grid on the ALS and EASE grids: how many trials it needs to reach
the grid's best ranker-target score.

    python -m benchmarks.optuna_vs_grid [--experiment experiments/lastfm2k.yaml]
                                        [--grids experiments/lastfm2k_time.yaml] [--seeds 10]

On the experiment's data and split (default Last.fm 2K, per-user split), with the ``als`` and ``ease``
grids of ``--grids`` (the shipped grids: ``experiments/lastfm2k_time.yaml``; ``lastfm2k.yaml`` has
none), every grid point is scored exactly as ``tune`` scores a trial
(:func:`encore.components.tune.score_trial`: fit on base, NDCG@10 of the target users' lists —
never test). Then ``tune``'s own :func:`~encore.components.tune.optuna_search` runs with
``tuning.trials`` = the grid's size over the same choices, once per sampler seed. A trial's
score is the grid's score of the point it drew: the fits are seeded and every Optuna choice is a
grid point, so refitting would give the same score (only the time would differ). ``tuning.trials``
counts fits: on these spaces of lists a combination TPE proposes again is moved to the nearest
unscored point (``tune``'s search without replacement), so no point is fitted twice. Recorded per
seed: the score of each fit, the best so far, the first fit that reaches the grid's best, and the
trials (fits + repeats, here the fits) up to it.
Result: ``benchmarks/results/optuna_vs_grid-<experiment>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from encore.components.tune import Trials, optuna_search, score_trial
from encore.config.experiment import REPO_ROOT, MachineSettings, grid_combinations, load_config
from encore.data.prepared import PreparedData
from encore.evaluation.evaluator import Evaluator
from encore.lineage import git_commit
from encore.pipeline.runner import output_dir, run_pipeline

RESULTS = REPO_ROOT / "benchmarks" / "results"
INSTANCES = ("als", "ease")


class LookedUpTrials(Trials):
    """``tune``'s trial bookkeeping, scoring a setting by the grid's score of that point."""

    def __init__(self, *args: Any, scores: dict[str, float], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.scores = scores

    def run(self, settings: dict[str, Any], on_epoch: Any = None) -> float:
        key = json.dumps(settings, sort_keys=True)
        self.rows.append({"trial": len(self.rows) + 1, "settings": key, "score": self.scores[key], "state": "complete"})
        self.scored[key] = self.scores[key]
        return self.scores[key]


def experiment_file(source: Path, grids: Path, workdir: Path) -> Path:
    experiment = yaml.safe_load(source.read_text())
    shipped = yaml.safe_load(grids.read_text())["tuning"]["grid"]
    experiment["tuning"] = {"grid": {name: shipped[name] for name in INSTANCES}}
    path = workdir / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


def measure(source: Path, grids: Path, workdir: Path, seeds: int) -> dict[str, Any]:
    commit = os.environ.get("ENCORE_MEASURED_COMMIT") or git_commit()
    settings = MachineSettings(_env_file=None, mlflow_tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                               encore_output_dir=workdir / "outputs")
    config = load_config(experiment_file(source, grids, workdir), settings=settings)
    run_pipeline(config, ["prepare"])
    prepared = PreparedData(output_dir(config, "prepare"))
    evaluator = Evaluator(prepared, "base", tuple(config.evaluation.ks))
    metric = config.tuning.metric or config.evaluation.primary_metric
    load_before = os.getloadavg()[0]
    instances: dict[str, Any] = {}
    for name in INSTANCES:
        space = config.tuning.grid[name]
        grid = []
        for point in grid_combinations(space):
            started = time.perf_counter()
            scores, _ = score_trial(config, prepared, evaluator, name, point)
            grid.append({"settings": point, "score": float(scores[metric]),
                         "seconds": round(time.perf_counter() - started, 2)})
            print(name, point, f"{scores[metric]:.4f}", flush=True)
        best = max(row["score"] for row in grid)
        lookup = {json.dumps(row["settings"], sort_keys=True): row["score"] for row in grid}
        runs = []
        for seed in range(seeds):
            seeded = config.model_copy(update={
                "experiment": config.experiment.model_copy(update={"seed": seed}),
                "tuning": config.tuning.model_copy(update={"search": "optuna", "trials": len(grid)})})
            trials = LookedUpTrials(seeded, prepared, evaluator, name, metric, scores=lookup)
            optuna_search(trials, space, seeded)
            fits = [row for row in trials.rows if row["state"] == "complete"]
            scores = [row["score"] for row in fits]
            reached = [n for n, value in enumerate(scores, start=1) if value >= best - 1e-12]
            half = len(grid) // 2
            runs.append({"seed": seed, "scores": scores, "best_so_far": list(np.maximum.accumulate(scores)),
                         "first_reaching_best": reached[0] if reached else None,
                         "proposals_to_first_reaching_best": fits[reached[0] - 1]["trial"] if reached else None,
                         "repeats": len(trials.rows) - len(fits),
                         "best_within_half": max(scores[:half])})
        firsts = [run["first_reaching_best"] for run in runs]
        instances[name] = {
            "space": space, "grid_size": len(grid), "grid": grid, "grid_best": best,
            "grid_best_settings": next(row["settings"] for row in grid if row["score"] == best),
            "half_budget": len(grid) // 2, "optuna": runs,
            "trials_to_best_per_seed": firsts,
            "seeds_reaching_best_within_half": sum(f is not None and f <= len(grid) // 2 for f in firsts),
            "median_first_reaching_best": float(np.median([f if f is not None else np.inf for f in firsts]))}
    summary = json.loads((output_dir(config, "prepare") / "summary.json").read_text())
    sampler = ("TPE, seeded; start-up: max(2, trials // 5) scrambled-Sobol points (seeded); multivariate; "
               "ordered numeric lists searched by position; without replacement (a scored proposal moves to the "
               "nearest unscored point)")
    return {"experiment": config.experiment.name, "commit": commit, "sampler": sampler,
            "metric": metric, "segment": config.tuning.segment,
            "target_users": int(evaluator.segments[config.tuning.segment].n_users), "n_users": summary["n_users"],
            "n_items": summary["n_items"], "seeds": seeds, "grids_from": grids.name,
            "load_average": [load_before, os.getloadavg()[0]], "instances": instances}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.optuna_vs_grid", description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "experiments" / "lastfm2k.yaml")
    parser.add_argument("--grids", type=Path, default=REPO_ROOT / "experiments" / "lastfm2k_time.yaml")
    parser.add_argument("--seeds", type=int, default=10, help="Optuna sampler seeds 0 .. N-1")
    parser.add_argument("--workdir", type=Path, default=None, help="outputs and MLflow store (default: a temp dir)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="encore-optuna-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = measure(args.experiment, args.grids, workdir, args.seeds)
    path = Path(os.environ.get("ENCORE_RESULTS_DIR", RESULTS)) / f"optuna_vs_grid-{report['experiment']}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({name: {k: v for k, v in entry.items() if k not in ("grid", "optuna")}
                      for name, entry in report["instances"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
