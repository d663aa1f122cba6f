"""The neural kinds (sasrec, twotower) against tuned EASE: NDCG@10 on test, training time, peak memory.

    python -m benchmarks.neural [--experiment experiments/lastfm2k_time.yaml] [--workdir DIR]
                                [--name neural-lastfm2k_time]

Runs the experiment's last split (``split.folds`` dropped: one fold, the experiment's own cut
points) with ``prepare``, ``tune`` (EASE's grid only, on the experiment's tuning segment), ``ease``
and a ``sasrec`` and a ``twotower`` instance at their defaults (one torch thread, or ``--torch-threads``;
each stops early on the ranker-target part, then refits on base + target for its best epoch
count). Each instance's train lists are scored on test, over all test users and over warm ones,
with the paired bootstrap CI of the difference against EASE; training seconds (base + train fits),
the whole component's wall and CPU seconds and its peak RSS come from the run (wall time: the
1-minute load average before and after is recorded).
Results go to ``benchmarks/results/<name>.json`` and ``.md``.

``--pooled`` instead runs the experiment's whole pipeline over all its folds twice in one work
folder: as shipped (the ranker of today), then with ``sasrec`` and ``twotower`` added at their
defaults (one torch thread) as generators whose candidates and scores the ranker uses. Everything
the two runs share (prepare, tune, the other generators) is computed once (same fingerprints).
It reports, pooled over the folds' (fold, user) rows with the paired cluster bootstrap over users,
the ranker with the neural kinds against the ranker without them, and each neural kind against
tuned EASE, over all and warm test users (``benchmarks/results/<name>.json``, default
``neural-ranker-<experiment>``).

``--pooled --tune-neural N`` searches the two neural instances' settings per fold instead, with
Optuna on the fold's ranker-target part (``N`` trials each over :data:`NEURAL_SPACE`, pruned on
their per-epoch scores; ``tuning.searches``), while the experiment's own grids stay grids, so the
other generators get the same settings as in the run without them (default name
``neural-ranker-<experiment>-tuned``).

``--timing`` measures training cost: for each experiment given (default the 1M-interaction
synthetic one and lastfm2k_time), ``prepare`` runs once, then each kind is fitted on the ``train``
stage (base + target: the largest fit the pipeline makes) at its defaults with one torch thread
and no early stopping, for ``--epochs`` epochs, in a fresh process that reports its own peak RSS
(:mod:`benchmarks.peak`). Recorded: seconds per epoch, the fit's wall and CPU seconds and peak RSS, the
1-minute load average before and after, and the projected time of a full fit at the kind's
default ``epochs`` (``benchmarks/results/neural-timing.json``).
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
from encore.outputs import GeneratorOutput, TuneOutput
from encore.pipeline.runner import output_dir, run_pipeline, tuned

RESULTS = REPO_ROOT / "benchmarks" / "results"
INSTANCES = ("ease", "sasrec", "twotower")
METRIC = "ndcg@10"
# One torch thread by default: on shared cores two threads wait for each other (docs/neural.md).
NEURAL = {"sasrec": {"kind": "sasrec", "num_threads": 1}, "twotower": {"kind": "twotower", "num_threads": 1}}


def experiment_file(source: Path, workdir: Path, threads: int = 1) -> Path:
    """The experiment with one fold, EASE's grid only, and the two neural instances added."""
    experiment = yaml.safe_load(source.read_text())
    experiment["split"].pop("folds", None)
    experiment["split"].pop("fold_days", None)
    tuning = experiment.get("tuning", {})
    tuning["grid"] = {"ease": tuning.get("grid", {}).get("ease", {"l2": [50.0, 500.0, 3000.0]})}
    tuning["segments"] = {}
    experiment["tuning"] = tuning
    experiment.setdefault("components", {}).update({name: section | {"num_threads": threads}
                                                     for name, section in NEURAL.items()})
    path = workdir / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


