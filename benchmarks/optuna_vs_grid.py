"""Optuna search against the full grid on the ALS and EASE grids: how many trials it needs to reach
the grid's best ranker-target score.

    python -m benchmarks.optuna_vs_grid [--experiment experiments/lastfm2k.yaml]
                                        [--grids experiments/lastfm2k_time.yaml] [--seeds 10]
                                        [--sampler auto|tpe]
    python -m benchmarks.optuna_vs_grid --synthetic

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
``--sampler`` is ``tuning.sampler`` (``auto``: expected improvement of a Gaussian process over the
untried points; ``tpe``: TPE's proposals). Result: ``benchmarks/results/optuna_vs_grid-<experiment>.json``
(``-<experiment>-tpe.json`` for ``tpe``).

``--synthetic``: the same count on small grids that are not Encore's, so that the sampler is not
judged on the two shipped grids alone: for each grid shape (1-D lists of 5 to 12 values; 3×5, 4×4,
2×3×3; a 3-choice categorical setting × 6 values), six random score surfaces (a peak at a random
place on each ordered axis, random widths, a random offset per categorical choice, Gaussian noise
of sd 0.02 per point; generator seeded 0), each searched with sampler seeds 0–4 and a budget of as
many fits as the grid has points, for both samplers. Result: ``optuna_vs_grid-synthetic.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import yaml

from encore.components.tune import ScoredTrials, Trials, optuna_search, score_trial
from encore.config.experiment import REPO_ROOT, MachineSettings, TuningConfig, grid_combinations, load_config
from encore.data.prepared import PreparedData
from encore.evaluation.evaluator import Evaluator
from encore.lineage import git_commit
from encore.pipeline.runner import output_dir, run_pipeline

RESULTS = REPO_ROOT / "benchmarks" / "results"
INSTANCES = ("als", "ease")
SAMPLERS = {
    "auto": "space-filling start-up: max(2, trials // 5) scrambled-Sobol points (seeded); then the expected "
            "improvement of a Gaussian process (scikit-learn: constant × Matérn 5/2 + white noise, "
            "hyperparameters by marginal likelihood) over the untried points; no point fitted twice",
    "tpe": "space-filling start-up: max(2, trials // 5) scrambled-Sobol points (seeded); then TPE (seeded, "
           "multivariate, ordered numeric lists by position), a proposal already tried moved to the nearest "
           "untried point; no point fitted twice",
}


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


def first_reaching(fits: list[float], best: float) -> int | None:
    """The first fit (1-based) whose score is the grid's best; None when none is."""
    return next((n for n, value in enumerate(fits, start=1) if value >= best - 1e-12), None)


