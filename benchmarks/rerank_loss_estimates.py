"""How well the choice part's NDCG@10 loss predicts test's, against an estimate from the ranker's
own hit probabilities: a diagnosis of a recorded re-ranking run, never a choice.

    python -m benchmarks.rerank_loss_estimates --experiment /tmp/lastfm2k_time.yaml \
        --result benchmarks/results/rerank-lastfm2k_time-fill-first-top100-xfit-limit.json

The rule (``encore/reranking/rule.py``) bounds each setting's loss by what it **measures** on the
choice part: the held-out target users' hits. With a few hundred users a fold, a handful of hits
decide that. The ranker's probabilities give a second estimate that needs no hits: the
**expected** DCG@10 of every user's list (the probabilities of its first ten items, discounted
by place; 0 for an item the ranker did not score), summed over users, re-ranked against
unre-ranked. It is biased where the probabilities are (the ranker trusts its own order), so a
third estimate **scales** it to the measured losses: one factor per fold, fitted over the whole
grid (least squares through 0), a grid's worth of hits instead of one setting's.

For each fold of the run (its outputs, found as ``benchmarks.rerank_report`` finds them) this
re-ranks every user's base-stage lists at every grid setting, as the component does, and
computes the expected loss. Against each setting's test loss (the result file's ``test_grid``,
which the report computed) it gives each estimate's correlation, and the rule's pick with each
estimate in place of the measured one (the objective stays the measured coverage): that pick's
coverage ratio and loss on test. Results go to
``benchmarks/results/rerank-loss-estimates<suffix>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.docs_figures import write_result
from benchmarks.rerank_report import fold_inputs, fold_outputs
from encore.config.experiment import load_config
from encore.lineage import git_commit

K = 10
DISCOUNT = 1.0 / np.log2(np.arange(2, K + 2))


def expected_losses(config: Any, paths: dict[str, Any]) -> list[float]:
    """Per grid setting (the grid's order): the relative change of the summed expected DCG@10 of
    every user's base-stage lists, re-ranked against the ranker's (the component's lists and steps)."""
    from encore.components import rerank as component
    from encore.data.prepared import PreparedData
    from encore.reranking.steps import settings_grid

    prepared = PreparedData(paths["prepare"])
    blocked, rejected = component.exclusions(config, prepared)
    with tempfile.TemporaryDirectory() as scratch:
        lists, side, blocked = component.target_stage(config, fold_inputs(paths), prepared, Path(scratch), blocked)
    chance = lists.chance(slice(None))
    # Each (user, item) the ranker scored, sorted by key, with its probability.
    keys = lists.users[:, None] * prepared.n_items + lists.items
    scored = lists.items >= 0
    order = np.argsort(keys[scored], kind="stable")
    known, probability = keys[scored][order], np.nan_to_num(chance[scored][order], nan=0.0)

    def expected_dcg(items: np.ndarray) -> float:
        top = items[:, :K]
        wanted = lists.users[:, None] * prepared.n_items + top
        at = np.minimum(np.searchsorted(known, wanted), len(known) - 1)
        hit = np.where((top >= 0) & (known[at] == wanted), probability[at], 0.0)
        return float((hit @ DISCOUNT[: hit.shape[1]]).sum())

    before = expected_dcg(lists.items)
    grid = settings_grid(config.components.rerank, config.components.ranker.top_k)
    found: dict[int, float] = {}
    for n, items in component.grid_reranked(lists, side, grid, blocked=blocked, rejected=rejected,
                                            n_items=prepared.n_items):
        found[n] = expected_dcg(items) / before - 1.0
    return [found[n] for n in range(len(grid))]


def picks(folds: list[dict[str, Any]], losses: dict[str, list[np.ndarray]], max_loss: float) -> dict[str, Any]:
    """Per estimate: the rule's pick in each fold (:func:`encore.reranking.rule.choose` over the
    grid with the estimate as its accuracy: the most measured coverage among the settings whose
    estimated loss is within ``max_loss``; none: the least loss), its coverage ratio and loss on
    test, and the folds pooled (coverage: the folds' mean, as the report's targets; loss: the
    user-weighted means)."""
    import pandas as pd

    from encore.reranking.rule import choose

    found = {}
    for name, per_fold in losses.items():
        rows, covered, ranker_covered, gained, base = [], [], [], 0.0, 0.0
        for fold, estimate in zip(folds, per_fold, strict=True):
            table = pd.DataFrame({"setting": ["ranker", *["rerank"] * len(estimate)],
                                  "accuracy": [1.0, *(1.0 + estimate)],
                                  "catalog_coverage@10": [row["catalog_coverage@10"] for row in fold["grid"]]})
            pick = choose(table, primary="accuracy", objectives=["catalog_coverage@10"], max_loss=max_loss).chosen - 1
            test, ranker = fold["test_grid"][pick + 1], fold["test_grid"][0]
            users = fold["test"]["all"]["n_users"]
            covered.append(test["catalog_coverage@10"])
            ranker_covered.append(ranker["catalog_coverage@10"])
            gained += users * test["ndcg@10"]
            base += users * ranker["ndcg@10"]
            rows.append({"fold": fold["fold"], "setting": pick, "estimated_loss": float(estimate[pick]),
                         "test_coverage_ratio": test["catalog_coverage@10"] / ranker["catalog_coverage@10"],
                         "test_change": test["ndcg@10"] / ranker["ndcg@10"] - 1.0})
        found[name] = {"folds": rows, "coverage_ratio": float(np.mean(covered) / np.mean(ranker_covered)),
                       "change": gained / base - 1.0}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rerank_loss_estimates",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", type=Path, required=True, help="the experiment file the run was made with")
    parser.add_argument("--result", type=Path, required=True, help="the run's result file (benchmarks.rerank_report)")
    parser.add_argument("--suffix", default="", help="results file name suffix")
    args = parser.parse_args(argv)
    from encore.tracking.runs import experiment_name, tracking_uri

    recorded = json.loads(args.result.read_text())
    config = load_config(args.experiment, ["components.rerank.enabled=true", *recorded["overrides"]])
    if config.components.ranker.loss != "Logloss":
        raise SystemExit("error: components.ranker.loss: the expected loss needs the ranker's probabilities (Logloss)")
    outputs, commit = fold_outputs(tracking_uri(config), experiment_name(config))
    if commit != recorded["commit"] or [p["fold"] for p in outputs] != [f["fold"] for f in recorded["folds"]]:
        raise SystemExit(f"error: {args.result}: the newest run with a rerank in MLflow (commit {commit}) is not "
                         f"the recorded one (commit {recorded['commit']}); re-run its commands first")
    folds = recorded["folds"]
    measured, expected, tests = [], [], []
    for paths, fold in zip(outputs, folds, strict=True):
        ranker = fold["grid"][0]["ndcg@10"]
        measured.append(np.array([row["ndcg@10"] / ranker - 1.0 for row in fold["grid"][1:]]))
        expected.append(np.array(expected_losses(config, paths)))
        tests.append(np.array([row["ndcg@10"] / fold["test_grid"][0]["ndcg@10"] - 1.0
                               for row in fold["test_grid"][1:]]))
        print(f"fold {fold['fold']}: expected losses of {len(expected[-1])} settings", file=sys.stderr, flush=True)
    factors = [float(m @ e / (e @ e)) for m, e in zip(measured, expected, strict=True)]
    losses = {"measured": measured, "expected": expected,
              "expected, scaled": [f * e for f, e in zip(factors, expected, strict=True)]}
    report = {"result": args.result.name, "run_commit": recorded["commit"], "commit": git_commit(),
              "max_loss": recorded["rule"]["max_loss"], "scale_factors": factors,
              "correlation_with_test": {name: [float(np.corrcoef(estimate, test)[0, 1])
                                               for estimate, test in zip(per_fold, tests, strict=True)]
                                        for name, per_fold in losses.items()},
              "mean_loss": {name: [float(estimate.mean()) for estimate in per_fold]
                            for name, per_fold in {**losses, "test": tests}.items()},
              "picks": picks(folds, losses, recorded["rule"]["max_loss"])}
    write_result(f"rerank-loss-estimates{args.suffix}", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