def component_metrics(config: Any, name: str) -> dict[str, float | None]:
    """The component run's peak RSS (MiB) and its wall and CPU seconds (fit, lists and export:
    the whole component), from the MLflow store; ``None`` where not recorded (a reused run)."""
    import mlflow

    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[config.experiment.name], output_format="list",
                              filter_string=f"attributes.run_name = '{name}'")

    def largest(key: str) -> float | None:
        values = [r.data.metrics[key] for r in runs if key in r.data.metrics]
        return max(values) if values else None

    return {"peak_rss_mib": largest("peak_rss_mib"), "component_seconds": largest("time_run_seconds"),
            "component_cpu_seconds": largest("cpu_run_seconds")}


def measure(experiment: Path, workdir: Path, threads: int = 1) -> dict[str, Any]:
    commit = git_commit()  # the code measured, before anything is edited during the run
    load_before = os.getloadavg()[0]
    settings = MachineSettings(_env_file=None, mlflow_tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                               encore_output_dir=workdir / "outputs")  # data: ENCORE_DATA_DIR, as for a run
    config = load_config(experiment_file(experiment, workdir, threads), settings=settings)
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
                     "fit_base_seconds": metrics["fit_base_seconds"],
                     "best_epoch": metrics.get("best_epoch")} | component_metrics(config, name))
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
            "load_average": [load_before, os.getloadavg()[0]], "torch_threads": threads, "cores": os.cpu_count(),
            "rows": rows}


SEGMENTS = ("all", "warm")


# ``--tune-neural N``: the neural instances' spaces, searched by Optuna (N trials each, per fold, on
# the fold's ranker-target part) while the experiment's own grids stay grids (tuning.searches).
# Epoch caps above the defaults: early stopping on the target part ends a fit, pruning a poor trial.
NEURAL_SPACE = {
    "sasrec": {"factors": [32, 64, 128], "n_blocks": [1, 2], "max_len": [20, 50, 100],
               "dropout": {"low": 0.0, "high": 0.5}, "n_negatives": [64, 128, 256],
               "learning_rate": {"low": 0.0003, "high": 0.01, "log": True},
               "weight_decay": [0.0, 0.00001, 0.0001, 0.001]},
    "twotower": {"factors": [32, 64, 128], "temperature": {"low": 0.02, "high": 0.5, "log": True},
                 "id_dropout": {"low": 0.0, "high": 0.8}, "use_tags": [True, False],
                 "learning_rate": {"low": 0.0005, "high": 0.02, "log": True},
                 "weight_decay": [0.0, 0.000001, 0.00001, 0.0001]},
}
TUNED_EPOCHS = {"sasrec": 30, "twotower": 20}


def pooled_experiment_files(source: Path, workdir: Path, tune_trials: int | None = None) -> tuple[Path, Path]:
    """The experiment as shipped, and the same with the two neural instances added (at their
    defaults, or with ``tune_trials``: searched by Optuna over :data:`NEURAL_SPACE`)."""
    experiment = yaml.safe_load(source.read_text())
    without = workdir / "without.yaml"
    without.write_text(yaml.safe_dump(experiment, sort_keys=False))
    experiment.setdefault("components", {}).update(NEURAL)
    if tune_trials:
        for name, epochs in TUNED_EPOCHS.items():
            experiment["components"][name] = experiment["components"][name] | {"epochs": epochs}
        tuning = experiment.setdefault("tuning", {})
        tuning["grid"] = tuning.get("grid", {}) | NEURAL_SPACE
        tuning["searches"] = tuning.get("searches", {}) | {name: "optuna" for name in NEURAL_SPACE}
        tuning["trials"] = tune_trials
    with_neural = workdir / "with.yaml"
    with_neural.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return without, with_neural


def comparison_entry(a: Any, b: Any, groups: Any, seed: int) -> dict[str, Any]:
    result = paired_comparison(a, b, metric=METRIC, random_state=seed, groups=groups).to_dict()
    return {key: result[key] for key in ("mean_a", "mean_b", "diff", "ci_low", "ci_high", "rel_uplift",
                                         "rel_ci_low", "rel_ci_high", "n_users", "n_groups", "p_value")}


