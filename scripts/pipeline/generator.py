"""The generator component template: one module runs every generator instance.

``python -m scripts.pipeline.generator <instance> [--experiment FILE]`` runs instance
``components.<instance>`` alone; ``run.sh --components <instance>`` runs it in a pipeline.

For each stage (``base``: fit on base, candidates for ranker-target users; ``train``: refit
on base + target, candidates for every user, scored on test) it fits the instance's model on
the stage view, writes per-user top-N candidates and saves the model; from the ``train`` fit
it also writes the similar-items table and evaluates its lists on test. The folder layout is
:class:`scripts.core.outputs.GeneratorOutput`.
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

from scripts.core import metrics
from scripts.core.config import ConfigError, EncoreConfig
from scripts.core.evaluation import Evaluator, frame_from_lists
from scripts.core.generators import build_recommender, candidate_users, fit_recommender, similar_items
from scripts.core.outputs import GeneratorOutput
from scripts.core.prepared import STAGES, PreparedData
from scripts.pipeline.component import Context, Result
from scripts.pipeline.runner import component_main

DEPENDS_ON: tuple[str, ...] = ("prepare",)
log = logging.getLogger(__name__)


def run(config: EncoreConfig, ctx: Context) -> Result:
    name = ctx.name
    section = config.components.generator(name)
    ks = config.evaluation.ks
    if section.n_candidates < max(ks):
        raise ConfigError(
            f"components.{name}.n_candidates ({section.n_candidates}) must be at least the largest "
            f"evaluation k ({max(ks)})"
        )
    prepared = PreparedData(ctx.inputs["prepare"])
    out = GeneratorOutput(ctx.output)
    timings: dict[str, float] = {}
    extra: dict[str, float] = {}
    for stage in STAGES:
        model = build_recommender(config, name)
        started = time.perf_counter()
        fit_recommender(model, prepared, stage, name=name)
        timings[f"fit_{stage}_seconds"] = time.perf_counter() - started

        users = candidate_users(prepared, stage)
        started = time.perf_counter()
        ids, scores = model.recommend(users, prepared.user_items(stage), section.n_candidates,
                                      filter_already_liked_items=True, batch_size=section.batch_size)
        timings[f"recommend_{stage}_seconds"] = time.perf_counter() - started
        out.write_candidates(stage, frame_from_lists(users, ids, scores))
        out.write_model(stage, model)
        if stage == "base":
            target = Evaluator(prepared, "base", tuple(ks))
            extra["target_candidate_recall"] = target.candidate_recall(ids[np.searchsorted(users, target.users)])
            continue

        if section.n_similar:
            started = time.perf_counter()
            out.write_similar_items(similar_items(model, prepared.n_items, section.n_similar, section.batch_size))
            timings["similar_items_seconds"] = time.perf_counter() - started

        test = Evaluator(prepared, "train", tuple(ks))
        lists = ids[test.users]
        scores_at_k = test.evaluate(lists[:, : max(ks)])
        extra["candidate_recall"] = test.candidate_recall(lists)
        if hasattr(model, "items_without_features_"):
            extra["items_without_features"] = float(np.size(model.items_without_features_))
    results = scores_at_k | extra | timings
    out.write_metrics(results)
    metrics.plot_metric_vs_k({name: scores_at_k}, "ndcg", out.path / out.PLOT)
    log.info("%s: ndcg@10 %.4f, candidate recall@%d %.3f on test",
             name, scores_at_k.get("ndcg@10", float("nan")), section.n_candidates, extra["candidate_recall"])
    artifacts = [out.candidates_file("train"), out.METRICS, out.PLOT]
    return Result(metrics=results, artifacts=[*artifacts, out.SIMILAR] if section.n_similar else artifacts,
                  tags={"encore.kind": section.kind, "encore.propose": str(section.propose).lower()})


def main(argv: list[str] | None = None) -> int:
    return component_main(None, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