def measure(source: Path, grids: Path, workdir: Path, seeds: int, sampler: str) -> dict[str, Any]:
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
                "tuning": config.tuning.model_copy(update={"search": "optuna", "trials": len(grid),
                                                           "sampler": sampler})})
            trials = LookedUpTrials(seeded, prepared, evaluator, name, metric, scores=lookup)
            optuna_search(trials, space, seeded)
            fits = [row for row in trials.rows if row["state"] == "complete"]
            scores = [row["score"] for row in fits]
            reached = first_reaching(scores, best)
            half = len(grid) // 2
            runs.append({"seed": seed, "scores": scores, "best_so_far": list(np.maximum.accumulate(scores)),
                         "first_reaching_best": reached,
                         "proposals_to_first_reaching_best": fits[reached - 1]["trial"] if reached else None,
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
    return {"experiment": config.experiment.name, "commit": commit, "tuning_sampler": sampler,
            "sampler": f"tuning.sampler: {sampler} — {SAMPLERS[sampler]}",
            "metric": metric, "segment": config.tuning.segment,
            "target_users": int(evaluator.segments[config.tuning.segment].n_users), "n_users": summary["n_users"],
            "n_items": summary["n_items"], "seeds": seeds, "grids_from": grids.name,
            "load_average": [load_before, os.getloadavg()[0]], "instances": instances}


SHAPES: tuple[tuple[tuple[int, ...], bool], ...] = (
    ((5,), False), ((6,), False), ((8,), False), ((10,), False), ((12,), False),
    ((3, 5), False), ((4, 4), False), ((2, 3, 3), False), ((3, 6), True))
"""Grid shapes of the synthetic surfaces; True: the first setting is categorical."""


def surface(rng: np.random.Generator, shape: tuple[int, ...], categorical: bool
            ) -> tuple[dict[str, list[Any]], dict[str, float]]:
    """A search space of lists and a score for each of its points: minus a weighted squared distance
    from a random peak along each ordered axis (positions scaled to [0, 1]), a random offset per
    categorical choice, plus Gaussian noise (sd 0.02)."""
    space: dict[str, list[Any]] = {f"s{i}": [float(v) for v in np.round(np.geomspace(1, 1000, n), 3)]
                                   for i, n in enumerate(shape)}
    if categorical:
        space["s0"] = [f"c{j}" for j in range(shape[0])]
    peaks, widths = rng.uniform(0, 1, len(shape)), rng.uniform(0.5, 3, len(shape))
    offsets = rng.normal(0, 0.3, shape[0])
    scores = {}
    for point in grid_combinations(space):
        value = 0.0
        for i, (setting, values) in enumerate(space.items()):
            j = values.index(point[setting])
            value -= offsets[j] if categorical and i == 0 else widths[i] * (j / (len(values) - 1) - peaks[i]) ** 2
        scores[json.dumps(point, sort_keys=True)] = value + rng.normal(0, 0.02)
    return space, scores


def measure_synthetic(surfaces: int = 6, seeds: int = 5) -> dict[str, Any]:
    commit = os.environ.get("ENCORE_MEASURED_COMMIT") or git_commit()
    rng = np.random.default_rng(0)
    shapes = []
    for shape, categorical in SHAPES:
        drawn = [surface(rng, shape, categorical) for _ in range(surfaces)]
        size = int(np.prod(shape))
        entry: dict[str, Any] = {"shape": "×".join(map(str, shape)) + (" (first categorical)" if categorical else ""),
                                 "grid_size": size, "half_budget": size // 2}
        for sampler in SAMPLERS:
            firsts = []
            for space, scores in drawn:
                best = max(scores.values())
                for seed in range(seeds):
                    trials = ScoredTrials(lambda point, scores=scores: scores[json.dumps(point, sort_keys=True)],
                                          "synthetic")
                    config = SimpleNamespace(tuning=TuningConfig(search="optuna", trials=size, sampler=sampler),
                                             experiment=SimpleNamespace(seed=seed))
                    optuna_search(trials, space, config)  # type: ignore[arg-type]
                    firsts.append(first_reaching([row["score"] for row in trials.rows if row["state"] == "complete"],
                                                 best))
            entry[sampler] = {"first_reaching_best": firsts,
                              "within_half": sum(f is not None and f <= size // 2 for f in firsts),
                              "runs": len(firsts)}
        shapes.append(entry)
        print(entry["shape"], {s: f"{entry[s]['within_half']}/{entry[s]['runs']}" for s in SAMPLERS}, flush=True)
    return {"experiment": "synthetic", "commit": commit, "surfaces_per_shape": surfaces, "seeds": seeds,
            "samplers": SAMPLERS, "shapes": shapes,
            "total": {s: {"within_half": sum(e[s]["within_half"] for e in shapes),
                          "runs": sum(e[s]["runs"] for e in shapes)} for s in SAMPLERS}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.optuna_vs_grid", description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "experiments" / "lastfm2k.yaml")
    parser.add_argument("--grids", type=Path, default=REPO_ROOT / "experiments" / "lastfm2k_time.yaml")
    parser.add_argument("--seeds", type=int, default=10, help="Optuna sampler seeds 0 .. N-1")
    parser.add_argument("--workdir", type=Path, default=None, help="outputs and MLflow store (default: a temp dir)")
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default="auto", help="tuning.sampler")
    parser.add_argument("--synthetic", action="store_true", help="the synthetic grids, both samplers")
    args = parser.parse_args(argv)
    results = Path(os.environ.get("ENCORE_RESULTS_DIR", RESULTS))
    if args.synthetic:
        report = measure_synthetic()
        (results / "optuna_vs_grid-synthetic.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["total"]))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="encore-optuna-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = measure(args.experiment, args.grids, workdir, args.seeds, args.sampler)
    suffix = "" if args.sampler == "auto" else f"-{args.sampler}"
    path = results / f"optuna_vs_grid-{report['experiment']}{suffix}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({name: {k: v for k, v in entry.items() if k not in ("grid", "optuna")}
                      for name, entry in report["instances"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