def fold_pool(config: Any) -> Any:
    """The per-user table (``fold, user_id, segment`` + one column per model) of the folds of
    ``config`` whose ``evaluate`` output is complete (all of them after a whole run)."""
    import pandas as pd

    from encore.io import completion_problem
    from encore.outputs import EvaluateOutput
    from encore.pipeline.folds import fold_configs
    from encore.pipeline.reuse_keys import fingerprint

    frames = []
    for fold, raw in enumerate(fold_configs(config), start=1):
        if completion_problem(output_dir(raw, "tune"), fingerprint(raw, "tune")) is not None:
            continue
        fold_config = tuned(raw)
        path = output_dir(fold_config, "evaluate")
        if completion_problem(path, fingerprint(fold_config, "evaluate")) is None:
            frames.append(EvaluateOutput(path).per_user().assign(fold=fold))
    return pd.concat(frames, ignore_index=True) if frames else None


def pooled_segments(joined: Any, generators: list[str], seed: int) -> dict[str, Any]:
    """Per segment (all, warm) of the joined per-user table (``fold, user_id, segment``,
    ``ranker_without``, ``ranker`` and one column per model of the run with the neural kinds):
    the ranker with them against without, and each neural kind against EASE and against the
    strongest single generator of today's pipeline (``generators``) on the same rows."""
    segments: dict[str, Any] = {}
    for segment in SEGMENTS:
        part = joined if segment == "all" else joined[joined["segment"] == segment]
        groups = part["user_id"].to_numpy()
        # The bar a neural kind's own list is held to; picked on test, so a stricter bar for the
        # neural kinds, never a setting of anything.
        best = max(generators, key=lambda name: float(part[name].mean()))
        entry = {"n_rows": len(part), "n_users": int(part["user_id"].nunique()), "best_generator": best,
                 "means": {name: float(part[name].mean()) for name in
                           dict.fromkeys(("ranker_without", "ranker", "ease", best, *NEURAL))},
                 "ranker_with_vs_without": comparison_entry(part["ranker_without"].to_numpy(),
                                                            part["ranker"].to_numpy(), groups, seed)}
        for name in NEURAL:
            entry[f"{name}_vs_ease"] = comparison_entry(part["ease"].to_numpy(), part[name].to_numpy(), groups, seed)
            entry[f"{name}_vs_best"] = comparison_entry(part[best].to_numpy(), part[name].to_numpy(), groups, seed)
        entry["per_fold"] = {str(fold): {name: float(rows[name].mean()) for name in
                                         ("ranker_without", "ranker", "ease", *NEURAL)}
                             for fold, rows in part.groupby("fold")}
        segments[segment] = entry
    return segments


def search_summary(trials: Any) -> dict[str, Any]:
    """An instance's tuning trials of one fold (rows of ``trials.csv``): how many completed and were
    pruned, and the best epoch of each complete trial in trial order; empty when it was not tuned."""
    if trials.empty:
        return {}
    complete = trials[trials["state"] == "complete"]
    return {"trials_complete": len(complete), "trials_pruned": int((trials["state"] == "pruned").sum()),
            "complete_best_epochs": [int(epoch) for epoch in complete["best_epoch"]]}


def neural_settings(config: Any) -> str:
    """How the neural instances of the run with them were set, for the report's first line."""
    tuned_names = [name for name in NEURAL if config.tuning.search_of(name) == "optuna" and name in config.tuning.grid]
    if not tuned_names:
        return "defaults, num_threads=1 (not tuned)"
    caps = ", ".join(f"{name} {config.components.generator(name).epochs}" for name in tuned_names)
    return (f"tuned per fold by Optuna on the target part ({config.tuning.trials} trials each, "
            f"`benchmarks.neural.NEURAL_SPACE`; epoch caps {caps}), num_threads=1")


