"""evaluate: every generator instance (feature-only ones too), the ranker and (when enabled) the
re-ranked lists on the same test users.

Scores each model's lists with the same :class:`~encore.evaluation.evaluator.Evaluator`,
writes the comparison table (every metric at every k), a metric-vs-k plot, and paired
comparisons (paired t-test + bootstrap confidence interval) of the ranker against every
generator on the primary metric. The headline (:mod:`encore.evaluation.headline`: the primary
metric of every model, the ranker and the best generator per segment, the uplift with its
interval and p-value) goes to this run and the pipeline's parent run; every metric at every k
and segment is the ``comparison_segments.csv`` artifact.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from encore.config.component_names import RANKING_STAGES
from encore.config.experiment import EncoreConfig
from encore.data.prepared import PreparedData
from encore.evaluation import metrics
from encore.evaluation.evaluator import SEGMENTS, Evaluator, lists_from_frame
from encore.evaluation.headline import headline_metrics, headline_tags
from encore.io import write_json, write_parquet
from encore.outputs import EvaluateOutput, GeneratorOutput, RankerOutput, RerankOutput
from encore.pipeline.catalogue import enabled, generator_names
from encore.pipeline.component import Context, Result

NAME = "evaluate"
log = logging.getLogger(__name__)


def DEPENDS_ON(config: EncoreConfig) -> list[str]:
    return ["prepare", *(g for g in generator_names(config) if enabled(config, g)), "ranker", "rerank"]


def model_lists(config: EncoreConfig, ctx: Context, users: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Each model's top-k lists for ``users``: every enabled generator instance (proposing or not,
    in config order), then the ranker and the re-ranked lists."""
    lists = {name: lists_from_frame(GeneratorOutput(ctx.inputs[name]).candidates("train"), users, k)
             for name in generator_names(config) if name in ctx.inputs}
    if "ranker" in ctx.inputs:
        lists["ranker"] = lists_from_frame(RankerOutput(ctx.inputs["ranker"]).recommendations(), users, k)
    if "rerank" in ctx.inputs:
        lists["rerank"] = lists_from_frame(RerankOutput(ctx.inputs["rerank"]).recommendations(), users, k)
    return lists


def list_files(config: EncoreConfig, ctx: Context) -> dict[str, Path]:
    """The Parquet file of each model's lists (user, item, rank), in :func:`model_lists`' order:
    what the executors read with ``evaluation.engine: spark``."""
    files = {name: GeneratorOutput(ctx.inputs[name]).path / GeneratorOutput.candidates_file("train")
             for name in generator_names(config) if name in ctx.inputs}
    if "ranker" in ctx.inputs:
        files["ranker"] = RankerOutput(ctx.inputs["ranker"]).path / RankerOutput.RECOMMENDATIONS
    if "rerank" in ctx.inputs:
        files["rerank"] = RerankOutput(ctx.inputs["rerank"]).path / RerankOutput.RECOMMENDATIONS
    return files


class PandasScores:
    """Every metric and the per-user values in this process (``evaluation.engine: pandas``)."""

    def __init__(self, evaluator: Evaluator, lists: dict[str, np.ndarray]) -> None:
        self.evaluator, self.lists = evaluator, lists

    def evaluate(self, name: str, segment: str) -> dict[str, float]:
        return self.evaluator.evaluate(self.lists[name], segment)

    def per_user(self, name: str, metric: str, segment: str = "all") -> np.ndarray:
        return self.evaluator.per_user(self.lists[name], metric, segment)


class SparkEngineScores:
    """The per-user ranking metrics from the executors (``evaluation.engine: spark``,
    :mod:`encore.evaluation.spark_eval`), the whole-list metrics from this process."""

    def __init__(self, evaluator: Evaluator, lists: dict[str, np.ndarray], files: dict[str, Path],
                 primary: str) -> None:
        from encore.evaluation import spark_eval  # pyspark only when asked for

        self.evaluator, self.lists, self.primary = evaluator, lists, primary
        self.spark = spark_eval.spark_ranking_metrics(evaluator, files, primary)
        self._beyond, self._combined = spark_eval.beyond_accuracy, spark_eval.combined

    def evaluate(self, name: str, segment: str) -> dict[str, float]:
        beyond = self._beyond(self.evaluator, self.lists[name], segment)
        return self._combined(self.spark.results[segment][name], beyond, tuple(self.evaluator.ks))

    def per_user(self, name: str, metric: str, segment: str = "all") -> np.ndarray:
        assert metric == self.primary, "the executors return the primary metric's per-user values only"
        return self.spark.per_user[segment][name].to_numpy()


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
    baselines = {name: values[name].to_numpy() for name in values.columns if name not in (challenger, "user_id")}
    return metrics.paired_comparisons(baselines, values[challenger].to_numpy(), metric=primary,
                                      n_resamples=n_resamples, confidence=confidence, random_state=seed)


