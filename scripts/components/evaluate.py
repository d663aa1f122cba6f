"""evaluate: every generator instance (feature-only ones too) and the ranker on the same test users.

Scores each model's lists with the same :class:`~scripts.core.evaluation.Evaluator`,
writes the comparison table (every metric at every k), a metric-vs-k plot, and paired
comparisons (paired t-test + bootstrap confidence interval) of the ranker against every
generator on the primary metric. The headline numbers go to the pipeline's parent run:
``<model>.<metric>_at_<k>``, and ``<primary>`` / ``uplift_vs_best_generator`` with its
interval, which promotion and run comparison read.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd

from scripts.core import metrics
from scripts.core.config import EncoreConfig
from scripts.core.evaluation import Evaluator, lists_from_frame
from scripts.core.io import write_json, write_parquet
from scripts.core.outputs import EvaluateOutput, GeneratorOutput, RankerOutput
from scripts.core.prepared import PreparedData
from scripts.pipeline.component import Context, Result
from scripts.pipeline.runner import component_main, enabled, generator_names

NAME = "evaluate"
log = logging.getLogger(__name__)


def DEPENDS_ON(config: EncoreConfig) -> list[str]:
    return ["prepare", *(g for g in generator_names(config) if enabled(config, g)), "ranker"]


def model_lists(config: EncoreConfig, ctx: Context, users: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Each model's top-k lists for ``users``: every enabled generator instance (proposing or not,
    in config order), then the ranker."""
    lists = {name: lists_from_frame(GeneratorOutput(ctx.inputs[name]).candidates("train"), users, k)
             for name in generator_names(config) if name in ctx.inputs}
    if "ranker" in ctx.inputs:
        lists["ranker"] = lists_from_frame(RankerOutput(ctx.inputs["ranker"]).recommendations(), users, k)
    return lists


def markdown_table(table: pd.DataFrame) -> str:
    """A README-ready Markdown table, values to four decimals."""
    header = ["model", *table.columns]
    rows = [[str(name), *(f"{v:.4f}" for v in values)]
            for name, values in zip(table.index, table.to_numpy(), strict=True)]
    lines = ["| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header), *rows]]
    return "\n".join(lines) + "\n"


def compare(values: pd.DataFrame, primary: str, *, challenger: str, n_resamples: int, confidence: float,
            seed: int) -> dict[str, metrics.PairedComparison]:
    """Paired comparisons of ``challenger`` against every other model (columns of ``values``)."""
    return {
        name: metrics.paired_comparison(values[name].to_numpy(), values[challenger].to_numpy(), metric=primary,
                                        n_resamples=n_resamples, confidence=confidence, random_state=seed)
        for name in values.columns if name not in (challenger, "user_id")
    }


def run(config: EncoreConfig, ctx: Context) -> Result:
    prepared = PreparedData(ctx.inputs["prepare"])
    ks = tuple(config.evaluation.ks)
    evaluator = Evaluator(prepared, "train", ks)
    lists = model_lists(config, ctx, evaluator.users, max(ks))
    results = {name: evaluator.evaluate(model) for name, model in lists.items()}
    table = metrics.metrics_table(results)
    out = EvaluateOutput(ctx.output)
    table.to_csv(out.path / out.COMPARISON)
    at10 = table[[c for c in table.columns if c.endswith("@10")]].sort_values(config.evaluation.primary_metric,
                                                                             ascending=False)
    (out.path / out.COMPARISON_MD).write_text(markdown_table(at10))
    metrics.plot_metric_vs_k(results, config.evaluation.primary_metric.partition("@")[0],
                             out.path / out.PLOT)

    primary = config.evaluation.primary_metric
    # Per-user values of the primary metric by raw user id: paired tests here, and at promotion.
    per_user = pd.DataFrame({"user_id": prepared.users["raw_id"].to_numpy()[evaluator.users]}
                            | {name: evaluator.per_user(model, primary) for name, model in lists.items()})
    write_parquet(per_user, out.path / out.PER_USER)
    # The ranker is measured against the best single model: every instance, feature-only ones too.
    baselines = [name for name in lists if name != "ranker"]
    best = max(baselines, key=lambda name: results[name][primary])
    headline_model = "ranker" if "ranker" in lists else best
    parent = {f"{name}.{key}": value for name, scores in results.items() for key, value in scores.items()}
    parent[primary] = results[headline_model][primary]
    summary: dict = {"primary_metric": primary, "best_generator": best, "headline_model": headline_model,
                     "n_test_users": len(evaluator.users)}
    if "ranker" in lists:
        comparisons = compare(per_user, primary, challenger="ranker", n_resamples=config.evaluation.n_bootstrap,
                              confidence=config.evaluation.confidence, seed=config.experiment.seed)
        summary["comparisons"] = {name: c.to_dict() for name, c in comparisons.items()}
        vs_best = comparisons[best]
        summary["vs_best_generator"] = vs_best.to_dict()
        parent |= {"uplift_vs_best_generator": vs_best.rel_uplift,
                   "uplift_vs_best_generator_ci_low": vs_best.rel_ci_low,
                   "uplift_vs_best_generator_ci_high": vs_best.rel_ci_high,
                   "uplift_vs_best_generator_p_value": vs_best.p_value}
        log.info("ranker %s %.4f vs best generator %s %.4f: %+.1f%% (%.0f%% CI %+.1f%% .. %+.1f%%), p=%.2g",
                 primary, vs_best.mean_b, best, vs_best.mean_a, 100 * vs_best.rel_uplift,
                 100 * vs_best.confidence, 100 * vs_best.rel_ci_low, 100 * vs_best.rel_ci_high, vs_best.p_value)
    write_json(out.path / out.SIGNIFICANCE, summary)
    log.info("test users %d; %s at k=10:\n%s", len(evaluator.users), "comparison", at10.to_string(
        float_format=lambda v: f"{v:.4f}"))
    return Result(
        metrics=parent,
        artifacts=[out.COMPARISON, out.COMPARISON_MD, out.SIGNIFICANCE, out.PLOT, out.PER_USER],
        tags={"encore.best_generator": best, "encore.headline_model": headline_model},
        parent_metrics=parent,
    )


if __name__ == "__main__":
    sys.exit(component_main(NAME, description=__doc__ or ""))