def measure_pooled(experiment: Path, workdir: Path, report_only: bool = False,
                   tune_trials: int | None = None) -> dict[str, Any]:
    """Both pipelines over every fold; the pooled comparisons (module doc). ``report_only``: run
    nothing, compare over the folds both runs have completed so far."""
    import time

    from encore.pipeline.folds import fold_configs

    commit = os.environ.get("ENCORE_MEASURED_COMMIT") or git_commit()
    settings = MachineSettings(_env_file=None, mlflow_tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                               encore_output_dir=workdir / "outputs")
    without_file, with_file = (pooled_experiment_files(experiment, workdir, tune_trials) if not report_only
                               else (workdir / "without.yaml", workdir / "with.yaml"))
    runs: dict[str, Any] = {}
    for label, path in (("without", without_file), ("with", with_file)):
        config = load_config(path, settings=settings)
        load_before, started = os.getloadavg()[0], time.monotonic()
        if not report_only:
            run_pipeline(config, note=f"neural-ranker {label}")
        runs[label] = {"config": config, "seconds": None if report_only else time.monotonic() - started,
                       "load_average": [load_before, os.getloadavg()[0]], "pool": fold_pool(config)}
    seed = runs["with"]["config"].experiment.seed
    keys = ["fold", "user_id", "segment"]
    joined = runs["without"]["pool"][[*keys, "ranker"]].merge(runs["with"]["pool"], on=keys, how="inner",
                                                               suffixes=("_without", ""), validate="one_to_one")
    folds = sorted(int(f) for f in joined["fold"].unique())
    for label in runs:  # the same (fold, user) rows on both sides of every compared fold
        pool = runs[label]["pool"]
        assert len(joined) == int(pool["fold"].isin(folds).sum()), f"the {label} run tested other users"
    generators = [name for name, section in runs["without"]["config"].components.generators.items()
                  if section.enabled and name in joined.columns]
    segments = pooled_segments(joined, generators, seed)
    fits = []
    for fold, raw in enumerate(fold_configs(runs["with"]["config"]), start=1):
        if fold not in folds:
            continue
        config = tuned(raw)
        trials = TuneOutput(output_dir(raw, "tune")).trials()
        for name in NEURAL:
            metrics = GeneratorOutput(output_dir(config, name)).metrics()
            fits.append({"fold": fold, "instance": name, "best_epoch": metrics.get("best_epoch"),
                         "fit_seconds": metrics["fit_base_seconds"] + metrics["fit_train_seconds"]}
                        | search_summary(trials[trials["instance"] == name]))
    return {"experiment": runs["with"]["config"].experiment.name, "commit": commit, "folds": len(folds),
            "folds_compared": folds, "folds_in_experiment": runs["with"]["config"].split.folds, "metric": METRIC,
            "neural_settings": neural_settings(runs["with"]["config"]), "segments": segments, "fits": fits,
            "runs": {label: {"seconds": run["seconds"], "load_average": run["load_average"]}
                     for label, run in runs.items()}}


def fit_once(experiment: Path, workdir: Path, kind: str, epochs: int, out: Path) -> None:
    """The child process of ``--timing``: fit ``kind`` on the ``train`` stage, write its figures to ``out``."""
    import time

    from encore.candidates import fit_recommender
    from encore.pipeline.folds import fold_configs
    from encore.recommenders import KINDS
    from encore.recommenders.neural import import_torch

    settings = MachineSettings(_env_file=None, mlflow_tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                               encore_output_dir=workdir / "outputs")
    config = fold_configs(load_config(experiment, settings=settings))[-1]  # with folds: the experiment's own split
    prepared = PreparedData(output_dir(config, "prepare"))
    view = prepared.stage_view("train")
    model = KINDS[kind](epochs=epochs, num_threads=1, random_state=config.experiment.seed)
    import_torch(kind)  # imported before the clock starts: a process pays it once, not per fit
    started, cpu_started = time.monotonic(), time.process_time()
    fit_recommender(model, prepared, "train", name=kind)
    seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    setup = seconds - model.fit_seconds_  # tensors, network, optimizer: once per fit
    default_epochs = KINDS[kind]().epochs
    setup_cpu = cpu_seconds - model.fit_cpu_seconds_
    out.write_text(json.dumps({"kind": kind, "epochs": epochs, "fit_seconds": seconds, "setup_seconds": setup,
                               "cpu_seconds": cpu_seconds, "setup_cpu_seconds": setup_cpu,
                               "cpu_seconds_per_epoch": model.fit_cpu_seconds_ / epochs,
                               "projected_default_fit_cpu_seconds": setup_cpu + model.fit_cpu_seconds_ / epochs
                               * default_epochs,
                               "seconds_per_epoch": model.fit_seconds_ / epochs, "default_epochs": default_epochs,
                               "projected_default_fit_seconds": setup + model.fit_seconds_ / epochs * default_epochs,
                               "interactions": int(view.user_items.nnz), "users": int(view.user_items.shape[0]),
                               "items": int(view.user_items.shape[1])}))