def _segment_block(name: str, n_users: int, at10: pd.DataFrame | None) -> str:
    """One Markdown block of ``comparison_segments.md``; an empty segment says so plainly."""
    title = f"### {name}: {n_users} test users\n\n"
    if at10 is None:
        why = ": every test user has history in train (as on a per-user holdout)" if name == "cold" else ""
        return title + f"No test users in this segment{why}.\n"
    return title + markdown_table(at10)


def run(config: EncoreConfig, ctx: Context) -> Result:
    prepared = PreparedData(ctx.inputs["prepare"])
    ks = tuple(config.evaluation.ks)
    primary = config.evaluation.primary_metric
    evaluator = Evaluator(prepared, "train", ks)
    lists = model_lists(config, ctx, evaluator.users, max(ks))
    scores = (SparkEngineScores(evaluator, lists, list_files(config, ctx), primary)
              if config.evaluation.engine == "spark" else PandasScores(evaluator, lists))
    segments = evaluator.segments
    # Every metric per segment; an empty segment (e.g. cold users of a per-user holdout) is skipped.
    by_segment: dict[str, dict[str, dict[str, float]]] = {}
    for seg in (seg for seg in SEGMENTS if segments[seg].n_users):
        same = evaluator.scored_as(seg)
        by_segment[seg] = by_segment[same] if same != seg else {name: scores.evaluate(name, seg)
                                                                for name in lists}
    results = by_segment["all"]
    table = metrics.metrics_table(results)
    out = EvaluateOutput(ctx.output)
    table.to_csv(out.path / out.COMPARISON)  # all users, as before: downstream readers unchanged
    long = pd.concat([metrics.metrics_table(res).assign(n_users=segments[seg].n_users)
                      .reset_index().assign(segment=seg) for seg, res in by_segment.items()], ignore_index=True)
    long = long[["segment", "model", "n_users", *table.columns]]
    long.to_csv(out.path / out.SEGMENTS_CSV, index=False)  # the output folder itself is written atomically

    def at10_of(res: dict) -> pd.DataFrame:
        frame = metrics.metrics_table(res)
        return frame[[c for c in frame.columns if c.endswith("@10")]].sort_values(primary, ascending=False)

    at10 = at10_of(results)
    (out.path / out.COMPARISON_MD).write_text(markdown_table(at10))
    blocks = [_segment_block(seg, segments[seg].n_users, at10_of(by_segment[seg]) if seg in by_segment else None)
              for seg in SEGMENTS]
    (out.path / out.SEGMENTS_MD).write_text("\n".join(blocks))
    metrics.plot_metric_vs_k(results, primary.partition("@")[0], out.path / out.PLOT)

    # Per-user values of the primary metric by raw user id: paired tests here, and at promotion.
    per_user = pd.DataFrame({"user_id": prepared.users["raw_id"].to_numpy()[evaluator.users],
                             "segment": evaluator.user_segment()}
                            | {name: scores.per_user(name, primary) for name in lists})
    write_parquet(per_user, out.path / out.PER_USER)
    # The ranker is measured against the best single model: every instance, feature-only ones too.
    baselines = [name for name in lists if name not in RANKING_STAGES]
    best = max(baselines, key=lambda name: results[name][primary])
    headline_model = "ranker" if "ranker" in lists else best
    summary: dict = {"primary_metric": primary, "best_generator": best, "headline_model": headline_model,
                     "n_test_users": len(evaluator.users), "segments": {}}
    settings = {"n_resamples": config.evaluation.n_bootstrap, "confidence": config.evaluation.confidence,
                "seed": config.experiment.seed}
    compared: dict[str, dict[str, metrics.PairedComparison]] = {}
    for seg in SEGMENTS:
        n_users = segments[seg].n_users
        entry: dict = {"n_users": n_users}
        summary["segments"][seg] = entry
        if seg not in by_segment:
            entry["note"] = "no test users in this segment"
            continue
        seg_best = max(baselines, key=lambda name: by_segment[seg][name][primary])
        entry["best_generator"] = seg_best
        entry[primary] = {name: scores[primary] for name, scores in by_segment[seg].items()}
        if "ranker" not in lists:
            continue
        if n_users < 2:
            entry["note"] = "fewer than two users: no paired comparison"
            continue
        same = evaluator.scored_as(seg)
        if same == seg:
            values = pd.DataFrame({name: scores.per_user(name, primary, seg) for name in lists})
            compared[seg] = compare(values, primary, challenger="ranker", **settings)
        comparisons = compared[same]
        vs_best = comparisons[seg_best]
        entry["comparisons"] = {name: c.to_dict() for name, c in comparisons.items()}
        entry["vs_best_generator"] = vs_best.to_dict()
        if not np.isfinite(vs_best.rel_uplift):
            # Every model scores 0 here (e.g. cold items no model can recommend): no relative uplift.
            entry["note"] = f"best generator's mean {primary} is 0: relative uplift undefined"
            log.info("[%s, %d users] every model's %s is %.4f: no uplift to report", seg, n_users, primary,
                     vs_best.mean_a)
            continue
        # A bootstrap whose resamples hit a zero mean has no relative interval: say so, not "nan".
        ci = (f"{100 * vs_best.rel_ci_low:+.1f}% .. {100 * vs_best.rel_ci_high:+.1f}%"
              if np.isfinite([vs_best.rel_ci_low, vs_best.rel_ci_high]).all() else "undefined")
        log.info("[%s, %d users] ranker %s %.4f vs best generator %s %.4f: %+.1f%% (%.0f%% CI %s), p=%.2g", seg,
                 n_users, primary, vs_best.mean_b, seg_best, vs_best.mean_a, 100 * vs_best.rel_uplift,
                 100 * vs_best.confidence, ci, vs_best.p_value)
    if "ranker" in lists:
        # Today's top-level keys (all users) stay where register and the README read them.
        summary["comparisons"] = summary["segments"]["all"]["comparisons"]
        summary["vs_best_generator"] = summary["segments"]["all"]["vs_best_generator"]
    if not segments["cold"].n_users:
        log.info("cold segment empty: every test user has history in train (e.g. a per-user holdout)")
    write_json(out.path / out.SIGNIFICANCE, summary)
    # The runs carry the headline; every model x segment x metric x k is comparison_segments.csv
    # (and metrics too with tracking.log_all_metrics).
    parent = headline_metrics(primary, summary["segments"])
    if config.tracking.log_all_metrics:
        parent |= {f"{name}{'' if seg == 'all' else '.' + seg}.{key}": value for seg, res in by_segment.items()
                   for name, scores in res.items() for key, value in scores.items()}
    metrics.plot_segments(by_segment, primary, out.path / out.SEGMENTS_PLOT)
    log.info("test users %d (warm %d, cold %d, with cold-item pairs %d); comparison at k=10:\n%s",
             len(evaluator.users), segments["warm"].n_users, segments["cold"].n_users,
             segments["cold_items"].n_users, at10.to_string(float_format=lambda v: f"{v:.4f}"))
    return Result(
        metrics=parent,
        artifacts=[out.COMPARISON, out.COMPARISON_MD, out.SEGMENTS_CSV, out.SEGMENTS_MD, out.SIGNIFICANCE, out.PLOT,
                   out.SEGMENTS_PLOT, out.PER_USER],
        tags={"encore.best_generator": best, "encore.headline_model": headline_model},
        parent_metrics=parent,
        parent_tags=headline_tags(summary["segments"]) | {"encore.headline_model": headline_model},
    )


if __name__ == "__main__":
    from encore.pipeline.cli import component_main  # the CLI is no part of what this component computes

    sys.exit(component_main(NAME, description=__doc__ or ""))
