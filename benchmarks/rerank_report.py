"""Record a finished run's re-ranking results: every fold's trade-off grid and choice, the test
figures of the ranker and the re-ranked lists, pooled over folds (docs/reranking.md, docs/reranking-runs.md).

    python -m benchmarks.rerank_report --experiment experiments/synthetic_time.yaml
    # after: scripts/pipeline/run.sh -e experiments/synthetic_time.yaml --set components.rerank.enabled=true

The run is found in MLflow (the newest pipeline run with a ``rerank`` run; its folds' output
folders are the runs' ``encore.output_dir`` tags, its commit the ``encore.git_commit`` tag).
Writes ``benchmarks/results/rerank-<experiment>.json`` (with the commit measured) and the curve
``docs/img/rerank-<experiment>.png`` drawn from that file; then ``python -m benchmarks.docs_figures``
writes the docs' blocks from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.docs_figures import ROOT, TARGET_COVERAGE_RATIO, TARGET_MAX_LOSS, machine, shown, write_result
from encore.components.rerank import GRID_KEYS as SETTING_KEYS

IMAGES = ROOT / "docs" / "img"
AT = ("ndcg@10", "catalog_coverage@10", "diversity@10", "novelty@10", "new_item_exposure@10")
KEPT = ("setting", *SETTING_KEYS, "within_loss", "chosen", "rule_score", "cold_items.ndcg@10")
"""The ``tradeoff.csv`` columns a result file keeps (with the metrics ``AT``)."""


def fold_outputs(tracking_uri: str, experiment_name: str,
                 pipeline_run: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """The rerank and evaluate output folders of every finished fold of the newest pipeline run
    that has a rerank run, or of ``pipeline_run`` (a top-level run id; oldest fold first, from the
    runs' ``encore.output_dir`` tags), and the commit that run measured (its ``encore.git_commit`` tag)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(experiment_names=[experiment_name], order_by=["start_time DESC"])
    reranks = runs[runs["tags.encore.component"] == "rerank"]
    if reranks.empty:
        raise SystemExit(f"error: no rerank run in MLflow experiment {experiment_name} at {tracking_uri}")
    parent_of = dict(zip(runs["run_id"], runs["tags.mlflow.parentRunId"], strict=True))

    def top(run_id: str) -> str:
        while isinstance(parent_of.get(run_id), str):
            run_id = parent_of[run_id]
        return run_id

    pipeline = top(reranks["run_id"].iloc[0]) if pipeline_run is None else pipeline_run
    if pipeline not in {top(run_id) for run_id in reranks["run_id"]}:
        raise SystemExit(f"error: --pipeline-run {pipeline}: no rerank run under it in {experiment_name}")
    mine = runs[[top(r) == pipeline for r in runs["run_id"]]]
    folds = mine[mine["tags.encore.fold"].notna()] if "tags.encore.fold" in mine else mine.iloc[:0]
    groups = ([(int(str(row["tags.encore.fold"]).split("/")[0]), row["run_id"]) for _, row in folds.iterrows()]
              or [(1, pipeline)])
    found = []
    for fold, group in sorted(groups):
        children = mine[mine["tags.mlflow.parentRunId"] == group].set_index("tags.encore.component")
        if not {"prepare", "ranker", "rerank", "evaluate"} <= set(children.index):  # a fold the run did not finish
            continue
        found.append({"fold": fold} | {name: Path(children.loc[name, "tags.encore.output_dir"])
                                       for name in ("prepare", "ranker", "rerank", "evaluate")}
                     | {"generators": {name: Path(children.loc[name, "tags.encore.output_dir"])
                                       for name in children.index if isinstance(name, str)
                                       and name not in ("prepare", "ranker", "rerank", "evaluate")}})
    commit = str(mine[mine["run_id"] == pipeline]["tags.encore.git_commit"].iloc[0])
    return found, commit


def record(experiment: Path, overrides: list[str], note: str = "", shown_as: str | None = None,
           suffix: str = "", pipeline_run: str | None = None) -> Path:
    from encore.config.experiment import load_config
    from encore.evaluation import fold_pooling, metrics
    from encore.evaluation.segments import POOLED_SEGMENTS
    from encore.outputs import EvaluateOutput, RerankOutput
    from encore.tracking.runs import experiment_name, tracking_uri

    config = load_config(experiment, ["components.rerank.enabled=true", *overrides])
    primary = config.evaluation.primary_metric
    outputs, commit = fold_outputs(tracking_uri(config), experiment_name(config), pipeline_run)
    folds: list[dict[str, Any]] = []
    per_user = {}
    for paths in outputs:
        fold = paths["fold"]
        rerank, evaluate = RerankOutput(paths["rerank"]), EvaluateOutput(paths["evaluate"])
        segments = pd.read_csv(evaluate.path / evaluate.SEGMENTS_CSV)
        test = {}
        for segment, rows in segments.groupby("segment"):
            generators = rows[~rows["model"].isin(["ranker", "rerank"])]
            best = generators.loc[generators[primary].idxmax()]
            test[segment] = {"n_users": int(rows["n_users"].iloc[0]), "best_generator": str(best["model"]),
                             "best": {m: float(best[m]) for m in AT if m in best},
                             "generators": dict(zip(generators["model"], generators[primary].astype(float),
                                                    strict=True))}
            test[segment] |= {model: {m: float(row[m]) for m in AT if m in row}
                              for model, row in rows.set_index("model").loc[["ranker", "rerank"]].iterrows()}
        grid = rerank.grid()
        folds.append({"fold": fold, "chosen": rerank.chosen(), "test": test,
                      "pool_coverage": pool_coverage(paths["prepare"], paths["ranker"]),
                      "cold_placement": cold_placement(paths["prepare"], paths["ranker"],
                                                       paths["generators"].get(config.components.rerank.content_from
                                                                               or "")),
                      "vs_ranker": json.loads((rerank.path / rerank.SIGNIFICANCE).read_text())["vs_ranker"],
                      "test_grid": grid_on_test(config, paths),
                      "grid": [{k: (float(v) if isinstance(v, float | int) and not isinstance(v, bool) else v)
                                for k, v in row.items() if k in (*KEPT, *AT) and not pd.isna(v)}
                               for row in grid.to_dict("records")]})
        per_user[fold] = evaluate.per_user()
    pool = fold_pooling.pool_per_user(per_user)
    pooled = {}
    for segment in POOLED_SEGMENTS:
        part = fold_pooling.segment_rows(pool, segment)
        if part["user_id"].nunique() < 2:
            continue
        pooled[segment] = metrics.paired_comparison(
            part["ranker"].to_numpy(), part["rerank"].to_numpy(), metric=primary,
            n_resamples=config.evaluation.n_bootstrap, confidence=config.evaluation.confidence,
            random_state=config.experiment.seed, groups=part["user_id"].to_numpy()).to_dict()
    result = {"experiment": shown_as or shown(experiment.resolve()),
              "overrides": overrides, "note": note, "commit": commit, "machine": machine(),
              "primary_metric": primary,
              "rule": {"objective": folds[-1]["chosen"]["objective"], "max_loss": folds[-1]["chosen"]["max_loss"],
                       "match_content_on_cold_items": folds[-1]["chosen"].get("match_content_on_cold_items", False)},
              "folds": folds, "pooled_rerank_vs_ranker": pooled, "targets": targets(folds, pooled, primary)}
    name = f"rerank-{config.experiment.name}{suffix}"
    path = write_result(name, result)
    plot(result, IMAGES / f"{name}.png")
    return path


def fold_inputs(paths: dict[str, Any]) -> dict[str, Path]:
    """A fold's component inputs, as the rerank component gets them, from :func:`fold_outputs`' paths."""
    return {"prepare": paths["prepare"], "ranker": paths["ranker"], **paths["generators"]}


def grid_on_test(config: Any, paths: dict[str, Any]) -> list[dict[str, Any]]:
    """A diagnosis, never a choice: every grid setting's ndcg@10 and catalogue coverage@10 on
    **test** (the final lists as the component makes them at that setting; first row the ranker's),
    to tell a miss of the rule's estimate from a miss of the steps themselves. The component never
    computes this; only this report does, after the run."""
    from encore.components import rerank as component
    from encore.data.prepared import PreparedData
    from encore.evaluation.evaluator import Evaluator
    from encore.reranking.steps import settings_grid

    prepared = PreparedData(paths["prepare"])
    blocked, rejected = component.exclusions(config, prepared)
    lists, side, blocked = component.final_stage(config, fold_inputs(paths), prepared, blocked)
    evaluator = Evaluator(prepared, "train", (10,))
    rows = np.searchsorted(lists.users, evaluator.users)
    shown = ("ndcg@10", "catalog_coverage@10")

    def scores(items: np.ndarray) -> dict[str, float]:
        found = evaluator.evaluate(items[rows])
        return {key: float(found[key]) for key in shown}

    settings = settings_grid(config.components.rerank, config.components.ranker.top_k)
    found = {}
    for n, items in component.grid_reranked(lists, side, settings, blocked=blocked, rejected=rejected,
                                            n_items=prepared.n_items):
        named = {key: getattr(settings[n], key) for key in component.GRID_KEYS if getattr(settings[n], key) is not None}
        found[n] = {"setting": "rerank"} | named | scores(items)
    return [{"setting": "ranker"} | scores(lists.items), *(found[n] for n in range(len(settings)))]


def pool_coverage(prepare: Path, ranker: Path) -> float:
    """The most catalogue coverage@10 any re-ranking can reach on test: the share of the training
    catalogue in the union of the test users' ranker candidate lists (its ``top_k``), which is
    all that rerank reorders (the content candidates are new items, outside the catalogue that
    coverage counts)."""
    from encore.data.prepared import PreparedData
    from encore.evaluation.metrics.beyond_accuracy import catalog_coverage
    from encore.outputs import RankerOutput

    prepared = PreparedData(prepare)
    ranked = RankerOutput(ranker).recommendations()
    users = prepared.eval_users("train")
    ranked = ranked[np.isin(ranked["user"].to_numpy(), users)]
    train_items = np.flatnonzero(prepared.item_listeners("train") > 0)
    return catalog_coverage(ranked["item"].to_numpy()[:, None], 1, train_items)


def cold_placement(prepare: Path, ranker: Path, content: Path | None, k: int = 10) -> dict[str, float] | None:
    """Where the content generator's new items stand on test (why the final lists hold fewer): per
    test user, the items without training listeners in that generator's top ``k``, the share of them
    already in the ranker's candidate list (the generators' merged pool gave them to it), and their
    mean rank there (against the generator's)."""
    if content is None:
        return None
    from encore.data.prepared import PreparedData
    from encore.outputs import GeneratorOutput, RankerOutput

    prepared = PreparedData(prepare)
    users = prepared.eval_users("train")
    cold = prepared.item_listeners("train") == 0
    own = GeneratorOutput(content).candidates("train", max_rank=k, users=users)
    own = own[np.isin(own["user"].to_numpy(), users) & cold[own["item"].to_numpy()]]
    ranked = RankerOutput(ranker).recommendations()
    joined = own.merge(ranked[["user", "item", "rank"]], on=["user", "item"], how="left", suffixes=("", "_ranker"))
    had = joined["rank_ranker"].notna()
    return {"per_user_in_content_top": len(own) / len(users), "share_in_ranker_list": float(had.mean()),
            "mean_content_rank": float(joined["rank"].mean()),
            "mean_ranker_rank": float(joined.loc[had, "rank_ranker"].mean()) if had.any() else float("nan"),
            "k": k}


def targets(folds: list[dict[str, Any]], pooled: dict[str, Any], primary: str) -> dict[str, Any]:
    """The issue's targets over the folds: catalogue coverage@10 (the folds' mean; a list-level
    metric has no per-user rows to pool) of the re-ranked lists against the ranker's, with the
    pooled paired change of ``primary`` and its CI; cold-item ``primary`` (the test pairs on items
    without training listeners) of the re-ranked lists against the best generator's, each the
    (fold, user)-weighted mean over the folds (= the pooled mean)."""
    def mean(segment: str, model: str, metric: str) -> float:
        rows = [(f["test"][segment]["n_users"], f["test"][segment][model][metric])
                for f in folds if segment in f["test"]]
        return sum(n * v for n, v in rows) / sum(n for n, _ in rows) if rows else float("nan")

    coverage = {m: sum(f["test"]["all"][m]["catalog_coverage@10"] for f in folds) / len(folds)
                for m in ("ranker", "rerank")}
    loss = pooled.get("all", {})
    found: dict[str, Any] = {
        "coverage@10": coverage | {"ratio": coverage["rerank"] / coverage["ranker"]},
        f"{primary}_change": {k: loss.get(k) for k in ("rel_uplift", "rel_ci_low", "rel_ci_high")},
    }
    found["coverage@10"]["pool_bound"] = sum(f["pool_coverage"] for f in folds) / len(folds)
    within = bool(loss) and loss["rel_uplift"] >= -TARGET_MAX_LOSS
    found["coverage_met"] = bool(found["coverage@10"]["ratio"] >= TARGET_COVERAGE_RATIO and within)
    if all("cold_items" in f["test"] for f in folds):
        # Sorted: ties (a hit or two on cold items) go to the same generator in every run.
        generators = sorted(set.intersection(*(set(f["test"]["cold_items"]["generators"]) for f in folds)))
        cold: dict[str, float] = {}
        weights = [f["test"]["cold_items"]["n_users"] for f in folds]
        for g in generators:
            cold[g] = sum(w * f["test"]["cold_items"]["generators"][g] for w, f in zip(weights, folds, strict=True)) \
                / sum(weights)
        best = max(cold, key=cold.get)
        found[f"cold_items.{primary}"] = {"rerank": mean("cold_items", "rerank", primary),
                                          "ranker": mean("cold_items", "ranker", primary),
                                          "best_generator": best, "best": cold[best]}
        found["cold_items_met"] = bool(found[f"cold_items.{primary}"]["rerank"] >= cold[best] and within)
    return found


def plot(result: dict[str, Any], path: Path) -> None:
    """The trade-off of every fold on its ranker-target part: catalogue coverage@10 (the target's
    metric) against NDCG@10, one colour per coverage fill (per exposure cap without a fill grid, per
    popularity penalty without either)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    objective, primary = "catalog_coverage@10", result["primary_metric"]
    folds = result["folds"]
    figure = Figure(figsize=(4.2 * len(folds), 3.8))
    FigureCanvasAgg(figure)
    for n, fold in enumerate(folds, start=1):
        axes = figure.add_subplot(1, len(folds), n)
        grid = pd.DataFrame(fold["grid"])
        ranker, rows = grid.iloc[0], grid[grid["setting"] == "rerank"]
        # Colour by the first of these the grid varies.
        by = next(((key, label) for key, label in (("coverage_slots", "fill"), ("exposure_cap", "exposure cap"))
                   if rows.get(key, pd.Series([0])).nunique() > 1), ("popularity_penalty", "pop. penalty"))
        for value, part in rows.groupby(by[0]):
            axes.plot(part[objective], part[primary], "o", alpha=0.75, label=f"{by[1]} {value:g}")
        content = grid[grid["setting"] == "content"]
        if len(content):
            axes.plot(content[objective], content[primary], "g^", label="content generator")
        axes.plot(ranker[objective], ranker[primary], "k*", markersize=12, label="ranker")
        chosen = rows[rows["chosen"]]
        axes.plot(chosen[objective], chosen[primary], "rs", markersize=12, fillstyle="none", label="chosen")
        axes.axhline((1 - result["rule"]["max_loss"]) * ranker[primary], color="grey", linestyle="--", linewidth=1)
        axes.set_title(f"fold {fold['fold']}", fontsize=9)
        axes.set_xlabel(f"{objective} (target part)", fontsize=8)
        axes.set_ylabel(primary, fontsize=8)
        axes.tick_params(labelsize=7)
        if n == 1:
            axes.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--experiment", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--note", default="", help="how the run differs from the experiment file (shown in the docs)")
    parser.add_argument("--shown-as", help="the experiment as the docs name it (a derived file outside the repo)")
    parser.add_argument("--suffix", default="", help="appended to the result's name (a variant of the same experiment)")
    parser.add_argument("--pipeline-run",
                        help="the top-level MLflow run id to report (default: the newest with a rerank run)")
    args = parser.parse_args(argv)
    record(args.experiment, args.overrides, args.note, args.shown_as, args.suffix, args.pipeline_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