def measure_timing(experiments: list[Path], workdir: Path, epochs: int) -> dict[str, Any]:
    import subprocess

    from benchmarks.peak import measured_command, read_peak_bytes
    from encore.pipeline.folds import fold_configs

    commit = os.environ.get("ENCORE_MEASURED_COMMIT") or git_commit()
    settings = MachineSettings(_env_file=None, mlflow_tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
                               encore_output_dir=workdir / "outputs")
    rows = []
    for experiment in experiments:
        config = fold_configs(load_config(experiment, settings=settings))[-1]
        run_pipeline(config, ["prepare"])
        for kind in NEURAL:
            stem = workdir / f"{config.experiment.name}-{kind}"
            out, peak = stem.with_suffix(".json"), stem.with_suffix(".peak")
            load_before = os.getloadavg()[0]
            subprocess.run(measured_command("benchmarks.neural", ["--fit-one", kind, "--experiment", str(experiment),
                                                                  "--workdir", str(workdir), "--epochs", str(epochs),
                                                                  "--out", str(out)], peak),
                           check=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
            row = json.loads(out.read_text()) | {"experiment": config.experiment.name,
                                                 "peak_rss_mib": read_peak_bytes(peak) / 2**20,
                                                 "load_average": [load_before, os.getloadavg()[0]]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"commit": commit, "torch_threads": 1, "cores": os.cpu_count(), "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    return "\n".join([f"Commit {report['commit'][:7]}.", "", *neural_table(report)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.neural", description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, default=REPO_ROOT / "experiments" / "lastfm2k_time.yaml")
    parser.add_argument("--workdir", type=Path, default=None, help="outputs and MLflow store (default: a temp dir)")
    parser.add_argument("--name", default=None, help="results file name (default: neural-<experiment name>)")
    parser.add_argument("--pooled", action="store_true",
                        help="the ranker with and without the neural kinds over all folds (module doc)")
    parser.add_argument("--tune-neural", type=int, default=None, metavar="TRIALS",
                        help="--pooled: search the neural instances' settings with Optuna, TRIALS per instance "
                             "and fold (NEURAL_SPACE)")
    parser.add_argument("--report-only", action="store_true",
                        help="--pooled: run nothing, compare the folds both runs completed in --workdir")
    parser.add_argument("--timing", nargs="*", type=Path, default=None,
                        help="training time and peak RSS per kind on these experiments (module doc)")
    parser.add_argument("--epochs", type=int, default=2, help="--timing: epochs per measured fit")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="the neural instances' num_threads (default 1; not --pooled or --timing)")
    parser.add_argument("--fit-one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="encore-neural-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.fit_one:
        fit_once(args.experiment, workdir, args.fit_one, args.epochs, args.out)
        return 0
    if args.timing is not None:
        experiments = args.timing or [REPO_ROOT / "experiments" / "synthetic_1m.yaml",
                                      REPO_ROOT / "experiments" / "lastfm2k_time.yaml"]
        report = measure_timing(experiments, workdir, args.epochs)
        (RESULTS / f"{args.name or 'neural-timing'}.json").write_text(json.dumps(report, indent=2) + "\n")
        return 0
    if args.pooled:
        report = measure_pooled(args.experiment, workdir, report_only=args.report_only,
                                tune_trials=args.tune_neural)
        name = args.name or f"neural-ranker-{report['experiment']}{'-tuned' if args.tune_neural else ''}"
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["segments"], indent=1))
        return 0
    report = measure(args.experiment, workdir, args.torch_threads)
    name = args.name or f"neural-{report['experiment']}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
